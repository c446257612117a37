"""Stage 1: .cnn text -> AST, with syntax errors said in words."""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache

from lark import Lark, Token, Transformer, UnexpectedInput, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedToken, VisitError

from cnndsl.common.diagnostics import ERROR, MAX_NUMBER, Diagnostic, Label, Span
from cnndsl.common.resources import resource_dir
from cnndsl.lang import ast

_REF_WORD = "a named tensor like `@x`"
# How each terminal is named in an error message.
_TERMINAL_WORDS = {
    "NAME": "a name",
    "CALL_NAME": "a block call",
    "INT": "a number",
    "FLOAT": "a number",
    "SIZE": "a size like `3x3`",
    "STRING": 'a string like `"text"`',
    "COMPARE": "a comparison",
    "REF": _REF_WORD,
    "_SEP": "a new line or `;`",
    "$END": "the end of the file",
}
# Several expected tokens that say one thing together.
_GROUPS = (
    ("an operator (`+ - * / // == <` ...)",
     {"`+`", "`-`", "`*`", "`/`", "`//`", "a comparison", "`and`", "`or`"}),
    ("an operator (`+ - * / //`)", {"`+`", "`-`", "`*`", "`/`", "`//`"}),
    ("a value", {"a name", "a number", "a size like `3x3`", "`(`", "`not`", "a block call",
                 _REF_WORD}),
    ("a value", {"a name", "a number", "a size like `3x3`", "`(`", "`not`", "a block call"}),
    ("a value", {"a name", "a number", "a size like `3x3`", "`(`", _REF_WORD}),
    ("a value", {"a name", "a number", "a size like `3x3`", "`(`"}),
    ("a statement", {"a name", "a block call", "`if`", _REF_WORD}),
    ("a statement", {"a name", "a block call", "`if`"}),
    ("a statement", {"a name", "a block call", _REF_WORD}),
    ("a statement", {"a name", "a block call"}),
)
_MAX_SYNTAX_ERRORS = 20
CallHint = Callable[[ast.Stmt], str | None]  # see `parse`


@cache
def _parser() -> Lark:
    grammar = (resource_dir("grammars") / "cnn.lark").read_text()
    return Lark(grammar, parser="lalr", propagate_positions=True, maybe_placeholders=True,
                cache=True)


def _span(meta_or_token) -> Span:
    m = meta_or_token
    if isinstance(m, Token):
        return Span(m.line, m.column, m.end_line, m.end_column)
    if getattr(m, "empty", False):
        return Span(1, 1, 1, 2)
    return Span(m.line, m.column, m.end_line, m.end_column)


def _join(a: Span, b: Span) -> Span:
    return Span(a.line, a.column, b.end_line, b.end_column)


@v_args(meta=True)
class _ToAst(Transformer):
    """Turns Lark's tree into the frozen dataclasses of cnndsl.lang.ast."""

    def start(self, meta, items):
        pick = lambda kind: tuple(i for i in items if isinstance(i, kind))  # noqa: E731
        return ast.Program(pick(ast.Network), pick(ast.BlockDef), pick(ast.TrainSection))

    def network(self, meta, c):
        return ast.Network(_name(c[0]), c[1], _span(meta))

    def block_def(self, meta, c):
        params = tuple(p for p in c[1:-1] if p is not None)
        return ast.BlockDef(_name(c[0]), params, c[-1], _span(meta))

    def param(self, meta, c):
        return ast.Param(_name(c[0]), c[1], _span(meta))

    def train(self, meta, c):
        return ast.TrainSection(c[0], _span(meta))

    def body(self, meta, c):
        return tuple(s for s in c if s is not None)

    def op_stmt(self, meta, c):
        op, rest = _name(c[0]), list(c[1:])
        brace = rest.pop() if rest and isinstance(rest[-1], ast.Brace) else None
        alias = rest.pop() if rest and isinstance(rest[-1], ast.Name) else None
        return ast.Stmt(op, tuple(rest), alias, brace, False, _span(meta))

    def ref_stmt(self, meta, c):
        ref = _ref(c[0])
        return ast.Stmt(ast.Name(ast.REF_OP, ref.span), (ast.Positional(ref, ref.span),), None,
                        None, False, ref.span)

    def call_stmt(self, meta, c):
        op, rest = _name(c[0]), list(c[1:])
        alias = rest.pop() if rest and isinstance(rest[-1], ast.Name) else None
        args = tuple(a for a in rest if a is not None)
        return ast.Stmt(op, args, alias, None, True, _span(meta))

    def alias(self, meta, c):
        return _name(c[0])

    def brace(self, meta, c):
        paths = tuple(x for x in c if isinstance(x, ast.Path))
        body = tuple(x for x in c if isinstance(x, ast.Stmt))
        return ast.Brace(paths, body, _span(meta))

    def path(self, meta, c):
        return ast.Path(tuple(s for s in c if s is not None), _span(meta))

    def keyword(self, meta, c):
        return ast.Keyword(_name(c[0]), c[1], _span(meta))

    def positional(self, meta, c):
        return ast.Positional(c[0], _span(meta))

    def _binop(op):
        def build(self, meta, c):
            return ast.BinOp(op, c[0], c[1], _span(meta))
        return build

    add, sub, mul = _binop("+"), _binop("-"), _binop("*")
    floordiv, truediv = _binop("//"), _binop("/")

    def compare(self, meta, c):
        return ast.Compare(str(c[1]), c[0], c[2], _span(meta))

    def and_(self, meta, c):
        return ast.Logic("and", c[0], c[1], _span(meta))

    def or_(self, meta, c):
        return ast.Logic("or", c[0], c[1], _span(meta))

    def not_(self, meta, c):
        return ast.Logic("not", c[0], None, _span(meta))

    def func(self, meta, c):
        return ast.Call(_name(c[0]), tuple(x for x in c[1:] if x is not None), _span(meta))

    def if_stmt(self, meta, c):
        cond, body, rest = c[0], c[1], c[2:]
        orelse = ()
        if rest and isinstance(rest[0], ast.If):
            orelse = (rest[0],)
        elif rest and rest[0] is not None:
            orelse = rest[0]
        return ast.If(cond, body, orelse, _span(meta))

    def neg(self, meta, c):
        return ast.Neg(c[0], _span(meta))

    def int(self, meta, c):
        return ast.Num(_int(c[0]), _span(c[0]))

    def float(self, meta, c):
        return ast.Num(float(c[0]), _span(c[0]))  # too large is `inf`; elaboration says so

    def size(self, meta, c):
        return ast.Size(tuple(_int(d) for d in c[0].split("x")), _span(c[0]))

    def string(self, meta, c):
        raw = c[0][1:-1]
        value = raw.encode("utf-8", "backslashreplace").decode("unicode_escape", "replace")
        return ast.Str(value, _span(c[0]))

    def name(self, meta, c):
        return _name(c[0])

    def ref(self, meta, c):
        return _ref(c[0])

    def attr(self, meta, c):
        return ast.Attr(_name(c[0]), _name(c[1]), _join(_span(c[0]), _span(c[1])))

    def tuple(self, meta, c):
        return ast.Tuple(tuple(x for x in c if x is not None), _span(meta))


