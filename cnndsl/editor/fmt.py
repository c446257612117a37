"""`cnndsl fmt`: one canonical layout for .cnn files (the rules: docs/language.md, "Layout").

The formatter works line by line on its own tokens and never adds, removes or joins
lines (so every line number `check` reports stays the same). It only rewrites the
whitespace inside a line, drops a `;` that ends a line, and indents by braces and paths.
Before returning, it lexes both texts with the language's own lexer and refuses (raises
FormatError) when the token streams differ: a token kind it does not know can make it
refuse, never change meaning.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

from cnndsl.common.diagnostics import Diagnostic, Renderer, has_errors
from cnndsl.common.files import write_atomic
from cnndsl.lang import ast
from cnndsl.lang.parser import parse

INDENT = 4  # spaces per brace level
PATH_INDENT = 2  # a path's statements line up after its `| `
COMMENT_GAP = 2  # spaces at least between code and a comment after it

_TOKEN = re.compile(r"""
    (?P<comment>\#[^\n]*)
  | (?P<string>"([^"\\\n]|\\.)*")
  | (?P<ref>@[A-Za-z_][A-Za-z0-9_]*)
  | (?P<size>[0-9]+(x[0-9]+)+(?![A-Za-z0-9_]))
  | (?P<number>([0-9]+\.[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?|[0-9]+[eE][-+]?[0-9]+|[0-9]+)
  | (?P<call>[A-Za-z_][A-Za-z0-9_]*(?=\())
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>==|!=|<=|>=|//|[<>+\-*/])
  | (?P<punct>[{}()|,;.=])
  | (?P<cont>\\$)
  | (?P<space>[ \t\r\f]+)
""", re.VERBOSE)
_VALUE_END = {"string", "ref", "size", "number", "name"}
_WORDS = {"and", "or", "not", "if", "else", "as", "network", "block", "train"}


class FormatError(Exception):
    """The text is left as it is: syntax errors (in `diagnostics`) or an unsafe change."""

    def __init__(self, message: str, diagnostics: list[Diagnostic] | None = None) -> None:
        super().__init__(message)
        self.diagnostics = diagnostics or []


@dataclass
class _Token:
    kind: str
    text: str
    column: int  # 0-based, in the original line
    spaced: bool = False  # whitespace before or after it in the source (binary operators)


@dataclass
class _Frame:
    """An open `{`: where its `}` goes, where its body goes, and whether it holds paths."""

    opener: int
    body: int
    in_path: bool = False


@dataclass
class _Line:
    indent: int
    code: list[_Token]
    comment: _Token | None
    blank: bool = False
    formatted: str = ""
    origin: int = 0  # where the code started in the original line


def _tokenize(line: str, number: int) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(line):
        m = _TOKEN.match(line, pos)
        if m is None:
            raise FormatError(f"line {number}: cannot format `{line[pos]}`")
        kind = m.lastgroup or ""
        if kind != "space":
            before = pos > 0 and line[pos - 1] in " \t"
            after = m.end() < len(line) and line[m.end()] in " \t"
            tokens.append(_Token(kind, m.group(), pos, before or after))
        pos = m.end()
    return tokens


def _ends_value(tok: _Token) -> bool:
    return (tok.kind in _VALUE_END and tok.text not in _WORDS) or tok.text == ")"


def _gap(prev: _Token, tok: _Token, unary_prev: bool, unary: bool) -> str:
    """The spaces between two tokens on one line."""
    p, t = prev.text, tok.text
    if t in {",", ")", ";"} or p in {"(", "."} or t == ".":
        return ""
    if p == ",":
        return " "
    if prev.kind == "call" or "=" in (p, t) or unary_prev:
        return ""
    if unary:
        return (" " if prev.spaced else "") if prev.kind == "op" else " "
    if tok.kind == "op" or prev.kind == "op":
        op = tok if tok.kind == "op" else prev
        return " " if op.spaced else ""
    return " "


def _format_code(tokens: list[_Token], origin: int) -> str:
    """One line's code with canonical spacing; after a `;`, one space, or the column the
    author lined the next statement up at."""
    out = ""
    prev: _Token | None = None
    unary_prev = prev_head = False
    head = True  # the next token starts a statement
    for tok in tokens:
        # `-` negates unless a value ends just before it (an op's own name does not).
        unary = tok.text == "-" and (prev is None or prev_head or not _ends_value(prev))
        if prev is not None and prev.text == ";" and tok.column > prev.column + 2:
            out += " " * max(1, tok.column - origin - len(out))  # lined up by the author
        elif prev is not None:
            out += _gap(prev, tok, unary_prev, unary)
        out += tok.text
        prev_head = head and tok.kind == "name"
        head = tok.text in {";", "{", "|", "}"}
        prev, unary_prev = tok, unary
    return out


def _split(text: str) -> tuple[list[str], str]:
    newline = "\r\n" if "\r\n" in text else "\n"
    lines = [line.rstrip("\r") for line in text.split("\n")]
    while lines and not lines[-1].strip():
        lines.pop()
    return lines, newline


def _layout(raw: list[str]) -> list[_Line]:
    """Tokens and indentation of every line, following braces, paths and `\\` lines."""
    stack: list[_Frame] = []
    lines: list[_Line] = []
    continued_from: int | None = None  # the indentation of the line a `\` line continues
    shift = 0  # how far the author indented the continuation lines past that line
    for number, text in enumerate(raw, 1):
        tokens = _tokenize(text, number)
        comment = tokens.pop() if tokens and tokens[-1].kind == "comment" else None
        if not tokens and comment is None:
            lines.append(_Line(0, [], None, blank=True))
            continue
        top = stack[-1] if stack else _Frame(0, 0)
        indent = top.body + (PATH_INDENT if top.in_path else 0)
        i = 0
        if continued_from is not None:
            indent = continued_from + max(INDENT, tokens[0].column - shift if tokens else 0)
        else:
            while i < len(tokens) and tokens[i].text == "}":
                indent = stack.pop().opener
                i += 1
            if i == 0 and tokens and tokens[0].text == "|":
                top.in_path = True
                indent = top.body
        content = indent + (PATH_INDENT if tokens[i:i + 1] and tokens[i].text == "|" else 0)
        # A brace on a `\` line belongs to the statement the first of those lines starts.
        opener, base = (content, indent) if continued_from is None else (continued_from,) * 2
        for tok in tokens[i:]:
            if tok.text == "{":
                stack.append(_Frame(opener, base + INDENT))
            elif tok.text == "}" and stack:
                stack.pop()
            elif tok.text == "|" and stack:
                stack[-1].in_path = True
        if tokens and tokens[-1].text == ";" and len(tokens) > 1:
            tokens.pop()  # a `;` ending a line separates nothing the newline does not
        origin = tokens[0].column if tokens else 0
        lines.append(_Line(indent, tokens, comment, origin=origin))
        if tokens and tokens[-1].kind == "cont" and continued_from is None:
            continued_from, shift = indent, origin  # alignment kept relative to this line
        elif not (tokens and tokens[-1].kind == "cont"):
            continued_from = None
    _indent_comments(lines)
    return lines


def _indent_comments(lines: list[_Line]) -> None:
    """A comment line just before a path's `|` lines up with the `|`; any other keeps the
    indentation a statement would have there (already set)."""
    following: _Line | None = None
    for line in reversed(lines):
        if line.code:
            following = line
        elif line.comment is not None and following is not None and \
                following.code[0].text == "|":
            line.indent = following.indent


def _render(lines: list[_Line], align_comments: bool) -> list[str]:
    for line in lines:
        line.formatted = _format_code(line.code, line.origin) if line.code else ""
    columns = _comment_columns(lines, align_comments)
    out = []
    for line, column in zip(lines, columns, strict=True):
        if line.blank:
            out.append("")
            continue
        text = " " * line.indent + line.formatted
        if line.comment is not None:
            comment = line.comment.text.rstrip()
            if line.code:
                text += " " * max(COMMENT_GAP, column - len(text))
            text += comment
        out.append(text)
    return out


def _comment_columns(lines: list[_Line], align: bool) -> list[int]:
    """Where each trailing comment goes: where it was (relative to the code's start), or
    with `align`, one column for each run of lines without a blank line between them."""
    columns = []
    for line in lines:
        if line.comment is None or not line.code:
            columns.append(0)
        else:
            columns.append(line.indent + line.comment.column - line.origin)
    if not align:
        return columns
    start = 0
    for end in range(len(lines) + 1):
        if end == len(lines) or lines[end].blank:
            run = [i for i in range(start, end) if lines[i].comment and lines[i].code]
            width = max((lines[i].indent + len(lines[i].formatted) for i in run), default=0)
            for i in run:
                columns[i] = width + COMMENT_GAP
            start = end + 1
    return columns


def _stream(text: str) -> list[tuple[str, str]]:
    """The tokens the parser sees; a separator with its comments counts as one token."""
    from cnndsl.lang.parser import _parser

    out = []
    for tok in _parser().lex(text):
        if tok.type == "_SEP":
            comments = tuple(c.rstrip() for c in re.findall(r"#[^\n]*", tok.value))
            out.append(("_SEP", repr(comments)))
        else:
            out.append((tok.type, tok.value))
    return out


def _keras_hint(stmt: ast.Stmt) -> str | None:
    """The `.cnn` line for a Keras call written by habit; the analysis layer knows the ops,
    and is imported only on this error path (`fmt` starts without it)."""
    from cnndsl.analysis.keras_habits import hint

    return hint(stmt)


def format_source(text: str, align_comments: bool = False) -> str:
    """The canonical layout of `text`; FormatError when it has syntax errors (or in the
    unlikely case that the result would not lex exactly as the original)."""
    program, diagnostics = parse(text, _keras_hint)
    if program is None or has_errors(diagnostics):
        raise FormatError("the file has syntax errors", diagnostics)
    raw, newline = _split(text)
    result = newline.join(_render(_layout(raw), align_comments)) + newline
    try:
        same = _stream(result) == _stream(text.rstrip("\r\n") + newline)
    except Exception as err:  # the lexer refusing the result is the same as a mismatch
        raise FormatError(f"formatting would change the tokens ({err})") from err
    if not same:
        raise FormatError("formatting would change the tokens; the file is left as it is")
    return result


# ----------------------------------------------------------------------------- the command


def _read(name: str) -> str:
    if name == "-":
        return sys.stdin.read()
    return Path(name).read_bytes().decode("utf-8")  # strict: never write back mangled bytes


def _one(name: str, check: bool, diff: bool, align_comments: bool) -> bool:
    """Format one file (or stdin); False when it has errors, or with --check, would change."""
    shown = "<stdin>" if name == "-" else name
    try:
        text = _read(name)
    except UnicodeDecodeError:
        print(f"error: `{shown}` left unchanged: it is not UTF-8 text", file=sys.stderr)
        return False
    try:
        result = format_source(text, align_comments)
    except FormatError as err:
        if err.diagnostics:
            print(Renderer(shown, text).render_all(err.diagnostics) + "\n", file=sys.stderr)
        print(f"error: `{shown}` left unchanged: {err}", file=sys.stderr)
        return False
    if diff and result != text:
        import difflib

        sys.stdout.writelines(difflib.unified_diff(
            text.splitlines(keepends=True), result.splitlines(keepends=True),
            f"{shown} (original)", f"{shown} (formatted)"))
    if check:
        if result != text:
            print(f"would reformat `{shown}`", file=sys.stderr)
        return result == text
    if name == "-":
        if not diff:
            sys.stdout.write(result)
    elif result != text and not diff:
        write_atomic(Path(name), result)
    return True


def fmt_command(files: list[str], check: bool = False, diff: bool = False,
                align_comments: bool = False) -> int:
    """`cnndsl fmt`: 0 when all went well (with --check: nothing to change), else 1.
    A file that cannot be read is a usage error (2)."""
    ok = True
    for name in files:
        try:
            ok = _one(name, check, diff, align_comments) and ok
        except OSError as err:
            print(f"error: cannot read `{name}`: {err.strerror}", file=sys.stderr)
            return 2
    return 0 if ok else 1
