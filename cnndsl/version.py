"""The version of cnndsl, in one place (pyproject.toml, the CLI, build, the language server)."""

__version__ = "0.1.0"
