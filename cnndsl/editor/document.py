"""What the language server knows about one open .cnn file, without any LSP types.

Positions are (line, column), both starting at 1 as in cnndsl.common.diagnostics.Span. Completion
and go-to-definition read the raw text (a file being typed rarely parses); hover, inlay
hints and symbols read the last analysis.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from cnndsl.analysis import keras_habits
from cnndsl.analysis.graph import Scope
from cnndsl.analysis.infer import Analysis, Layer, Totals
from cnndsl.analysis.ops import OPS
from cnndsl.analysis.ops.base import Op, fmt_shape
from cnndsl.analysis.pipeline import analyse
from cnndsl.common.diagnostics import Diagnostic, Span, sort_key
from cnndsl.lang import ast
from cnndsl.lang.parser import parse

Pos = tuple[int, int]
_WORD = re.compile(r"@?[A-Za-z_][A-Za-z0-9_]*")
_BLOCK = re.compile(r"^[ \t]*block[ \t]+([A-Za-z_][A-Za-z0-9_]*)[ \t]*\(([^)]*)\)", re.M)
_TOP = re.compile(r"^[ \t]*(network|block)\b", re.M)
_ALIAS = re.compile(r"\bas[ \t]+([A-Za-z_][A-Za-z0-9_]*)")


@dataclass
class Completion:
    label: str
    kind: str  # op, flag, keyword, block, ref, word
    detail: str = ""
    doc: str = ""
    insert: str | None = None


@dataclass
class Symbol:
    name: str
    kind: str  # network, block, layer
    span: Span
    selection: Span  # the name itself
    children: list[Symbol] = field(default_factory=list)


def _contains(span: Span, pos: Pos) -> bool:
    return (span.line, span.column) <= pos < (span.end_line, span.end_column)


def _start(span: Span) -> Pos:
    return (span.line, span.column)


def _statements(body: tuple) -> list[ast.Stmt]:
    """Every statement of a body, nested paths, repeat bodies and if branches included."""
    out: list[ast.Stmt] = []
    for s in body:
        if isinstance(s, ast.If):
            out += _statements(s.body) + _statements(s.orelse)
            continue
        out.append(s)
        if s.brace is not None:
            out += _statements(s.brace.body)
            for path in s.brace.paths:
                out += _statements(path.body)
    return out


def _dedupe(diagnostics: list[Diagnostic]) -> list[Diagnostic]:
    seen, out = set(), []
    for d in diagnostics:
        key = (d.severity, d.message, d.span)
        if key not in seen:
            seen.add(key)
            out.append(d)
    return sorted(out, key=sort_key)


def _counts(t: Totals | Layer) -> str:
    return f"params {t.params:,} · MACs {t.macs:,}"


def op_doc(op: Op) -> str:
    """An op's usage line, summary and argument docs, in Markdown."""
    lines = [f"```\n{op.usage()}\n```", op.summary]
    args = [f"- `{a.name}`{'' if a.required else f' (default {a.default!r})'}: {a.doc}"
            for a in op.args if a.doc]
    if op.flags:
        args.append("- flags: " + ", ".join(f"`{w}`" for w in op.flags))
    return "\n\n".join(lines + (["\n".join(args)] if args else []))


