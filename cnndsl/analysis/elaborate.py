"""Stage 2: AST -> graph IR. Blocks, arguments, expressions and `repeat` are expanded; every
layer is named, scoped and wired to its inputs."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from cnndsl.analysis import keras_habits
from cnndsl.analysis.graph import Graph, Node, Port, Scope, TrainEntry
from cnndsl.analysis.infer import Shapes
from cnndsl.analysis.ops import OPS, Op
from cnndsl.analysis.values import (
    FALSE,
    FUNCTIONS,
    TRUE,
    Deferred,
    TensorRef,
    UnknownShape,
    Word,
    convert,
    evaluate,
    show,
    truth,
    whole,
)
from cnndsl.common.diagnostics import (
    ERROR,
    WARNING,
    CnnError,
    Diagnostic,
    Label,
    Span,
    did_you_mean,
)
from cnndsl.lang import ast

MAX_LAYERS = 100_000
_NO_INPUT = -1  # before the network's `input`


# Statements that are neither ops nor blocks.
_KEYWORDS = ("repeat", "reuse", "outputs")


class _TooBig(Exception):
    pass


@dataclass
class _Frame:
    """A network's or block instance's body: the names it defines, and the statements with
    a name being elaborated (to tell a cycle from a use before definition)."""

    body: tuple[ast.Stmt, ...]
    pending: list[str] = field(default_factory=list)
    _names: dict[str, Span] | None = None

    @property
    def names(self) -> dict[str, Span]:
        if self._names is None:
            self._names = {}
            for stmt in walk(self.body):
                if stmt.alias is not None:
                    self._names.setdefault(stmt.alias.id, stmt.alias.span)
        return self._names


def walk(stmts: tuple[ast.Statement, ...]) -> Iterator[ast.Stmt]:
    """Every statement of a body, those in braces and in both branches of an `if` included
    (not those of called blocks)."""
    for stmt in stmts:
        if isinstance(stmt, ast.If):
            yield from walk(stmt.body)
            yield from walk(stmt.orelse)
            continue
        yield stmt
        if stmt.brace is not None:
            yield from walk(stmt.brace.body)
            for path in stmt.brace.paths:
                yield from walk(path.body)


def refs(stmts: tuple[ast.Stmt, ...]) -> set[str]:
    """The names a body reads as `@name`."""
    return {arg.value.id for stmt in walk(stmts) for arg in stmt.args
            if isinstance(arg.value, ast.Ref)}


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
        self.shapes = Shapes(self.nodes)  # for conditions that read a tensor's shape
        self.tensor_params: dict[str, set[str]] = {}  # per block: the params read as `@p`
        self.frames: list[_Frame] = []
        self.top: set[int] = set()  # ids of the network's own statements
        self.inputs: list[Port] = []
        self.outputs: list[Port] | None = None
        self.last: ast.Stmt | None = None  # the network's last statement
        self.repeats: set[int] = set()  # nodes named as the output of a `repeat`
        for block in program.blocks:
            self._define(block)

    def error(self, message: str, span: Span | None, hint: str | None = None,
              labels: tuple[Label, ...] = ()) -> None:
        self.diagnostics.append(CnnError(message, span, hint, labels).diagnostic())

    def _define(self, block: ast.BlockDef) -> None:
        name = block.name.id
        if name in OPS or name in _KEYWORDS:
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
        self.tensor_params[name] = set(seen) & refs(block.body)

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

    def body(self, stmts: tuple[ast.Statement, ...], current: int | None, env: dict[str, Any],
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
            if isinstance(stmt, ast.Stmt) and stmt.alias is not None and current != _NO_INPUT:
                # `as x` makes the statement's tensor readable as `@x` (lost: None, silent)
                instance = (*scope, stmt.alias.id) if stmt.is_call else None
                env["@" + stmt.alias.id] = TensorRef(current, instance)
                if stmt.op.id == "repeat" and current is not None:
                    self.repeats.add(current)
        return current

    def stmt(self, stmt: ast.Statement, current: int | None, env: dict[str, Any],
             scope: tuple[str, ...]) -> int | None:
        if isinstance(stmt, ast.If):
            return self.if_(stmt, current, env, scope)
        if stmt.ref is not None:
            if current == _NO_INPUT:
                raise CnnError(f"`@{stmt.ref.id}` comes before the network's `input`",
                               stmt.span, "a tensor can be read only after it is made")
            return self.tensor(stmt.ref, env).node
        pending = self.frames[-1].pending if self.frames and stmt.alias else None
        if pending is not None:
            pending.append(stmt.alias.id)  # type: ignore[union-attr]
        try:
            return self._stmt(stmt, current, env, scope)
        finally:
            if pending is not None:
                pending.pop()

    def _stmt(self, stmt: ast.Stmt, current: int | None, env: dict[str, Any],
              scope: tuple[str, ...]) -> int | None:
        if stmt.is_call:
            return self.call(stmt, current, env, scope)
        name = stmt.op.id
        if name == "repeat":
            return self.repeat(stmt, current, env, scope)
        if name == "outputs":
            return self.outputs_stmt(stmt, env)
        if name == "reuse":
            return self.reuse(stmt, current, env, scope)
        op = OPS.get(name)
        if op is None:
            if name in self.blocks:
                raise CnnError(f"`{name}` is a block: call it with parentheses", stmt.op.span,
                               f"write `{name}(...)`, with no space before `(`")
            if name in ("else", "elif"):
                raise CnnError(f"`{name}` without its `if`", stmt.op.span,
                               "`else` follows the `}` of its `if` on the same line: "
                               "`} else {`, or `} else if COND {`")
            raise CnnError(f"unknown op `{name}`", stmt.op.span,
                           keras_habits.hint(stmt)
                           or did_you_mean(name, [*OPS, *self.blocks, *_KEYWORDS])
                           or "see docs/language.md for the list of ops")
        if op.arity == "source":
            self._check_input(stmt, scope)
        elif current == _NO_INPUT:
            raise CnnError(f"`{name}` comes before the network's `input`", stmt.op.span,
                           "start the network with `input HxWxC`, e.g. `input 28x28x1`")
        operands = [a for a in stmt.args if isinstance(a.value, ast.Ref)]
        if operands:
            if op.arity != "merge":
                first = operands[0].value.id  # type: ignore[union-attr]
                raise CnnError(f"`{op.name}` takes no tensor operands", operands[0].span,
                               f"write `@{first}` on a line of its own, then `{op.name} ...`")
            stmt = replace(stmt, args=tuple(a for a in stmt.args if a not in operands))
        args, spans = self.bind(op, stmt, env)
        if op.arity == "source" and any(isinstance(v, Deferred) for v in args.values()):
            raise CnnError("the input's sizes must be numbers", stmt.span,
                           "`in` is the network's input itself: it has no shape yet")
        if operands:
            inputs, input_spans = self._operands(op, stmt, operands, env)
        else:
            inputs, input_spans = self._inputs(op, stmt, current, env, scope)
        node = self.add_node(op, args, spans, inputs, input_spans, stmt, scope)
        if op.arity == "source":
            self.inputs.append(Port(stmt.alias.id if stmt.alias else op.name, node))
        return node

    def _check_input(self, stmt: ast.Stmt, scope: tuple[str, ...]) -> None:
        """Each `input` of the network's own body starts a new current tensor; a second one
        needs a name."""
        if scope or id(stmt) not in self.top:
            raise CnnError("`input` can only be a statement of the network itself",
                           stmt.op.span, "not inside a block, a merge path or a `repeat`")
        if self.inputs and stmt.alias is None:
            raise CnnError("a network with several inputs names each one", stmt.op.span,
                           "write `input 28x28x1 as right`, say",
                           (Label(self.nodes[self.inputs[0].node].span, "the first input"),))

    # ---- named tensors

    def tensor(self, ref: ast.Ref, env: dict[str, Any]) -> TensorRef:
        """The tensor `@name` reads, or an error saying why there is none."""
        name = ref.id
        value = env.get("@" + name, env.get(name) if name == "in" else None)
        if isinstance(value, TensorRef):
            return value
        if name in env:
            raise CnnError(f"`{name}` is a value, not a tensor", ref.span,
                           f"write `{name}` without `@` where a number goes")
        frame = self.frames[-1] if self.frames else None
        if frame is not None and name in frame.pending:
            raise CnnError(f"`@{name}` reads the output of its own statement: a cycle",
                           ref.span, "a layer's inputs must be computed before it",
                           (Label(frame.names[name], f"`{name}` is named here"),))
        if frame is not None and name in frame.names:
            raise CnnError(f"`@{name}` is used before it is defined", ref.span,
                           "a tensor can be read only after the statement that names it",
                           (Label(frame.names[name], "defined here, later"),))
        known = [k[1:] for k in env if k.startswith("@")]
        raise CnnError(f"unknown tensor `@{name}`", ref.span,
                       did_you_mean(name, known) or "name a tensor with `as NAME` to read it "
                       "as `@NAME`")

    def _operands(self, op: Op, stmt: ast.Stmt, operands: list[ast.Arg], env: dict[str, Any]
                  ) -> tuple[tuple[int | None, ...], tuple[Span, ...]]:
        """`add @a @b`: a merge of named tensors, without a brace."""
        if stmt.brace is not None:
            raise CnnError(f"`{op.name}` takes named tensors or paths, not both",
                           stmt.brace.span, "put `@name` first in a path instead")
        if len(operands) < 2:
            raise CnnError(f"`{op.name}` needs at least two tensors", operands[0].span,
                           "with one tensor there is nothing to merge")
        refs = [self.tensor(a.value, env) for a in operands]  # type: ignore[arg-type]
        return tuple(r.node for r in refs), tuple(a.span for a in operands)

    def outputs_stmt(self, stmt: ast.Stmt, env: dict[str, Any]) -> int | None:
        """`outputs @main @aux`: the network's outputs, in that order."""
        if id(stmt) not in self.top or stmt is not self.last:
            raise CnnError("`outputs` can only be the last statement of a network",
                           stmt.op.span, "list the outputs at the end: `outputs @main @aux`")
        if stmt.alias is not None or stmt.brace is not None or not stmt.args:
            raise CnnError("`outputs` lists named tensors", stmt.span,
                           "name them with `as NAME` and write `outputs @main @aux`")
        ports: list[Port | None] = []
        seen: dict[str, Span] = {}
        for arg in stmt.args:
            value = arg.value
            if not isinstance(arg, ast.Positional) or not isinstance(value, ast.Ref):
                bare = isinstance(value, ast.Name) and "@" + value.id in env
                raise CnnError("`outputs` takes named tensors", arg.span,
                               f"write `@{value.id}`" if bare  # type: ignore[union-attr]
                               else "name a tensor with `as NAME` and list it as `@NAME`")
            if value.id in seen:
                raise CnnError(f"`@{value.id}` is listed twice", arg.span,
                               "each output is listed once", (Label(seen[value.id], "first here"),))
            seen[value.id] = arg.span
            node = self.tensor(value, env).node
            ports.append(Port(value.id, node) if node is not None else None)
        self.outputs = [p for p in ports if p is not None]
        return None if None in ports else self.outputs[0].node

    # ---- weight sharing

    def reuse(self, stmt: ast.Stmt, current: int | None, env: dict[str, Any],
              scope: tuple[str, ...]) -> int | None:
        """`reuse @x`: the layer (or block instance) named `x` applied again, same weights."""
        if current == _NO_INPUT:
            raise CnnError("`reuse` comes before the network's `input`", stmt.op.span,
                           "start the network with `input HxWxC`, e.g. `input 28x28x1`")
        value = stmt.args[0].value if len(stmt.args) == 1 else None
        if not isinstance(value, ast.Ref) or stmt.brace is not None:
            raise CnnError("`reuse` takes one named layer or block instance", stmt.span,
                           "name it with `as tower` where it is first applied, then write "
                           "`reuse @tower`")
        target = self.tensor(value, env)
        if target.node is None or current is None:
            return None
        node = self.nodes[target.node]
        if target.node in self.repeats:
            raise CnnError(f"`@{value.id}` names a `repeat`", value.span,
                           "reuse a layer or a block instance")
        if target.scope is None and node.op.arity != "one":
            what = "an input" if node.op.arity == "source" else "a merge"
            raise CnnError(f"`@{value.id}` is {what}: it has no weights to share", value.span,
                           "`reuse` applies a named layer or block instance again")
        local = self._local(scope, stmt.alias, "reuse")
        full = self._claim(scope, local, stmt.alias.span if stmt.alias else stmt.op.span)
        if target.scope is None:
            copy = Node(len(self.nodes), full, node.op, node.args, (current,), scope, stmt.span,
                        node.arg_spans, (), _original(node))
            self._append(copy, stmt)
            return copy.id
        return self._reuse_block(target.scope, target.node, (*scope, local), current, stmt)

    def _reuse_block(self, path: tuple[str, ...], out: int, new_path: tuple[str, ...],
                     current: int, stmt: ast.Stmt) -> int:
        members = [n for n in self.nodes if n.scope[:len(path)] == path]
        ids = {n.id for n in members}
        outside = {i for n in members for i in n.inputs if i not in ids}
        if not members or out not in ids:
            raise CnnError(f"`{'/'.join(path)}` has no layers of its own to reuse",
                           stmt.args[0].span, "reuse a block instance that makes layers")
        if len(outside) != 1:
            raise CnnError(f"`{'/'.join(path)}` reads {len(outside)} tensors from outside",
                           stmt.args[0].span, "`reuse` applies again a block instance that "
                           "reads one tensor, its input")
        mapping = dict.fromkeys(outside, current)
        for s in [s for s in self.scopes if s.path[:len(path)] == path]:
            inner = new_path + s.path[len(path):]
            self.scopes.append(Scope(inner, "reuse" if s.path == path else s.kind, s.block,
                                     stmt.span if s.path == path else s.span))
        for n in members:
            inner = new_path + n.scope[len(path):]
            full = self._claim(inner[:-1], "/".join((inner[-1], n.local_name)), stmt.span)
            copy = Node(len(self.nodes), full, n.op, n.args,
                        tuple(mapping.get(i, i) for i in n.inputs), inner, stmt.span,
                        n.arg_spans, n.input_spans, _original(n))
            mapping[n.id] = self._append(copy, stmt)
        return mapping[out]

    def _append(self, node: Node, stmt: ast.Stmt) -> int:
        if len(self.nodes) >= MAX_LAYERS:
            raise _TooBig(self.repeat_spans[0] if self.repeat_spans else stmt.span,
                          bool(self.repeat_spans))
        self.nodes.append(node)
        return node.id

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
        # The one input is just `input`; other layers count up per op: conv_1, conv_2, ...
        local = op.name if op.arity == "source" and not stmt.alias else self._local(
            scope, stmt.alias, op.name)
        full = self._claim(scope, local, stmt.alias.span if stmt.alias else stmt.op.span)
        return self._append(Node(len(self.nodes), full, op, args, inputs, scope, stmt.span,
                                 spans, input_spans), stmt)

    # ---- arguments

    def bind(self, op: Op, stmt: ast.Stmt, env: dict[str, Any]
             ) -> tuple[dict[str, Any], dict[str, Span]]:
        """Match a statement's arguments to the op's: flags, positionals, then key=value."""
        values: dict[str, Any] = {}
        spans: dict[str, Span] = {}
        for i, arg in enumerate(stmt.args):
            if isinstance(arg, ast.Keyword):
                self._keyword(op, arg, env, values, spans)
            else:
                self._positional(op, arg, env, values, spans,
                                 (stmt.args[i - 1] if i else None, *stmt.args[i + 1:i + 2]))
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
                    values: dict[str, Any], spans: dict[str, Span],
                    around: tuple[ast.Arg | None, ...] = ()) -> None:
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
        if value in (TRUE, FALSE) and not takes_word:
            keys = [f"`{a.name}=`" for a in op.args if a.kind == "bool"]
            raise CnnError(f"`{value.name}` is not a positional argument of `{op.name}`",
                           arg.span, f"pass it to a key: {', '.join(keys)}" if keys else None)
        if isinstance(value, Word) and not takes_word:
            choices = [*op.flags, *env]
            raise CnnError(f"unknown name `{value.name}`", arg.span,
                           _keras_habit(op, value.name, around, env)
                           or did_you_mean(value.name, choices) or self._flag_hint(op))
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

    # ---- conditionals, blocks and repeat

    def if_(self, stmt: ast.If, current: int | None, env: dict[str, Any],
            scope: tuple[str, ...]) -> int | None:
        """One branch is elaborated; a condition on `in.c` reads the shape made so far."""
        value = evaluate(stmt.cond, env)
        if isinstance(value, Deferred) and current == _NO_INPUT:
            raise CnnError("this condition reads `in` before the network's `input`",
                           stmt.cond.span, "put the `if` after `input`")
        if isinstance(value, Deferred):
            try:
                value = evaluate(value.expr, value.env, self.shapes.shape_of)
            except UnknownShape:
                return None  # lost to an earlier error, said there
        chosen = stmt.body if truth(value, stmt.cond) else stmt.orelse
        return self.body(chosen, current, env, scope)

    def call(self, stmt: ast.Stmt, current: int | None, env: dict[str, Any],
             scope: tuple[str, ...]) -> int | None:
        name = stmt.op.id
        block = self.blocks.get(name)
        if block is None:
            if name in OPS:
                raise CnnError(f"`{name}` is an op, not a block", stmt.op.span,
                               f"ops take arguments after a space: `{OPS[name].usage()}`; "
                               f"`{name} (3, 2)` passes a tuple")
            if name in FUNCTIONS:
                raise CnnError(f"`{name}` is a function, not a block", stmt.op.span,
                               f"use it inside an argument: `conv {name}(8, in.c // 4) 1x1`")
            keras = keras_habits.hint(stmt)
            if keras:
                raise CnnError(f"`{name}(...)` is a Keras layer call", stmt.span, keras)
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
        self.frames.append(_Frame(block.body))
        try:
            return self.body(block.body, current, inner_env, path)
        finally:
            self.call_stack.pop()
            self.call_sites.pop()
            self.frames.pop()

    def _bind_call(self, block: ast.BlockDef, stmt: ast.Stmt, env: dict[str, Any],
                   current: int | None) -> dict[str, Any]:
        params = {p.name.id: p for p in block.params}
        given: dict[str, Any] = {}
        spans: dict[str, Span] = {}
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
                given[key], spans[key] = self._argument(arg.value, env), arg.span
            else:
                free = [p for p in order if p not in given]
                if not free:
                    raise CnnError(f"too many arguments for block `{block.name.id}`", arg.span,
                                   takes,
                                   (Label(block.name.span, "defined here"),))
                given[free[0]], spans[free[0]] = self._argument(arg.value, env), arg.span
        inner: dict[str, Any] = {"in": TensorRef(current)}
        for name, p in params.items():
            if name in given:
                inner[name] = self._check_tensor_param(block, p, given[name], spans[name])
                if isinstance(inner[name], TensorRef):
                    inner["@" + name] = inner[name]
            elif p.default is not None:
                inner[name] = evaluate(p.default, inner)
            else:
                raise CnnError(f"block `{block.name.id}` needs its parameter `{name}`",
                               stmt.op.span, f"pass it: `{block.name.id}({', '.join(params)})`",
                               (Label(p.span, "declared here"),))
        return inner

    def _argument(self, expr: ast.Expr, env: dict[str, Any]) -> Any:
        return self.tensor(expr, env) if isinstance(expr, ast.Ref) else evaluate(expr, env)

    def _check_tensor_param(self, block: ast.BlockDef, param: ast.Param, value: Any,
                            span: Span) -> Any:
        """A tensor parameter (one the block reads as `@name`) takes a tensor; others do not."""
        name = param.name.id
        if name in self.tensor_params.get(block.name.id, ()):
            if not isinstance(value, TensorRef):
                raise CnnError(f"`{name}` is a tensor parameter of `{block.name.id}`", span,
                               "pass a named tensor, such as `@x`",
                               (Label(param.span, "read as `@" + name + "` in the block"),))
        elif isinstance(value, TensorRef):
            raise CnnError(f"`{name}` of `{block.name.id}` is not a tensor parameter", span,
                           f"pass a value; the block would read a tensor as `@{name}`",
                           (Label(param.span, "declared here"),))
        return value

    def repeat(self, stmt: ast.Stmt, current: int | None, env: dict[str, Any],
               scope: tuple[str, ...]) -> int | None:
        positional = [a for a in stmt.args if isinstance(a, ast.Positional)]
        index = repeat_index(stmt, env)
        if len(stmt.args) != 1 + (index is not None) or len(positional) != 1:
            raise CnnError("`repeat` takes one count: `repeat N { ... }`", stmt.op.span,
                           "and optionally `index=NAME`: `repeat N index=i { ... }`")
        count = evaluate(positional[0].value, env)
        if isinstance(count, Deferred):
            raise CnnError("a repeat count cannot depend on a tensor's shape", positional[0].span,
                           "the number of layers must be known before shapes are")
        count = whole(count, "the repeat count", positional[0].span, 0)
        brace = stmt.brace
        if brace is None or brace.paths or not brace.body:
            raise CnnError("`repeat` needs a body in braces: `repeat N { ... }`",
                           brace.span if brace else stmt.op.span)
        body = brace.body
        # A repeated single block call is scoped by its own calls (dense_layer_1, _2, ...).
        own_scope = stmt.alias is not None or not (len(body) == 1 and _is_call(body[0])
                                                   and body[0].alias is None)
        self.repeat_spans.append(stmt.span)
        try:
            for k in range(count):
                if index is not None:  # the repetition's number, from 0
                    env = {**env, index: k}
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
        if not any(isinstance(s, ast.Stmt) and s.op.id == "input" and not s.is_call
                   for s in net.body):
            self.error(f"network `{net.name.id}` has no `input`", net.name.span,
                       "start it with `input HxWxC`, e.g. `input 28x28x1`")
            self.body(net.body, None, {}, ())  # still check each layer's own arguments
            return None
        # At the top level, `in` is the network's (first) input: the first node.
        self.top = {id(s) for s in net.body}
        self.last = net.body[-1]
        self.frames.append(_Frame(net.body))
        current = self.body(net.body, _NO_INPUT, {"in": TensorRef(0)}, ())
        if not self.nodes or self.nodes[0].op.arity != "source":
            return None  # the `input` itself was wrong, and said so
        if current in (None, _NO_INPUT):
            return None
        if self.outputs is None:
            self.outputs = [Port(self.nodes[current].name, current)]
        if not any(d.severity == ERROR for d in self.diagnostics):
            self._warn_unused()
        return current

    def _warn_unused(self) -> None:
        """A warning for each chain of layers that reaches no output, at its last layer."""
        live = {p.node for p in self.outputs or ()}
        used: set[int] = set()  # read by some layer
        for node in reversed(self.nodes):
            used.update(i for i in node.inputs if i is not None)
            if node.id in live:
                live.update(i for i in node.inputs if i is not None)
            elif node.id not in used:
                what = node.name
                self.diagnostics.append(Diagnostic(
                    WARNING, f"`{what}` is computed but never used", node.span,
                    "read it with `@NAME` (after `as NAME`), list it in `outputs`, or remove it"))


