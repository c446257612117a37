"""What stops a training run: one line for the user, and the CLI's exit code for it."""

from __future__ import annotations

from pathlib import Path

from cnndsl.common.safetext import shown

EXIT_OK, EXIT_ERRORS, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
EXIT_WORKER_LOST = 75  # EX_TEMPFAIL: a multiworker peer died; the same command continues


class TrainError(Exception):
    """A run that cannot start or go on: one line (no traceback for the user), and the
    exit code `cnndsl train` ends with."""

    def __init__(self, message: str, code: int = EXIT_ERRORS) -> None:
        super().__init__(message)
        self.message, self.code = message, code


class TrainInterrupted(KeyboardInterrupt):
    """Ctrl-C (or a notebook's interrupt) during a run: every finished epoch is saved in
    `folder`, and the message says how to continue. A KeyboardInterrupt, so that whatever
    stops on Ctrl-C still stops, and `except Exception` does not swallow it."""

    def __init__(self, folder: Path, epochs: int) -> None:
        self.folder, self.epochs = folder, epochs
        where = shown(str(folder))
        super().__init__(f"interrupted: {epochs} epoch{'s' * (epochs != 1)} saved in "
                         f"`{where}`; continue with `cnndsl train --resume {where}`")