class Document:
    """One version of a file: its parse, one analysis per network, and the diagnostics."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.lines = text.split("\n")
        self.program, syntax = parse(text, keras_habits.hint)
        self.analyses: list[Analysis] = []
        diagnostics = list(syntax)
        if self.program is not None:
            names = [n.name.id for n in self.program.networks] or [None]
            for name in names:
                result = analyse(text, name)
                diagnostics += result.diagnostics
                if result.analysis is not None:
                    self.analyses.append(result.analysis)
        self.diagnostics = _dedupe(diagnostics)
        self._layers: dict[Pos, list[Layer]] = {}
        self._scopes: dict[Pos, list[tuple[Analysis, Scope]]] = {}
        for a in self.analyses:
            for layer in a.layers:
                self._layers.setdefault(_start(layer.node.span), []).append(layer)
            for scope in a.graph.scopes:
                self._scopes.setdefault(_start(scope.span), []).append((a, scope))

    # ------------------------------------------------------------------------- lookups

    def word_at(self, pos: Pos) -> tuple[str, Span] | None:
        line = self.lines[pos[0] - 1] if 0 < pos[0] <= len(self.lines) else ""
        for m in _WORD.finditer(line):
            if m.start() <= pos[1] - 1 <= m.end():
                return m.group(), Span(pos[0], m.start() + 1, pos[0], m.end() + 1)
        return None

    def statement_at(self, pos: Pos) -> ast.Stmt | None:
        """The innermost statement around a position."""
        if self.program is None:
            return None
        found = None
        for top in (*self.program.networks, *self.program.blocks):
            for stmt in _statements(top.body):
                if _contains(stmt.span, pos) and (found is None or
                                                  _start(stmt.span) >= _start(found.span)):
                    found = stmt
        return found

    # ------------------------------------------------------------------------- hover

    def hover(self, pos: Pos) -> tuple[str, Span] | None:
        stmt = self.statement_at(pos)
        word = self.word_at(pos)
        parts = []
        if stmt is not None and stmt.is_call:
            parts.append(self._call_text(stmt))
        elif stmt is not None:
            parts.append(self._layer_text(stmt))
        if word is not None and word[0] in OPS and (stmt is None or _contains(stmt.op.span, pos)):
            parts.append(op_doc(OPS[word[0]]))
        parts = [p for p in parts if p]
        if not parts:
            return None
        span = stmt.op.span if stmt is not None else word[1] if word is not None else None
        return "\n\n---\n\n".join(parts), span or Span.point(*pos)

    def _layer_text(self, stmt: ast.Stmt) -> str:
        layers = self._layers.get(_start(stmt.span), [])
        if not layers:
            return ""
        first = layers[0]
        rf = "?" if first.field is None else "x".join(map(str, sorted(set(first.field.size))))
        text = (f"**{first.node.op.name}** `{first.node.name}` → `{fmt_shape(first.shape)}`\n\n"
                f"{_counts(first)} · receptive field {rf}")
        if len(layers) > 1:
            shapes = sorted({fmt_shape(layer.shape) for layer in layers})
            text += f"\n\n{len(layers)} instances; outputs: " + ", ".join(
                f"`{s}`" for s in shapes[:6])
        return text

    def _call_text(self, stmt: ast.Stmt) -> str:
        found = self._scopes.get(_start(stmt.span), [])
        if not found:
            return ""
        a, scope = found[0]
        out = fmt_shape(a.scope_output(scope))
        text = (f"**block {stmt.op.id}** `{'/'.join(scope.path)}` → `{out}`\n\n"
                f"{_counts(a.scope_totals(scope))}")
        if len(found) > 1:
            text += f"\n\n(the first of {len(found)} calls)"
        return text

    # ------------------------------------------------------------------------- inlay hints

    def inlay_hints(self) -> list[tuple[Pos, str]]:
        """The output shape at the end of each line that ends a statement, when every
        instance of that statement agrees."""
        if self.program is None:
            return []
        last: dict[int, ast.Stmt] = {}
        for top in (*self.program.networks, *self.program.blocks):
            for stmt in _statements(top.body):
                line = stmt.span.end_line
                if stmt.brace is None and (line not in last or
                                           _start(stmt.span) > _start(last[line].span)):
                    last[line] = stmt
        hints = []
        for line, stmt in sorted(last.items()):
            shapes = self._shapes(stmt)
            if len(shapes) == 1:
                hints.append(((line, len(self.lines[line - 1]) + 1), f"→ {shapes.pop()}"))
        return hints

    def _shapes(self, stmt: ast.Stmt) -> set[str]:
        key = _start(stmt.span)
        if stmt.is_call:
            return {fmt_shape(a.scope_output(s)) for a, s in self._scopes.get(key, [])}
        return {fmt_shape(layer.shape) for layer in self._layers.get(key, [])}

    # ------------------------------------------------------------------------- completion

    def blocks(self) -> dict[str, tuple[str, Span]]:
        """Block names with their parameter lists and where they are defined (from text)."""
        out = {}
        for m in _BLOCK.finditer(self.text):
            line = self.text.count("\n", 0, m.start(1)) + 1
            column = m.start(1) - (self.text.rfind("\n", 0, m.start(1)) + 1) + 1
            out[m.group(1)] = (" ".join(m.group(2).split()),
                               Span(line, column, line, column + len(m.group(1))))
        return out

    def _body_start(self, pos: Pos) -> int:
        """The offset where the network or block around a position begins."""
        offset = self._offset(pos)
        starts = [m.start() for m in _TOP.finditer(self.text) if m.start() < offset]
        return starts[-1] if starts else 0

    def _offset(self, pos: Pos) -> int:
        return sum(len(line) + 1 for line in self.lines[:pos[0] - 1]) + pos[1] - 1

    def refs(self, pos: Pos) -> dict[str, Span]:
        """`as NAME` names given earlier in the same network or block body."""
        start, end = self._body_start(pos), self._offset(pos)
        out = {}
        for m in _ALIAS.finditer(self.text, start, end):
            line = self.text.count("\n", 0, m.start(1)) + 1
            column = m.start(1) - (self.text.rfind("\n", 0, m.start(1)) + 1) + 1
            out[m.group(1)] = Span(line, column, line, column + len(m.group(1)))
        return out

    def complete(self, pos: Pos) -> list[Completion]:
        line = self.lines[pos[0] - 1][:pos[1] - 1] if 0 < pos[0] <= len(self.lines) else ""
        segment = re.split(r"[;{|]", line)[-1]
        typed = re.findall(r"@?[A-Za-z_0-9]*$", segment)[0]  # the word being typed
        if typed.startswith("@"):
            return [Completion("@" + n, "ref", "a layer named earlier") for n in self.refs(pos)]
        call = re.search(r"([A-Za-z_][A-Za-z0-9_]*)\(([^()]*)$", segment)
        if call is not None:
            return self._params(call.group(1))
        words = segment[:len(segment) - len(typed)].split()
        if not words:
            return self._statement_starts()
        op = OPS.get(words[0])
        if op is None:
            return []
        return ([Completion(w, "flag", f"{arg} = {value}") for w, (arg, value) in op.flags.items()]
                + [Completion(f"{a.name}=", "keyword", a.kind, a.doc) for a in op.args])

    def _statement_starts(self) -> list[Completion]:
        items = [Completion(name, "op", op.usage(), op_doc(op)) for name, op in OPS.items()]
        items += [Completion(name, "block", f"{name}({params})", insert=f"{name}(")
                  for name, (params, _) in self.blocks().items()]
        return items + [Completion(k, "keyword") for k in ("repeat", "if")]

    def _params(self, block: str) -> list[Completion]:
        params = self.blocks().get(block)
        if params is None:
            return []
        names = [p.split("=")[0].strip() for p in params[0].split(",") if p.strip()]
        return [Completion(f"{n}=", "keyword", f"parameter of {block}") for n in names]

    # ------------------------------------------------------------------------- navigation

    def definition(self, pos: Pos) -> Span | None:
        found = self.word_at(pos)
        if found is None:
            return None
        word, span = found
        if word.startswith("@"):
            return self.refs((span.line, span.column)).get(word[1:])
        line = self.lines[pos[0] - 1]
        if line[span.end_column - 1:span.end_column] == "(" and word in self.blocks():
            return self.blocks()[word][1]
        return None

    def symbols(self) -> list[Symbol]:
        if self.program is None:
            return []
        out = []
        for top, kind in ([(n, "network") for n in self.program.networks]
                          + [(b, "block") for b in self.program.blocks]):
            named = [Symbol(s.alias.id, "layer", s.span, s.alias.span)
                     for s in _statements(top.body) if s.alias is not None]
            out.append(Symbol(top.name.id, kind, top.span, top.name.span, named))
        return sorted(out, key=lambda s: _start(s.span))
