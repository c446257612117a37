"""Where the grammar and templates are: inside the installed package, or beside it in a checkout.

A wheel carries `grammars/` and `templates/` as `cnndsl/grammars` and `cnndsl/templates`
(pyproject.toml maps them); a source checkout keeps them at the top of the repository.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent.parent


def resource_dir(name: str) -> Path:
    """The folder `grammars` or `templates`, wherever this copy of cnndsl keeps it."""
    installed = _PACKAGE / name
    return installed if installed.is_dir() else _PACKAGE.parent / name
