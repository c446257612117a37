"""Stage 2: AST -> graph IR. Blocks, arguments, expressions and `repeat` are expanded; every
layer is named, scoped and wired to its inputs."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from cnndsl import ast
from cnndsl.diagnostics import CnnError, Diagnostic, Label, Span, did_you_mean
from cnndsl.graph import Graph, Node, Scope, TrainEntry
from cnndsl.ops import OPS, Op
from cnndsl.values import Deferred, TensorRef, Word, convert, evaluate, whole

MAX_LAYERS = 100_000
_NO_INPUT = -1  # before the network's `input`


class _TooBig(Exception):
    pass


# ----------------------------------------------------------------------------- elaboration


class Elaborator:
    def __init__(self, program: ast.Program) -> None:
        self.diagnostics: list[Diagnostic] = []
        self.blocks: dict[str, ast.BlockDef] = {}
        self.nodes: list[Node] = []
        self.scopes: list[Scope] = []
        self.counters: dict[tuple[str, ...], dict[str, int]] = defaultdict(dict)
        self.names: dict[str, Span] = {}
        self.call_stack: list[ast.BlockDef] = []
        self.call_sites: list[Scope] = []  # the block instances being expanded
        self.repeat_spans: list[Span] = []
        for block in program.blocks:
            self._define(block)

    def error(self, message: str, span: Span | None, hint: str | None = None,
              labels: tuple[Label, ...] = ()) -> None:
        self.diagnostics.append(CnnError(message, span, hint, labels).diagnostic())

    def _define(self, block: ast.BlockDef) -> None:
        name = block.name.id
        if name in OPS or name == "repeat":
            self.error(f"a block cannot be called `{name}`: that is an op", block.name.span,
                       "choose another name")
        elif name in self.blocks:
            first = self.blocks[name].name.span
            self.error(f"block `{name}` is defined twice", block.name.span,
                       "rename one of them", (Label(first, "first defined here"),))
        else:
            self.blocks[name] = block
        seen: dict[str, Span] = {}
        for p in block.params:
            if p.name.id == "in":
                self.error("a parameter cannot be called `in`", p.name.span,
                           "`in` is the block's input tensor: `in.c` is its channel count")
            if p.name.id in seen:
                self.error(f"parameter `{p.name.id}` appears twice", p.name.span, None,
                           (Label(seen[p.name.id], "first here"),))
            seen[p.name.id] = p.name.span

    # ---- naming

    def _fresh(self, scope: tuple[str, ...], base: str) -> str:
        counter = self.counters[scope]
        while True:
            counter[base] = counter.get(base, 0) + 1
            local = f"{base}_{counter[base]}"
            if "/".join((*scope, local)) not in self.names:
                return local

    def _claim(self, scope: tuple[str, ...], local: str, span: Span) -> str:
        full = "/".join((*scope, local))
        if full in self.names:
            raise CnnError(f"the name `{full}` is used twice", span,
                           "names of layers and block instances must be unique",
                           (Label(self.names[full], "first used here"),))
        self.names[full] = span
        return full

    def _local(self, scope: tuple[str, ...], alias: ast.Name | None, base: str) -> str:
        return alias.id if alias else self._fresh(scope, base)

    # ---- statements

    def body(self, stmts: tuple[ast.Stmt, ...], current: int | None, env: dict[str, Any],
             scope: tuple[str, ...]) -> int | None:
        for stmt in stmts:
            try:
                current = self.stmt(stmt, current, env, scope)
            except CnnError as err:
                if self.call_sites:  # inside a block: also point at the call it came from
                    site = self.call_sites[-1]
                    err.labels += (Label(site.span, f"in `{'/'.join(site.path)}`, "
                                                    "expanded from this call"),)
                self.diagnostics.append(err.diagnostic(stmt.span))
                current = None
        return current

    def stmt(self, stmt: ast.Stmt, current: int | None, env: dict[str, Any],
             scope: tuple[str, ...]) -> int | None:
        if stmt.is_call:
            return self.call(stmt, current, env, scope)
        name = stmt.op.id
        if name == "repeat":
            return self.repeat(stmt, current, env, scope)
        op = OPS.get(name)
        if op is None:
            if name in self.blocks:
                raise CnnError(f"`{name}` is a block: call it with parentheses", stmt.op.span,
                               f"write `{name}(...)`, with no space before `(`")
            raise CnnError(f"unknown op `{name}`", stmt.op.span,
                           did_you_mean(name, [*OPS, *self.blocks, "repeat"])
                           or "see docs/language.md for the list of ops")
        if op.arity == "source":
            if current != _NO_INPUT or scope:
                raise CnnError("`input` can only be the first statement of a network",
                               stmt.op.span)
        elif current == _NO_INPUT:
            raise CnnError(f"`{name}` comes before the network's `input`", stmt.op.span,
                           "start the network with `input HxWxC`, e.g. `input 28x28x1`")
        args, spans = self.bind(op, stmt, env)
        if op.arity == "source" and any(isinstance(v, Deferred) for v in args.values()):
            raise CnnError("the input's sizes must be numbers", stmt.span,
                           "`in` is the network's input itself: it has no shape yet")
        inputs, input_spans = self._inputs(op, stmt, current, env, scope)
        return self.add_node(op, args, spans, inputs, input_spans, stmt, scope)

    def _inputs(self, op: Op, stmt: ast.Stmt, current: int | None, env: dict[str, Any],
                scope: tuple[str, ...]) -> tuple[tuple[int | None, ...], tuple[Span, ...]]:
        brace = stmt.brace
        if op.arity != "merge":
            if brace is not None:
                raise CnnError(f"`{op.name}` takes no `{{ }}`", brace.span,
                               "only `concat`, `add`, `multiply` and `repeat` take a brace")
            return ((current,) if op.arity == "one" else ()), ()
        if brace is None or not brace.paths:
            raise CnnError(f"`{op.name}` needs paths, each starting with `|`",
                           brace.span if brace else stmt.op.span,
                           f"write `{op.name} {{ | identity | conv 64 3x3 same }}`")
        if len(brace.paths) < 2:
            raise CnnError(f"`{op.name}` needs at least two paths", brace.span,
                           "with one path there is nothing to merge")
        outs = []
        for path in brace.paths:
            if not path.body:
                raise CnnError("this path is empty", path.span,
                               "write `identity` for a path that passes its input through")
            outs.append(self.body(path.body, current, env, scope))
        return tuple(outs), tuple(path.span for path in brace.paths)

    def add_node(self, op: Op, args: dict[str, Any], spans: dict[str, Span],
                 inputs: tuple[int | None, ...], input_spans: tuple[Span, ...],
                 stmt: ast.Stmt, scope: tuple[str, ...]) -> int:
        if len(self.nodes) >= MAX_LAYERS:
            raise _TooBig(self.repeat_spans[0] if self.repeat_spans else stmt.span,
                          bool(self.repeat_spans))
        # The one input is just `input`; other layers count up per op: conv_1, conv_2, ...
        local = op.name if op.arity == "source" and not stmt.alias else self._local(
            scope, stmt.alias, op.name)
        full = self._claim(scope, local, stmt.alias.span if stmt.alias else stmt.op.span)
        node = Node(len(self.nodes), full, op, args, inputs, scope, stmt.span, spans,
                    input_spans)
        self.nodes.append(node)
        return node.id

    # ---- arguments

    def bind(self, op: Op, stmt: ast.Stmt, env: dict[str, Any]
             ) -> tuple[dict[str, Any], dict[str, Span]]:
        """Match a statement's arguments to the op's: flags, positionals, then key=value."""
        values: dict[str, Any] = {}
        spans: dict[str, Span] = {}
        for arg in stmt.args:
            if isinstance(arg, ast.Keyword):
                self._keyword(op, arg, env, values, spans)
            else:
                self._positional(op, arg, env, values, spans)
        for spec in op.args:
            if spec.name not in values:
                if spec.required:
                    raise CnnError(f"`{op.name}` needs its `{spec.name}` ({spec.doc})",
                                   stmt.op.span, f"write `{op.usage()}`")
                values[spec.name] = spec.default
            else:
                values[spec.name] = convert(spec, values[spec.name], spans[spec.name])
        return values, spans

    def _keyword(self, op: Op, arg: ast.Keyword, env: dict[str, Any],
                 values: dict[str, Any], spans: dict[str, Span]) -> None:
        key = arg.name.id
        spec = op.arg(key)
        if spec is None:
            names = [a.name for a in op.args]
            known = ", ".join(f"`{n}`" for n in names) or "none"
            raise CnnError(f"`{op.name}` has no argument `{key}`", arg.name.span,
                           did_you_mean(key, names) or f"its arguments: {known}")
        if key in values:
            raise CnnError(f"`{key}` is given twice", arg.span, None,
                           (Label(spans[key], "first given here"),))
        values[key], spans[key] = evaluate(arg.value, env), arg.span

    def _positional(self, op: Op, arg: ast.Positional, env: dict[str, Any],
                    values: dict[str, Any], spans: dict[str, Span]) -> None:
        value = evaluate(arg.value, env)
        if isinstance(value, Word) and value.name in op.flags:
            key, flag_value = op.flags[value.name]
            if key in values:
                raise CnnError(f"`{value.name}` sets `{key}` a second time", arg.span,
                               "keep one of them", (Label(spans[key], "first set here"),))
            values[key], spans[key] = Word(flag_value), arg.span
            return
        free = [s for s in op.positional if s.name not in values]
        takes_word = bool(free) and free[0].kind in ("activation", "bool", "padding")
        if isinstance(value, Word) and not takes_word:
            choices = [*op.flags, *env]
            raise CnnError(f"unknown name `{value.name}`", arg.span,
                           did_you_mean(value.name, choices) or self._flag_hint(op))
        if not free:
            n = len(op.positional)
            takes = f"{n} positional argument{'s' if n != 1 else ''}, `{op.usage()}`" if n \
                else "no positional arguments"
            more = "; the others are written key=value" if len(op.args) > n else ""
            raise CnnError(f"too many arguments for `{op.name}`", arg.span,
                           f"`{op.name}` takes {takes}{more}")
        values[free[0].name], spans[free[0].name] = value, arg.span

    @staticmethod
    def _flag_hint(op: Op) -> str:
        words = [f"`{k}`" for k, (key, _) in sorted(op.flags.items()) if key != "activation"]
        if any(key == "activation" for key, _ in op.flags.values()):
            words.append("an activation name (`relu`, `softmax`, ...)")
        if words:
            listed = words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]
            return f"`{op.name}` takes as flag words {listed}"
        return f"`{op.name}` takes no flag words"

    # ---- blocks and repeat

    def call(self, stmt: ast.Stmt, current: int | None, env: dict[str, Any],
             scope: tuple[str, ...]) -> int | None:
        name = stmt.op.id
        block = self.blocks.get(name)
        if block is None:
            if name in OPS:
                raise CnnError(f"`{name}` is an op, not a block", stmt.op.span,
                               f"ops take arguments after a space: `{OPS[name].usage()}`; "
                               f"`{name} (3, 2)` passes a tuple")
            raise CnnError(f"unknown block `{name}`", stmt.op.span,
                           did_you_mean(name, [*self.blocks, *OPS]))
        if current == _NO_INPUT:
            raise CnnError(f"`{name}` comes before the network's `input`", stmt.op.span)
        if block in self.call_stack:
            chain = " -> ".join(b.name.id for b in self.call_stack[self.call_stack.index(block):])
            raise CnnError(f"block `{name}` calls itself ({chain} -> {name})", stmt.op.span,
                           "a block cannot contain itself; use `repeat` for repetition",
                           (Label(block.name.span, "defined here"),))
        inner_env = self._bind_call(block, stmt, env, current)
        local = self._local(scope, stmt.alias, name)
        path = (*scope, local)
        self._claim(scope, local, stmt.alias.span if stmt.alias else stmt.op.span)
        self.scopes.append(Scope(path, "block", name, stmt.span))
        self.call_stack.append(block)
        self.call_sites.append(self.scopes[-1])
        try:
            return self.body(block.body, current, inner_env, path)
        finally:
            self.call_stack.pop()
            self.call_sites.pop()

    def _bind_call(self, block: ast.BlockDef, stmt: ast.Stmt, env: dict[str, Any],
                   current: int | None) -> dict[str, Any]:
        params = {p.name.id: p for p in block.params}
        given: dict[str, Any] = {}
        order = list(params)
        takes = (f"`{block.name.id}` takes {len(params)} argument{'s' if len(params) != 1 else ''}"
                 f": {', '.join(f'`{p}`' for p in params)}" if params
                 else f"`{block.name.id}` takes no arguments")
        for arg in stmt.args:
            if isinstance(arg, ast.Keyword):
                key = arg.name.id
                if key not in params:
                    raise CnnError(f"block `{block.name.id}` has no parameter `{key}`",
                                   arg.name.span, did_you_mean(key, params) or takes)
                if key in given:
                    raise CnnError(f"`{key}` is given twice", arg.span)
                given[key] = evaluate(arg.value, env)
            else:
                free = [p for p in order if p not in given]
                if not free:
                    raise CnnError(f"too many arguments for block `{block.name.id}`", arg.span,
                                   takes,
                                   (Label(block.name.span, "defined here"),))
                given[free[0]] = evaluate(arg.value, env)
        inner: dict[str, Any] = {"in": TensorRef(current)}
        for name, p in params.items():
            if name in given:
                inner[name] = given[name]
            elif p.default is not None:
                inner[name] = evaluate(p.default, inner)
            else:
                raise CnnError(f"block `{block.name.id}` needs its parameter `{name}`",
                               stmt.op.span, f"pass it: `{block.name.id}({', '.join(params)})`",
                               (Label(p.span, "declared here"),))
        return inner

    def repeat(self, stmt: ast.Stmt, current: int | None, env: dict[str, Any],
               scope: tuple[str, ...]) -> int | None:
        positional = [a for a in stmt.args if isinstance(a, ast.Positional)]
        if len(stmt.args) != 1 or not positional:
            raise CnnError("`repeat` takes one count: `repeat N { ... }`", stmt.op.span)
        count = evaluate(positional[0].value, env)
        if isinstance(count, Deferred):
            raise CnnError("a repeat count cannot depend on a tensor's shape", positional[0].span,
                           "the number of layers must be known before shapes are")
        count = whole(count, "the repeat count",
                       positional[0].span, 1)
        brace = stmt.brace
        if brace is None or brace.paths or not brace.body:
            raise CnnError("`repeat` needs a body in braces: `repeat N { ... }`",
                           brace.span if brace else stmt.op.span)
        body = brace.body
        # A repeated single block call is scoped by its own calls (dense_layer_1, _2, ...).
        own_scope = stmt.alias is not None or not (len(body) == 1 and body[0].is_call
                                                   and body[0].alias is None)
        self.repeat_spans.append(stmt.span)
        try:
            for _ in range(count):
                before, errors = len(self.nodes), len(self.diagnostics)
                inner = scope
                if own_scope:
                    local = self._fresh(scope, stmt.alias.id if stmt.alias else "repeat")
                    inner = (*scope, local)
                    self._claim(scope, local, stmt.span)
                    self.scopes.append(Scope(inner, "repeat", None, stmt.span))
                current = self.body(body, current, env, inner)
                # Nothing made, or errors made: the other repetitions would only repeat them.
                if len(self.nodes) == before or len(self.diagnostics) > errors:
                    break
        finally:
            self.repeat_spans.pop()
        return current

    # ---- networks

    def network(self, net: ast.Network) -> int | None:
        if not any(s.op.id == "input" and not s.is_call for s in net.body):
            self.error(f"network `{net.name.id}` has no `input`", net.name.span,
                       "start it with `input HxWxC`, e.g. `input 28x28x1`")
            self.body(net.body, None, {}, ())  # still check each layer's own arguments
            return None
        # At the top level, `in` is the network's input: the first node.
        current = self.body(net.body, _NO_INPUT, {"in": TensorRef(0)}, ())
        if not self.nodes or self.nodes[0].op.arity != "source":
            return None  # the `input` itself was wrong, and said so
        return None if current == _NO_INPUT else current


def _train(program: ast.Program, diagnostics: list[Diagnostic]) -> list[TrainEntry]:
    if not program.trains:
        return []
    for extra in program.trains[1:]:
        diagnostics.append(CnnError("a file has one `train` section", extra.span,
                                    "merge the two sections").diagnostic())
    entries = []
    for stmt in program.trains[0].entries:
        try:
            values = tuple(evaluate(a.value, {}) for a in stmt.args
                           if isinstance(a, ast.Positional))
            options = {a.name.id: evaluate(a.value, {}) for a in stmt.args
                       if isinstance(a, ast.Keyword)}
        except CnnError as err:
            diagnostics.append(err.diagnostic(stmt.span))
            continue
        if stmt.brace is not None or stmt.is_call or stmt.alias is not None:
            diagnostics.append(CnnError("a `train` entry is `key value... option=value...`",
                                        stmt.span).diagnostic())
            continue
        entries.append(TrainEntry(stmt.op.id, values, options, stmt.span))
    return entries


def elaborate(program: ast.Program, network: ast.Network) -> tuple[Graph, list[Diagnostic]]:
    """Expand one network of a program into a graph; errors are collected, not raised."""
    e = Elaborator(program)
    try:
        output = e.network(network)
    except _TooBig as err:
        e.nodes.clear()
        e.scopes.clear()
        e.error(f"this network expands to more than {MAX_LAYERS:,} layers", err.args[0],
                "reduce the `repeat` counts" if err.args[1] else
                "blocks that call blocks multiply their layers: call them fewer times")
        output = None
    except RecursionError:
        e.nodes.clear()
        e.scopes.clear()
        e.error("blocks nest too deeply to expand", network.name.span,
                "call fewer blocks inside one another")
        output = None
    train = _train(program, e.diagnostics)
    # A `repeat` body says each of its errors once, not once per repetition.
    diagnostics = list(dict.fromkeys(e.diagnostics))
    return Graph(network.name.id, e.nodes, e.scopes, output, train), diagnostics
