"""Text from input made safe to print: a source line, a name or a file name shown on a
terminal must not be able to move the cursor, clear the screen or reorder the line."""

from __future__ import annotations


def _escaped(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else (
        f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")


def shown(text: str) -> str:
    """`text` with every non-printable character (controls, escapes, bidi overrides, line
    separators; not the space) written as a visible escape such as `\\x1b`."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else _escaped(ch) for ch in text)


def shown_line(text: str, tab: int) -> str:
    """A source line as shown: tabs widened to `tab` spaces, everything else `shown`."""
    return shown(text.replace("\t", " " * tab))