def _keras_habit(op: Op, word: str, around: tuple[ast.Arg | None, ...],
                 env: dict[str, Any]) -> str | None:
    """What to write instead of a Keras habit: a key without `=` (`stride 2`), or a size
    with spaces (`3 x 3`). `around` holds the arguments before and after the word."""
    def shown(arg: ast.Arg | None) -> str:
        try:
            return show(evaluate(arg.value, env)) if isinstance(arg, ast.Positional) else ""
        except CnnError:
            return ""

    before, after = (shown(a) for a in (*around, None, None)[:2])
    if op.arg(word) is not None:
        return f"`{word}` is a key: write `{word}={after or '...'}`"
    if word == "x":
        size = f"{before}x{after}" if before.isdigit() and after.isdigit() else "3x3"
        return f"sizes are written without spaces: `{size}`"
    return None


def repeat_index(stmt: ast.Stmt, env: dict[str, Any]) -> str | None:
    """The name `repeat N index=NAME { ... }` binds to each repetition's number, or None."""
    keywords = [a for a in stmt.args if isinstance(a, ast.Keyword)]
    for arg in keywords:
        if arg.name.id != "index":
            raise CnnError(f"`repeat` has no argument `{arg.name.id}`", arg.name.span,
                           did_you_mean(arg.name.id, ["index"])
                           or "it takes a count and `index=NAME`: `repeat N index=i { ... }`")
    if len(keywords) > 1:
        raise CnnError("`index` is given twice", keywords[1].span)
    if not keywords:
        return None
    value = keywords[0].value
    if not isinstance(value, ast.Name):
        raise CnnError("`index` takes a name for the repetition's number", value.span,
                       "write `repeat N index=i { ... }`: `i` is 0, 1, ... N - 1")
    if value.id in env:
        what = ("the input" if value.id == "in"
                else "a block parameter or an enclosing repeat's index")
        raise CnnError(f"`{value.id}` is already {what}", value.span,
                       "give the index a name of its own")
    return value.id


