"""One process at a time in a run folder: an exclusive lock file holding the owner's pid
and host.

The lock is an `flock` on `run.lock`, held for the life of the process, so the kernel
releases it when the owner dies however it dies; the file itself is never removed (removing
it would let two processes lock two different files of that name). On release the file
is emptied, so a file that still names an owner whose lock is free was left by a process
that died: that lock is taken over, and said so. A lock naming another host is not taken
over (flock may not reach across a network filesystem, and this machine cannot tell
whether that process lives): the user is told which file to delete.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from collections.abc import Callable
from pathlib import Path

LOCK = "run.lock"


class LockError(Exception):
    """The run folder is in use, or its lock cannot be taken: one line for the user."""


def _owner(fd: int) -> dict:
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 4096).decode(errors="replace")
    try:
        owner = json.loads(text) if text.strip() else {}
    except ValueError:
        return {"pid": "?", "host": "?"}
    return owner if isinstance(owner, dict) else {"pid": "?", "host": "?"}


def acquire(folder: Path, notify: Callable[[str], object]) -> Callable[[], None]:
    """Lock `folder` for this process, or raise LockError; returns the function that
    releases the lock (the kernel releases it anyway when the process ends)."""
    path = folder / LOCK
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    except OSError as err:
        raise LockError(f"cannot lock `{folder}` ({path.name}: {err.strerror or err})") from err
    host = socket.gethostname()
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = _owner(fd)
        os.close(fd)
        raise LockError(f"`{folder}` is in use by another training process (pid "
                        f"{owner.get('pid', '?')} on {owner.get('host', '?')}); wait for it "
                        "to end, or choose another --out") from None
    owner = _owner(fd)
    if owner and owner.get("host") != host:
        os.close(fd)
        raise LockError(f"`{folder}` is locked by pid {owner.get('pid', '?')} on host "
                        f"{owner.get('host', '?')}; if that run is no longer running, "
                        f"delete `{path}`")
    if owner and owner.get("pid") != os.getpid():
        notify(f"took over the lock of `{folder}` from pid {owner.get('pid')}, which is no "
               "longer running")
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, json.dumps({"pid": os.getpid(), "host": host}).encode() + b"\n")
    os.fsync(fd)

    def release() -> None:
        os.ftruncate(fd, 0)
        os.close(fd)

    return release