def _int(digits: str) -> int:
    """A literal's value; one too long for Python to convert stands as MAX_NUMBER + 1,
    which elaboration rejects as too large like any number above MAX_NUMBER."""
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) <= 100 else MAX_NUMBER + 1


def _name(token: Token) -> ast.Name:
    return ast.Name(str(token), _span(token))


def _ref(token: Token) -> ast.Ref:
    return ast.Ref(str(token)[1:], _span(token))


# ----------------------------------------------------------------------------- errors


def _describe_expected(names: set[str]) -> str:
    parser = _parser()
    words = set()
    for n in names:
        if n in _TERMINAL_WORDS:
            words.add(_TERMINAL_WORDS[n])
            continue
        try:
            pattern = parser.get_terminal(n).pattern
        except KeyError:
            continue
        words.add(f"`{pattern.value}`" if pattern.type == "str" else n.lower())
    for group, members in _GROUPS:
        if members <= words:
            words = (words - members) | {group}
    ordered = sorted(words)
    if not ordered:
        return "something else"
    if len(ordered) == 1:
        return ordered[0]
    return ", ".join(ordered[:-1]) + " or " + ordered[-1]


def _found(token: Token) -> str:
    if token.type == "_SEP":
        return "`;`" if token.strip().startswith(";") else "end of line"
    if token.type == "$END":
        return "end of file"
    return f"`{token}`"


def _at_end(err: UnexpectedInput) -> bool:
    """Whether the parser ran out of file (then blanking a line cannot help)."""
    token = getattr(err, "token", None)
    return isinstance(err, UnexpectedEOF) or getattr(token, "type", None) == "$END"


def _unclosed_brace(text: str) -> Label | None:
    """A label at the `{` that is most likely never closed, for "the file ends too early".

    Braces are matched outside comments and strings; among the matched pairs, a `}` that
    starts its line but does not line up with the line of its `{` suggests that this `{`
    is the unclosed one (the `}` belongs to an outer brace).
    """
    stack: list[tuple[int, int, int]] = []  # line, column, indentation of the `{` line
    suspect: tuple[int, int] | None = None
    for number, line in enumerate(text.split("\n"), 1):
        indent = len(line) - len(line.lstrip(" \t"))
        in_string = False
        for column, char in enumerate(line, 1):
            if in_string:
                in_string = char != '"'
            elif char == '"':
                in_string = True
            elif char == "#":
                break
            elif char == "{":
                stack.append((number, column, indent))
            elif char == "}" and stack:
                opened, col, opener_indent = stack.pop()
                if (suspect is None and opened != number and column == indent + 1
                        and indent != opener_indent):
                    suspect = (opened, col)
    if not stack:
        return None
    line, column = suspect or stack[-1][:2]
    return Label(Span.point(line, column), "this `{` is never closed")