def _is_call(stmt: ast.Statement) -> bool:
    return isinstance(stmt, ast.Stmt) and stmt.is_call


def _train(program: ast.Program, diagnostics: list[Diagnostic]) -> list[TrainEntry]:
    if not program.trains:
        return []
    for extra in program.trains[1:]:
        diagnostics.append(CnnError("a file has one `train` section", extra.span,
                                    "merge the two sections").diagnostic())
    entries = []
    for stmt in program.trains[0].entries:
        if isinstance(stmt, ast.If):
            diagnostics.append(CnnError("a `train` section has no `if`", stmt.span,
                                        "its entries are settings: `epochs 10`").diagnostic())
            continue
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
        e.inputs.clear()
        e.error(f"this network expands to more than {MAX_LAYERS:,} layers", err.args[0],
                "reduce the `repeat` counts" if err.args[1] else
                "blocks that call blocks multiply their layers: call them fewer times")
        output = None
    except RecursionError:
        e.nodes.clear()
        e.scopes.clear()
        e.inputs.clear()
        e.error("blocks nest too deeply to expand", network.name.span,
                "call fewer blocks inside one another")
        output = None
    train = _train(program, e.diagnostics)
    # A `repeat` body says each of its errors once, not once per repetition.
    diagnostics = list(dict.fromkeys(e.diagnostics))
    outputs = e.outputs if output is not None and e.outputs else []
    return Graph(network.name.id, e.nodes, e.scopes, output, train, e.inputs, outputs), \
        diagnostics


def _original(node: Node) -> int:
    """The node whose layer a `reuse` applies again: the first application."""
    return node.shares if node.shares is not None else node.id
