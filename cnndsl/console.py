"""What every command shares on the terminal side: exit codes, colour, reading a source
within its limits, the one-line summary, and usage errors as one line.

The CLI and the commands that live beside their backends (build, draw) read these from
here, so no backend imports the CLI.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, NoReturn

from cnndsl.common.diagnostics import ERROR, WARNING
from cnndsl.common.safetext import shown

EXIT_ERRORS, EXIT_USAGE, EXIT_INTERNAL = 1, 2, 70


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    print(f"error: {shown(message)}", file=sys.stderr)
    sys.exit(code)


def colour_for(stream: Any) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set (no-color.org)."""
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    return bool(os.environ.get("FORCE_COLOR")) or stream.isatty()


def read_source(path: Path) -> str:
    """The file's text, within the limits of cnndsl.common.limits; else a one-line error, exit 2."""
    from cnndsl.common.limits import SourceError
    from cnndsl.common.limits import read_source as read

    try:
        return read(path)
    except SourceError as err:
        fail(str(err))


def summary_line(diagnostics: list, filename: str) -> str | None:
    errors = sum(d.severity == ERROR for d in diagnostics)
    warnings = sum(d.severity == WARNING for d in diagnostics)
    plural = lambda n, w: f"{n} {w}{'s' if n != 1 else ''}"  # noqa: E731
    filename = shown(filename)
    if errors:
        extra = f" and {plural(warnings, 'warning')}" if warnings else ""
        return f"error: `{filename}` has {plural(errors, 'error')}{extra}"
    return f"{plural(warnings, 'warning')} in `{filename}`" if warnings else None


def load(file: Path, network: str | None) -> tuple[str, Any]:
    """Read and analyse a file; a bad --network is a usage error."""
    from cnndsl.analysis.pipeline import NetworkChoiceError, analyse

    source = read_source(file)
    try:
        return source, analyse(source, network)
    except NetworkChoiceError as err:
        fail(str(err))
