"""Writing files so that a reader, or a crash, never sees half of one; and so that no
write follows a planted symlink or lands on a command's own input.

Every file cnndsl writes (built modules, diagrams, run-folder files, Keras models,
matplotlib pictures) goes through `replacing` or `write_atomic`.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

# The process's umask, read once (reading it means setting it: not safe in a thread later).
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def _mode_for(path: Path) -> int:
    """The permissions `open(path, "w")` would give: an existing file's own, else 0666 less
    the umask (mkstemp makes its file 0600, private, which a build output must not be)."""
    try:
        st = os.stat(path, follow_symlinks=False)
        if stat.S_ISREG(st.st_mode):
            return stat.S_IMODE(st.st_mode)
    except OSError:
        pass
    return 0o666 & ~_UMASK


class WriteError(Exception):
    """A file could not be written (read-only folder, full disk, ...): one line naming it.
    What was there before is untouched."""


class InputOverwriteError(Exception):
    """An output path is one of the command's own input files."""


@contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """A fresh temporary path beside `path` that replaces it when the block succeeds.

    The temporary file is created exclusively under an unpredictable name (`mkstemp` in the
    target's folder), so no one can plant a symlink there beforehand; `os.replace` then
    swaps the directory entry, so a `path` that is a symlink is replaced, not written
    through. The name keeps the ending (`model.keras`, `curves.png`), which Keras and
    matplotlib choose the format by; on failure it is removed and `path` is untouched.
    """
    folder = path.parent
    try:
        fd, name = tempfile.mkstemp(prefix=".tmp-", suffix=f"-{path.name}"[-60:],
                                    dir=folder if str(folder) else ".")
    except OSError as err:
        raise WriteError(f"cannot write `{path}`: {err.strerror or err}") from err
    tmp = Path(name)
    try:
        os.fchmod(fd, _mode_for(path))
    finally:
        os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as err:
        raise WriteError(f"cannot write `{path}`: {err.strerror or err}") from err
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write text (UTF-8, newlines as given) or bytes to `path` atomically, synced to disk.
    Raises WriteError naming `path` when it cannot be written."""
    with replacing(path) as tmp:
        # O_NOFOLLOW: the file mkstemp made is written, never a symlink put in its place.
        fd = os.open(tmp, os.O_WRONLY | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())


def same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file (by device and inode: hard links, symlinks, `./x`)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def refuse_input(output: Path, inputs: Iterable[Path]) -> None:
    """The one rule for every command that writes: never over one of its own inputs."""
    for source in inputs:
        if same_file(output, source):
            raise InputOverwriteError(f"the output `{output}` is the input `{source}`; "
                                      "choose another output")