def _ends_early(text: str, expected: str) -> Diagnostic:
    lines = text.rstrip("\r\n").split("\n")  # lines as Lark counts them, less trailing blanks
    span = Span.point(len(lines), len(lines[-1]) + 1)
    brace = _unclosed_brace(text)
    hint = f"expected {expected}" + ("; is a `}` missing?" if brace else "")
    return Diagnostic(ERROR, "the file ends too early", span, hint, (brace,) if brace else ())


def _syntax_diagnostic(err: UnexpectedInput, text: str, call_hint: CallHint | None) -> Diagnostic:
    if isinstance(err, UnexpectedCharacters):
        char = text[err.pos_in_stream] if err.pos_in_stream < len(text) else "?"
        return Diagnostic(ERROR, f"unexpected character `{char}`",
                          Span.point(err.line, err.column),
                          "a .cnn file holds names, numbers, sizes like `3x3`, strings, "
                          "`= , ( ) { } | ; + - * / // .` and `#` comments")
    if isinstance(err, UnexpectedEOF):
        return _ends_early(text, _describe_expected(set(err.expected)))
    assert isinstance(err, UnexpectedToken)
    tok = err.token
    expected = _describe_expected(set(err.accepts or err.expected))
    if tok.type == "$END":
        return _ends_early(text, expected)
    span = _span(tok) if tok.line is not None else Span.point(err.line, err.column)
    if tok.type == "_SEP":  # point at the end of the line, not at the blank that follows
        span = Span.point(tok.line, tok.column)
    hint = (_bare_commas(text, tok) or _keras_call(text, tok, call_hint)
            or f"expected {expected} here")
    return Diagnostic(ERROR, f"unexpected {_found(tok)}", span, hint)


def _keras_call(text: str, tok: Token, call_hint: CallHint | None) -> str | None:
    """For `layers.Conv2D(32, 3)` and `model.add(Dense(10))`: the `.cnn` line instead."""
    if call_hint is None or tok.type != "DOT" or tok.line is None:
        return None
    rest = text.split("\n")[tok.line - 1].split("#", 1)[0].strip()
    while True:  # `keras.layers.` and `model.add(...)` around the call
        dotted = re.match(r"[A-Za-z_][A-Za-z0-9_]*\.", rest)
        added = re.fullmatch(r"add\((.*)\)", rest)
        if not dotted and not added:
            break
        rest = added.group(1) if added else rest[dotted.end():]  # type: ignore[union-attr]
    try:
        program = _ToAst().transform(_parser().parse(f"network n {{ {rest} }}"))
    except (UnexpectedInput, VisitError, RecursionError):
        return None
    stmt = program.networks[0].body[0] if program.networks[0].body else None
    return call_hint(stmt) if isinstance(stmt, ast.Stmt) and stmt.is_call else None


def _bare_commas(text: str, tok: Token) -> str | None:
    """For `input 28,28,1`: a size written with commas outside parentheses."""
    if tok.type != "COMMA" or tok.line is None:
        return None
    line = text.split("\n")[tok.line - 1]
    for run in re.finditer(r"[0-9]+(\s*,\s*[0-9]+)+", line):
        if run.start() < tok.column <= run.end():
            dims = re.findall(r"[0-9]+", run.group())
            return (f"write the size as `{'x'.join(dims)}` (or `({', '.join(dims)})`); "
                    "commas separate values only inside parentheses")
    return None


def _blank_line(text: str, line: int) -> str | None:
    """The text with one line emptied, if that keeps its braces balanced; else None."""
    lines = text.split("\n")
    if not 0 < line <= len(lines):
        return None
    bad = lines[line - 1].split("#", 1)[0]
    if bad.count("{") != bad.count("}"):
        return None
    lines[line - 1] = ""
    return "\n".join(lines)


def parse(text: str, call_hint: CallHint | None = None
          ) -> tuple[ast.Program | None, list[Diagnostic]]:
    """Parse a whole file. On syntax errors, returns None and one error per bad line.

    `call_hint` turns a Keras call written by habit (`layers.Conv2D(32, 3)`), parsed as a
    statement, into the hint of its syntax error; it knows the ops, which the parser does
    not (cnndsl.analysis.keras_habits.hint)."""
    diagnostics: list[Diagnostic] = []
    current = text
    while True:
        try:
            tree = _parser().parse(current)
        except UnexpectedInput as err:
            d = _syntax_diagnostic(err, current, call_hint)
            diagnostics.append(d)
            retry = _blank_line(current, d.span.line) if d.span and not _at_end(err) else None
            if retry is None or retry == current or len(diagnostics) >= _MAX_SYNTAX_ERRORS:
                return None, diagnostics
            current = retry
            continue
        except RecursionError:
            return None, [_too_deep()]
        if diagnostics:
            return None, diagnostics
        try:
            return _ToAst().transform(tree), []
        except RecursionError:
            return None, [_too_deep()]
        except VisitError as err:  # Lark wraps what a callback raises, the recursion limit too
            if isinstance(err.orig_exc, RecursionError):
                return None, [_too_deep()]
            raise


def _too_deep() -> Diagnostic:
    return Diagnostic(ERROR, "the program nests too deeply to analyse", Span.point(1, 1),
                      "flatten the nesting: use blocks or fewer levels of `{ }`")
