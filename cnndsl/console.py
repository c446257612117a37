"""What the commands share on the terminal side: exit codes, colour, one-line errors, and
reading a source (a file, or stdin for `-`) within its limits.

Only the CLI imports this module: the backends return values and never print.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, NoReturn

from cnndsl.common.safetext import shown

EXIT_ERRORS, EXIT_USAGE, EXIT_INTERNAL = 1, 2, 70
STDIN = "<stdin>"  # what diagnostics call a source read from stdin


def error(message: str) -> None:
    print(f"error: {shown(message)}", file=sys.stderr)


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    error(message)
    sys.exit(code)


def colour_for(stream: Any) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set (no-color.org)."""
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    return bool(os.environ.get("FORCE_COLOR")) or stream.isatty()


def is_stdin(file: Path) -> bool:
    """`-` names stdin, as for most Unix tools (`./-` is a file named `-`)."""
    return str(file) == "-"


def source_name(file: Path) -> str:
    """What diagnostics and reports call the source."""
    return STDIN if is_stdin(file) else str(file)


def read_text(file: Path) -> str:
    """The source's text, within the limits of cnndsl.common.limits, else SourceError."""
    from cnndsl.common.limits import read_source, read_stream

    return read_stream(sys.stdin.buffer, STDIN) if is_stdin(file) else read_source(file)


def read_source(file: Path) -> str:
    """The source's text; else a one-line error, exit 2."""
    from cnndsl.common.limits import SourceError

    try:
        return read_text(file)
    except SourceError as err:
        fail(str(err))
