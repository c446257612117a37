"""What stops a training run: one line for the user, and the CLI's exit code for it."""

from __future__ import annotations

EXIT_OK, EXIT_ERRORS, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
EXIT_WORKER_LOST = 75  # EX_TEMPFAIL: a multiworker peer died; the same command continues


class Fail(Exception):
    """Stop with a one-line `error: ...` and an exit code."""

    def __init__(self, message: str, code: int = EXIT_ERRORS) -> None:
        super().__init__(message)
        self.message, self.code = message, code
