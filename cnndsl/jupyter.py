"""The `%%cnn` cell magic: `%load_ext cnndsl`, then a cell of `.cnn` source.

    %%cnn net                  check the cell; bind the Network to `net`
    %%cnn net --network NAME   pick one network of a cell that defines several
    %%cnn                      check only: the Network is the cell's result (`_`)

A checked cell shows the table (the Network's HTML); a cell with errors prints the
diagnostics as `cnndsl check` does, on stderr, and binds nothing. No input shows a
Python traceback. Only this module imports IPython.
"""

from __future__ import annotations

import keyword
import os
import sys
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from cnndsl.common.limits import MAX_SOURCE_BYTES
from cnndsl.common.safetext import shown

CELL = "<cell>"  # what diagnostics call the cell


@magics_class
class CnnMagics(Magics):
    @magic_arguments()
    @argument("name", nargs="?", default=None,
              help="The variable to bind the Network to (left out: bind nothing).")
    @argument("--network", "-n", default=None,
              help="Which network of the cell (when it defines several).")
    @cell_magic
    def cnn(self, line: str, cell: str) -> Any:
        """Check a cell of .cnn source: show its table, or its errors as `cnndsl check` does.

        %%cnn [name] [--network NAME]
        """
        from cnndsl.analysis.pipeline import NetworkChoiceError
        from cnndsl.api import check

        try:
            args = parse_argstring(self.cnn, line)
            if args.name is not None and not _is_variable(args.name):
                raise UsageError(f"`{args.name}` is not a Python variable name")
        except (UsageError, ValueError) as err:  # ValueError: unbalanced quotes
            return _error(f"{err} (see `%%cnn?`)")
        if len(cell.encode(errors="replace")) > MAX_SOURCE_BYTES:  # as for a file
            return _error(f"the cell is larger than {MAX_SOURCE_BYTES // 1024**2} MB, the "
                          "limit for a .cnn file")
        try:
            net = check(cell, args.network, CELL)
        except NetworkChoiceError as err:
            return _error(_choice(err.names, args.network))
        except Exception as err:  # a bug: one line, as the CLI says it
            if os.environ.get("CNNDSL_DEBUG"):
                raise
            return _error(f"internal error: {type(err).__name__}: {err} (this is a bug; "
                          "please report it with the cell)")
        report = net.report()  # errors and warnings as `cnndsl check` prints them
        if report:
            print(report, file=sys.stderr)
        if not net.ok:
            return None
        if args.name is not None:
            self.shell.user_ns[args.name] = net
        return net


def _error(message: str) -> None:
    print(f"error: {shown(message)}", file=sys.stderr)


def _choice(names: list[str], network: str | None) -> str:
    listed = ", ".join(names) or "none"
    if network is None:
        return (f"the cell defines {len(names)} networks ({listed}): choose one with "
                f"`--network NAME`, e.g. `%%cnn net --network {names[0] if names else 'NAME'}`")
    return f"the cell has no network named `{network}` (it defines: {listed})"


def _is_variable(name: str) -> bool:
    return name.isidentifier() and not keyword.iskeyword(name)


def load_ipython_extension(ipython: Any) -> None:
    """`%load_ext cnndsl` (through cnndsl.load_ipython_extension)."""
    ipython.register_magics(CnnMagics)
