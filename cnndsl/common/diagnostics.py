"""One diagnostic type for every stage, rendered the way rustc and Elm render them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from cnndsl.common.limits import MAX_DIAGNOSTICS
from cnndsl.common.safetext import shown, shown_line

ERROR = "error"
WARNING = "warning"
# The largest number, size or tensor any stage accepts: TensorFlow's sizes are int64.
MAX_NUMBER = 2**63 - 1


@dataclass(frozen=True)
class Span:
    """A source range; lines and columns start at 1, the end column is exclusive."""

    line: int
    column: int
    end_line: int
    end_column: int

    @staticmethod
    def point(line: int, column: int) -> Span:
        return Span(line, column, line, column + 1)


@dataclass(frozen=True)
class Label:
    span: Span
    message: str


@dataclass(frozen=True)
class Diagnostic:
    severity: str
    message: str
    span: Span | None
    hint: str | None = None
    labels: tuple[Label, ...] = ()

    @property
    def line(self) -> int | None:
        return self.span.line if self.span else None

    @property
    def column(self) -> int | None:
        return self.span.column if self.span else None

    def to_json(self) -> dict:
        span = self.span
        return {
            "severity": self.severity,
            "message": self.message,
            "line": span.line if span else None,
            "column": span.column if span else None,
            "end_line": span.end_line if span else None,
            "end_column": span.end_column if span else None,
            "hint": self.hint,
            "labels": [
                {"message": lab.message, "line": lab.span.line, "column": lab.span.column}
                for lab in self.labels
            ],
        }


class CnnError(Exception):
    """Raised inside a stage to abandon one construct; the stage turns it into a Diagnostic."""

    def __init__(
        self, message: str, span: Span | None = None, hint: str | None = None,
        labels: tuple[Label, ...] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.span = span
        self.hint = hint
        self.labels = labels

    def diagnostic(self, fallback: Span | None = None) -> Diagnostic:
        return Diagnostic(ERROR, self.message, self.span or fallback, self.hint, self.labels)


def _fold(name: str) -> str:
    return name.lower().replace("_", "")


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    """A hint naming the closest candidate, or None when nothing is close. Case and `_`
    are ignored first (`reLU` -> `relu`, `MaxPool` -> `maxpool`, `max_pool` -> `maxpool`)."""
    import difflib  # only on the error path: keeps `check` start-up short
    options = sorted(set(choices))
    same = [c for c in options if _fold(c) == _fold(word)]
    if same:
        return f"did you mean `{same[0]}`?"
    folded = {_fold(c): c for c in reversed(options)}
    close = difflib.get_close_matches(_fold(word), folded, n=1, cutoff=0.6)
    return f"did you mean `{folded[close[0]]}`?" if close else None


def has_errors(diagnostics: Iterable[Diagnostic]) -> bool:
    return any(d.severity == ERROR for d in diagnostics)


def sort_key(d: Diagnostic) -> tuple[int, int]:
    return (d.span.line, d.span.column) if d.span else (0, 0)


def summary_line(diagnostics: list[Diagnostic], filename: str) -> str | None:
    """`error: `f.cnn` has 2 errors and 1 warning`, `1 warning in `f.cnn``, or None."""
    errors = sum(d.severity == ERROR for d in diagnostics)
    warnings = sum(d.severity == WARNING for d in diagnostics)
    plural = lambda n, w: f"{n} {w}{'s' if n != 1 else ''}"  # noqa: E731
    filename = shown(filename)
    if errors:
        extra = f" and {plural(warnings, 'warning')}" if warnings else ""
        return f"error: `{filename}` has {plural(errors, 'error')}{extra}"
    return f"{plural(warnings, 'warning')} in `{filename}`" if warnings else None


# ----------------------------------------------------------------------------- rendering

_COLOURS = {ERROR: "\033[1;31m", WARNING: "\033[1;33m", "note": "\033[1;36m",
            "hint": "\033[1;32m", "bold": "\033[1m", "dim": "\033[34m"}
_RESET = "\033[0m"
_TAB = 4  # columns a tab takes in a shown source line


@dataclass
class Renderer:
    """Renders diagnostics against one source file."""

    filename: str
    source: str
    colour: bool = False
    _lines: list[str] = field(init=False)

    def __post_init__(self) -> None:
        # Lines as the parser counts them: only "\n" ends a line (not "\f", "\v", "\u2028"...).
        self._lines = [line.removesuffix("\r") for line in self.source.split("\n")]

    def _c(self, style: str, text: str) -> str:
        return f"{_COLOURS[style]}{text}{_RESET}" if self.colour else text

    def render(self, d: Diagnostic) -> str:
        # Everything echoed from the input is escaped: no control character reaches the
        # terminal (a comment must not clear the screen or fake a result).
        head = self._c(d.severity, d.severity) + self._c("bold", f": {shown(d.message)}")
        out = [head]
        filename = shown(self.filename)
        if d.span is None:
            out.append(f"  --> {filename}")
        else:
            out.append(f"  --> {filename}:{d.span.line}:{d.span.column}")
            out.extend(self._snippet(d))
        if d.hint:
            out.append("   " + self._c("hint", "= hint") + f": {shown(d.hint)}")
        return "\n".join(out)

    def render_all(self, diagnostics: Iterable[Diagnostic]) -> str:
        return "\n\n".join(self.render(d) for d in diagnostics)

    def blocks(self, diagnostics: list[Diagnostic], limit: int = MAX_DIAGNOSTICS) -> list[str]:
        """The first `limit` diagnostics rendered, then one line counting the rest: a file
        with thousands of errors prints a screenful, not megabytes."""
        out = [self.render(d) for d in diagnostics[:limit]]
        rest = diagnostics[limit:]
        if rest:
            errors = sum(d.severity == ERROR for d in rest)
            counts = [f"{n} more {word}{'s' * (n != 1)}" for n, word in
                      ((errors, "error"), (len(rest) - errors, "warning")) if n]
            out.append(self._c("note", "note") + f": {' and '.join(counts)} not shown "
                       f"(only the first {limit} are; fix these first)")
        return out

    def _snippet(self, d: Diagnostic) -> list[str]:
        marks: list[tuple[Span, str, str]] = [(d.span, "^", "")]
        marks += [(lab.span, "-", lab.message) for lab in d.labels]
        lines = sorted({span.line for span, _, _ in marks})
        width = len(str(lines[-1]))
        gutter = " " * width + " " + self._c("dim", "|")
        out = [gutter]
        previous = None
        for number in lines:
            if previous is not None and number > previous + 1:
                out.append(self._c("dim", "..."))
            previous = number
            text = self._lines[number - 1] if 0 < number <= len(self._lines) else ""
            # Tabs widened (the same width on every terminal), control characters escaped.
            line = shown_line(text, _TAB)
            out.append(self._c("dim", f"{number:>{width}} |") + f" {line}".rstrip())
            for span, char, message in marks:
                if span.line == number:
                    out.append(gutter + " " + self._underline(span, char, message, text, d))
        out.append(gutter)
        return out

    def _underline(self, span: Span, char: str, message: str, text: str, d: Diagnostic) -> str:
        start = span.column - 1
        end = span.end_column - 1 if span.end_line == span.line else len(text)
        length = max(1, min(end, max(len(text), start + 1)) - start)
        # Columns count characters; the line is shown with tabs widened and escapes
        # spelled out, so the marks are measured on the shown text.
        indent = len(shown_line(text[:start], _TAB))
        length = max(1, len(shown_line(text[start:start + length], _TAB)))
        style = d.severity if char == "^" else "dim"
        marker = self._c(style, char * length)
        return (" " * indent + marker + (f" {shown(message)}" if message else "")).rstrip()
