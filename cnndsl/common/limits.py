"""Bounds on every input, checked before the input is read in full (docs/reliability.md).

A .cnn source is read through `read_source`: at most MAX_SOURCE_BYTES, from a regular
file or a pipe alike (a device such as /dev/zero is cut off at the bound, not read to
exhaustion), and decoded as UTF-8 with the usual accidents named (a BOM and CR line ends
simply work; UTF-16 and invalid UTF-8 are said to be so).
"""

from __future__ import annotations

import codecs
from pathlib import Path
from typing import BinaryIO

MAX_SOURCE_BYTES = 1024 * 1024  # a .cnn file; the largest example is 4 KB
MAX_DIAGNOSTICS = 50  # diagnostics printed for one file; the rest are counted
MAX_DRAW_NODES = 1500  # boxes Graphviz lays out in a few seconds; more need --depth
MAX_DATA_BYTES = 8 * 1024**3  # one data array (an IDX payload or an .npz member)


class SourceError(Exception):
    """A source that cannot be read as a .cnn file: one line naming it and why."""


def read_source(path: Path) -> str:
    """The text of a .cnn file, or SourceError naming the file and what is wrong."""
    try:
        with open(path, "rb") as f:
            return read_stream(f, path)
    except FileNotFoundError as err:
        raise SourceError(f"cannot read `{path}`: no such file") from err
    except IsADirectoryError as err:
        raise SourceError(f"cannot read `{path}`: it is a folder") from err
    except OSError as err:
        raise SourceError(f"cannot read `{path}`: {err.strerror or err}") from err


def read_stream(stream: BinaryIO, name: Path | str) -> str:
    """The text of a .cnn source from an open stream (a file, or stdin for `-`), read no
    further than the bound; SourceError names it (`name`) when it is too large or not text."""
    raw = stream.read(MAX_SOURCE_BYTES + 1)
    if len(raw) > MAX_SOURCE_BYTES:
        raise SourceError(f"`{name}` is larger than {MAX_SOURCE_BYTES // 1024**2} MB, the "
                          "limit for a .cnn file (is it the right file?)")
    return decode_source(raw, name)


def decode_source(raw: bytes, path: Path | str) -> str:
    """UTF-8 text with "\\n" line ends: a UTF-8 BOM is dropped, CR and CR LF become LF."""
    # UTF-16 by its BOM, or ASCII text in UTF-16 without one: every other byte a zero.
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or (
            len(raw) >= 4 and (raw[1] == raw[3] == 0 or raw[0] == raw[2] == 0)):
        raise SourceError(f"`{path}` is UTF-16 text; save it as UTF-8")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[:err.start].count(b"\n") + 1
        column = err.start - (raw.rfind(b"\n", 0, err.start) + 1) + 1
        raise SourceError(f"`{path}` is not UTF-8 text (byte 0x{raw[err.start]:02x} at line "
                          f"{line}, column {column}); save it as UTF-8") from err
    return text.replace("\r\n", "\n").replace("\r", "\n")


# Training holds float32 weights, their gradients and (Adam) two optimizer slots per weight.
TRAINING_COPIES = 4


def training_bytes(params: int) -> int:
    """The least memory training a network of `params` parameters takes (float32)."""
    return params * 4 * TRAINING_COPIES


def available_memory() -> int | None:
    """The memory this machine can give a new process now (Linux), else its total."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import os

        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
