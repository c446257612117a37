"""Backend: `cnndsl build` -- a checked program -> a readable Keras module (Jinja2 templates).

Each block of the .cnn file becomes one Python function whose parameters are the block's.
Its statements are bound with the elaborator's own argument binding, but with the block's
parameters bound to `Sym` values that stand for the Python arguments: arithmetic on them
builds Python source (`4 * growth`), `in.c` becomes `inputs.shape[-1]`. Each statement then
becomes the Keras layers of its op's own mapping (`op.to_keras`), the mapping the in-process
runtime reads, so the module `build` writes and the model `train` runs cannot drift apart.

Layer names are those of `check`, with `/` written `-` (ops.base.keras_name): a block function
takes its instance's name (`name="inception_3a"`) and builds its layers' names from it, with
the elaborator's counters replayed statement by statement; a `repeat` becomes a `for` loop
whose index goes into the names.

Fallbacks, each exact: a block with a parameter that is not a number at some call (a flag
word such as `relu`, a size such as `3x3`) is expanded where it is called instead of becoming
a function; and should anything not be expressible with symbolic arguments, the whole
network is written layer by layer from the checked graph (`flat`).

Nothing from the source is pasted into the code as text: identifiers are validated NAME
tokens (renamed when they clash with Python's keywords, builtins or the module's own names)
and every value is rendered as a Python literal.
"""

from __future__ import annotations

import ast as pyast
import builtins
import keyword
import re
import textwrap
from collections import defaultdict
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any

from cnndsl.analysis.elaborate import Elaborator, refs, repeat_index, walk
from cnndsl.analysis.infer import Analysis
from cnndsl.analysis.ops import OPS
from cnndsl.analysis.ops.base import KERAS_SEP, KerasLayer, Op
from cnndsl.analysis.pipeline import Result, analyse
from cnndsl.analysis.values import Deferred, Symbolic, TensorRef, Word, evaluate, is_symbolic, truth
from cnndsl.common.diagnostics import CnnError, Diagnostic
from cnndsl.lang import ast
from cnndsl.version import __version__

MAX_LOOP_DEPTH = 8  # deeper `repeat` nests are written out (Python nests 20 blocks at most)
LINE_LENGTH = 88  # ruff's default: the module passes `ruff format --check` as written
INDENT = "    "
NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")  # the grammar's NAME token
_RESERVED = {"keras", "layers", "ops", "build_model", "compile_model", "inputs", "name",
             "model", "math"}


@cache
def custom_sources() -> dict[str, str]:
    """Each class of backends/keras_layers.py (the layers Keras lacks) -> its source, decorator
    included: what a module that uses it defines. Read as text: `build` imports no Keras."""
    path = Path(__file__).with_name("keras_layers.py")
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    out = {}
    for node in pyast.parse(text).body:
        if isinstance(node, pyast.ClassDef):
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            out[node.name] = "\n".join(lines[first - 1:node.end_lineno])
    return out


# The generated code's own variables (layerN_K: a shared layer of the flat form).
_INTERNAL = re.compile(r"(x|i|j|k|i\d+)\Z|x\d+\Z|layer\d+_\d+\Z")


class Unsupported(Exception):
    """Something a block function cannot express with symbolic arguments: fall back."""


# ----------------------------------------------------------------------------- literals


def literal(v: Any) -> str:
    """A value as Python source, in the form `ruff format` leaves alone. Never raw text."""
    if isinstance(v, Sym):
        return v.src
    if v is None or isinstance(v, bool):
        return repr(v)
    if isinstance(v, int):
        return repr(v)
    if isinstance(v, float):
        if v != v or v in (float("inf"), float("-inf")):
            raise ValueError(f"no literal for {v!r}")
        return repr(v).replace("e+", "e")  # ruff writes 1e16, not 1e+16
    if isinstance(v, str):
        return string_literal(v)
    if isinstance(v, Word):  # a flag word passed to a block function: its name, a string
        return string_literal(v.name)
    if isinstance(v, tuple):
        items = [literal(x) for x in v]
        return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
    if isinstance(v, list):
        return "[" + ", ".join(literal(x) for x in v) + "]"
    raise TypeError(f"no literal for {type(v).__name__}")


def string_literal(s: str) -> str:
    """repr(s), with double quotes as ruff prefers them (when that needs no more escapes)."""
    r = repr(s)
    if r.startswith("'") and '"' not in s:
        r = '"' + r[1:-1].replace("\\'", "'") + '"'
    return r


def _dunder(name: str) -> bool:
    """`__builtins__`, `__getattr__`, `__name__`...: names that mean something to Python in
    a module (any `__x__`, to be safe); `__builtins___` is an ordinary name."""
    return len(name) > 4 and name.startswith("__") and name.endswith("__") and not (
        name.endswith("___"))


def identifier(name: str, taken: set[str] = frozenset()) -> str:  # type: ignore[assignment]
    """A .cnn NAME as a Python identifier: validated, renamed with `_` when it clashes."""
    if not NAME_RE.match(name):
        raise ValueError(f"not a NAME: {name!r}")
    out = name
    while (keyword.iskeyword(out) or keyword.issoftkeyword(out) or hasattr(builtins, out)
           or _dunder(out) or out in _RESERVED or out in custom_sources()
           or _INTERNAL.match(out) or out in taken):
        out += "_"
    return out


# ----------------------------------------------------------------------------- symbolic values

_IFELSE, _OR, _AND, _NOT, _CMP, _ADD, _MUL, _UNARY, _ATOM = range(-4, 5)
_PREC = {"+": _ADD, "-": _ADD, "*": _MUL, "/": _MUL, "//": _MUL}
_FUNCTIONS = {"min", "max", "round"}  # Python's builtins
_MATH = {"ceil", "floor"}  # `math.ceil`, `math.floor`: the module then imports math
_USES_MATH = re.compile(r"\bmath\.(ceil|floor)\(")


class Sym(Symbolic):
    """A number known only when the generated code runs: `growth`, `inputs.shape[-1]`.

    Arithmetic builds Python source; comparisons say "different" (so a symbolic argument
    is always written out); anything that needs the value itself is Unsupported.
    """

    def __init__(self, src: str, prec: int = _ATOM, kind: str = "number") -> None:
        self.src, self.prec = src, prec
        self.kind = kind  # number, size (a number or a tuple of them), word (a string), bool
        self.negated: str | None = None  # a comparison's opposite: `a != b` for `a == b`

    def __repr__(self) -> str:
        return f"Sym({self.src!r})"

    @staticmethod
    def _src(v: Any, prec: int) -> str:
        if isinstance(v, Sym):
            if v.kind != "number":
                raise Unsupported(f"arithmetic on the {v.kind} {v.src}")
            return v.src if v.prec >= prec else f"({v.src})"
        if isinstance(v, int | float) and not isinstance(v, bool):
            text = literal(v)
            return text if v >= 0 or prec <= _UNARY else f"({text})"
        raise Unsupported(f"arithmetic on {v!r}")

    def _bin(self, op: str, a: Any, b: Any) -> Sym:
        p = _PREC[op]
        return Sym(f"{self._src(a, p)} {op} {self._src(b, p + 1)}", p)

    def __add__(self, o: Any) -> Sym:
        return self if o == 0 and not isinstance(o, Sym) else self._bin("+", self, o)

    def __radd__(self, o: Any) -> Sym:
        return self if o == 0 else self._bin("+", o, self)

    def __sub__(self, o: Any) -> Sym:
        return self._bin("-", self, o)

    def __rsub__(self, o: Any) -> Sym:
        return self._bin("-", o, self)

    def __mul__(self, o: Any) -> Sym:
        return self._bin("*", self, o)

    def __rmul__(self, o: Any) -> Sym:
        return self._bin("*", o, self)

    def __floordiv__(self, o: Any) -> Sym:
        return self._bin("//", self, o)

    def __rfloordiv__(self, o: Any) -> Sym:
        return self._bin("//", o, self)

    def __truediv__(self, o: Any) -> Sym:
        return self._bin("/", self, o)

    def __rtruediv__(self, o: Any) -> Sym:
        return self._bin("/", o, self)

    def __neg__(self) -> Sym:
        return Sym(f"-{self._src(self, _UNARY)}", _UNARY)

    def __eq__(self, o: object) -> bool:
        return False

    def __ne__(self, o: object) -> bool:
        return True

    __hash__ = object.__hash__

    def __bool__(self) -> bool:
        raise Unsupported(f"the truth of {self.src}")

    def __iter__(self):
        raise Unsupported(f"the items of {self.src}")

    def __lt__(self, o: Any) -> bool:
        raise Unsupported(f"comparing {self.src}")

    __le__ = __gt__ = __ge__ = __lt__

    def apply(self, func: str, args: tuple[Any, ...]) -> Sym:
        """A function or comparison of the language as Python source: `max(8, c // 4)`,
        `stride == 1 and inputs.shape[-1] == filters`."""
        if func in _FUNCTIONS or func in _MATH:
            call = func if func in _FUNCTIONS else f"math.{func}"
            return Sym(f"{call}({', '.join(self._src(a, _OR) for a in args)})")
        if func in ("and", "or", "not"):
            prec = {"and": _AND, "or": _OR, "not": _NOT}[func]
            if func == "not":
                return _negation(args[0])
            return Sym(f"{_condition(args[0], prec)} {func} {_condition(args[1], prec + 1)}",
                       prec, "bool")
        if func in _INVERSE:
            a, b = (_operand(x, _CMP + 1) for x in args)
            compared = Sym(f"{a} {func} {b}", _CMP, "bool")
            compared.negated = f"{a} {_INVERSE[func]} {b}"
            return compared
        raise Unsupported(f"`{func}` in generated code")


def _operand(v: Any, prec: int) -> str:
    """A compared value: a number, a word (a string) or a tuple."""
    if isinstance(v, Sym):
        return v.src if v.prec >= prec else f"({v.src})"
    return literal(v) if not isinstance(v, int | float) else Sym._src(v, prec)


_INVERSE = {"==": "!=", "!=": "==", "<": ">=", "<=": ">", ">": "<=", ">=": "<"}


def _negation(v: Any) -> Sym:
    """`not c`, written as ruff prefers: `a != b` for `not a == b`."""
    if isinstance(v, Sym) and v.kind == "word":
        return Sym(f'{v.src} != "true"', _CMP, "bool")
    if isinstance(v, Sym) and v.negated is not None:
        return Sym(v.negated, _CMP, "bool")
    return Sym(f"not {_condition(v, _NOT)}", _NOT, "bool")


def _condition(v: Any, prec: int) -> str:
    """A condition: a word parameter holds "true" or "false", which Python must compare."""
    if isinstance(v, Sym) and v.kind == "word":
        return _operand(Sym(f'{v.src} == "true"', _CMP), prec)
    if isinstance(v, Sym):
        return _operand(v, prec)
    return "True" if v else "False"


class _SymShape:
    """The shape of a tensor variable, read by `in.h`, `in.w`, `in.c`."""

    def __init__(self, var: str) -> None:
        self.var = var

    def __len__(self) -> int:
        return 3

    def __getitem__(self, axis: int) -> Sym:
        return Sym(f"{self.var}.shape[{axis + 1 if axis >= 0 else axis}]")


def _plus(a: Any, b: Any) -> Any:
    """a + b, folding zeros (counters: `i + 1`, not `0 + i + 1`)."""
    if not isinstance(a, Sym) and a == 0:
        return b
    return a + b


# ----------------------------------------------------------------------------- names


@dataclass
class _Name:
    """A layer or scope name: literal pieces and Python expressions, joined as an f-string."""

    parts: tuple[str | Sym, ...]

    def child(self, *parts: str | Sym) -> _Name:
        sep: tuple[str | Sym, ...] = (KERAS_SEP,) if self.parts else ()
        return _Name(self.parts + sep + parts)

    def render(self) -> str:
        if all(isinstance(p, str) for p in self.parts):
            return string_literal("".join(self.parts))  # type: ignore[arg-type]
        out = []
        for p in self.parts:
            if isinstance(p, Sym):
                out.append("{" + p.src + "}")
            else:
                if not re.fullmatch(r"[A-Za-z0-9_-]*", p):
                    raise ValueError(f"unsafe name piece {p!r}")
                out.append(p)
        return 'f"' + "".join(out) + '"'


_DIVERGED = object()  # a counter after an `if` whose branches counted differently


def _numbered(name: str, base: str) -> bool:
    return re.fullmatch(re.escape(base) + r"_\d+", name) is not None


@dataclass
class _Scope:
    """Where names are made: the elaborator's per-scope counters, replayed."""

    name: _Name
    counters: dict[str, Any] = field(default_factory=dict)
    claimed: set[str] = field(default_factory=set)
    symbolic: bool = False  # some counter depends on a parameter

    def fresh(self, base: str) -> _Name:
        c = self.counters.get(base, 0)
        if c is _DIVERGED:
            raise Unsupported(f"`{base}_N` numbered differently by the branches of an `if`")
        if isinstance(c, Sym):
            if any(re.fullmatch(re.escape(base) + r"_\d+", n) for n in self.claimed):
                raise Unsupported(f"`{base}_N` names next to a symbolic count")
            c = c + 1
            self.counters[base] = c
            return self.name.child(f"{base}_", c)
        while True:
            c += 1
            if f"{base}_{c}" not in self.claimed:
                break
        self.counters[base] = c
        self.claimed.add(f"{base}_{c}")
        return self.name.child(f"{base}_{c}")

    def claim(self, local: str) -> _Name:
        self.claimed.add(local)
        return self.name.child(local)

    def snapshot(self) -> tuple[dict[str, Any], set[str]]:
        return dict(self.counters), set(self.claimed)

    def join(self, cond: Sym, before: tuple[dict[str, Any], set[str]],
             then: tuple[dict[str, Any], set[str]]) -> None:
        """After a Python `if`: a counter the branches left apart counts on at run time,
        `(c + 1 if cond else c)`; its names are then made from that expression. A name
        `base_N` taken in one branch only (by `as`) would shift later numbers in that
        branch alone: those bases are unusable after the `if`."""
        other = self.snapshot()
        self.counters, self.claimed = dict(before[0]), before[1] | then[1] | other[1]
        counted = set()
        for base in {*then[0], *other[0]}:
            a, b = then[0].get(base, 0), other[0].get(base, 0)
            if a is b or (not (isinstance(a, Sym) or isinstance(b, Sym)) and a == b):
                self.counters[base] = a
                continue
            start = before[0].get(base, 0)
            made = {n for n in (then[1] | other[1]) - before[1] if _numbered(n, base)}
            if ('"' in cond.src or _DIVERGED in (a, b) or not all(
                    isinstance(x, int) for x in (start, a, b))
                    or made - {f"{base}_{k}" for k in range(start + 1, max(a, b) + 1)}):
                self.counters[base] = _DIVERGED  # (no quotes inside an f-string)
                continue
            self.counters[base] = Sym(f"{_operand(a, _OR)} if {cond.src} else "
                                      f"{_operand(b, _IFELSE)}", _IFELSE)
            self.claimed -= made
            counted.add(base)
        for name in then[1] ^ other[1]:
            base = name.rpartition("_")[0]
            if _numbered(name, base) and base not in counted:
                self.counters[base] = _DIVERGED

    def collides(self, base: str, count: Any) -> bool:
        """Would `count` names `base_N` from the counter on skip a name already taken?"""
        c = self.counters.get(base, 0)
        if isinstance(c, Sym) or isinstance(count, Sym):
            return False  # advance() refuses those
        return bool({f"{base}_{c + k}" for k in range(1, count + 1)} & self.claimed)

    def advance(self, base: str, count: Any) -> Any:
        """Reserve `count` names `base_N` for a loop; the first N minus one."""
        c = self.counters.get(base, 0)
        if isinstance(c, Sym) or isinstance(count, Sym):
            if any(re.fullmatch(re.escape(base) + r"_\d+", n) for n in self.claimed):
                raise Unsupported(f"`{base}_N` names next to a symbolic count")
        else:
            taken = {f"{base}_{c + k}" for k in range(1, count + 1)} & self.claimed
            if taken:
                raise Unsupported(f"`{sorted(taken)[0]}` is taken inside a loop's names")
            self.claimed |= {f"{base}_{c + k}" for k in range(1, count + 1)}
        self.counters[base] = _plus(c, count)
        return c


# ----------------------------------------------------------------------------- code emission


def _fits(indent: int, text: str) -> bool:
    return len(INDENT) * indent + len(text) <= LINE_LENGTH


def call_lines(head: str, args: list[str], tail: str, indent: int) -> list[str]:
    """`head(args)tail` on one line when it fits, else one argument a line with a trailing
    comma (ruff keeps that form as it is)."""
    one = f"{head}({', '.join(args)}){tail}"
    if _fits(indent, one) or not args:
        return [one]
    return [f"{head}(", *(INDENT + line for a in args for line in _item_lines(a, indent + 1)),
            f"){tail}"]


def _item_lines(item: str, indent: int) -> list[str]:
    """One argument or tuple element and its comma; a bracketed value that does not fit is
    wrapped as `ruff format` wraps it, one element a line (`crop=(` ... `),`), recursively."""
    split = None if _fits(indent, item + ",") else _split_brackets(item)
    if split is None:
        return [item + ","]
    head, items = split
    return [head + "(", *(INDENT + line for i in items for line in _item_lines(i, indent + 1)),
            "),"]


def _split_brackets(text: str) -> tuple[str, list[str]] | None:
    """`key=(a, (b, c))` as (`key=`, [`a`, `(b, c)`]): a keyword, name or call head and the
    top-level elements of the parentheses that end the text; None for any other form."""
    depth, start, items = 0, None, []
    for i, ch in enumerate(text):
        if ch in "\"'":
            return None  # strings: never wrapped
        if ch in "([{":
            depth += 1
            if depth == 1 and ch == "(" and start is None:
                start = last = i + 1
        elif ch in ")]}":
            depth -= 1
            if depth == 0 and start is not None:
                if i != len(text) - 1:
                    return None
                items.append(text[last:i])
        elif ch == "," and depth == 1 and start is not None:
            items.append(text[last:i])
            last = i + 1
    head = text[:start - 1] if start is not None else ""
    if start is None or not re.fullmatch(r"(\w+=)?[\w.]*", head):
        return None
    if len(items) == 1 and (head == "" or head.endswith("=")):
        return None  # `(a + b)` is a group, not a tuple: a comma would make it one
    items = [i.strip() for i in items]
    return head, [i for i in items if i]


@dataclass
class _Function:
    name: str
    params: list[str]
    doc: str
    lines: list[str]


def _reads_in(stmts: tuple[ast.Statement, ...]) -> bool:
    """Does a body read its own block's input (`in.c`) -- outside nested blocks' bodies."""
    def expr(e: Any) -> bool:
        match e:
            case ast.Attr(obj=obj):
                return obj.id == "in"
            case ast.Name(id=n) | ast.Ref(id=n):
                return n == "in"
            case ast.Tuple(items=items):
                return any(expr(i) for i in items)
            case ast.Neg(operand=o):
                return expr(o)
            case ast.BinOp(left=a, right=b) | ast.Compare(left=a, right=b):
                return expr(a) or expr(b)
            case ast.Logic(left=a, right=b):
                return expr(a) or (b is not None and expr(b))
            case ast.Call(args=args):
                return any(expr(a) for a in args)
        return False

    for s in stmts:
        if isinstance(s, ast.If):
            if expr(s.cond) or _reads_in(s.body) or _reads_in(s.orelse):
                return True
            continue
        if any(expr(a.value) for a in s.args):
            return True
        if s.brace and (_reads_in(s.brace.body) or any(_reads_in(p.body) for p in s.brace.paths)):
            return True
    return False


class _Recorder(Elaborator):
    """The elaborator, noting each block instance's arguments (to choose which blocks can be
    functions of numbers)."""

    def __init__(self, program: ast.Program) -> None:
        super().__init__(program)
        self.instances: dict[str, list[dict[str, Any]]] = defaultdict(list)

    def _bind_call(self, block: ast.BlockDef, stmt: ast.Stmt, env: dict[str, Any],
                   current: int | None) -> dict[str, Any]:
        inner = super()._bind_call(block, stmt, env, current)
        self.instances[block.name.id].append(inner)
        return inner


def _numeric(v: Any) -> bool:
    return isinstance(v, Deferred) or (isinstance(v, int | float) and not isinstance(v, bool))


def _param_kind(values: list[Any]) -> str | None:
    """What a parameter holds at every call: number, size (numbers or tuples of them) or
    word (flag words such as `same`, passed as strings) or tensor (`@x`); None when it varies
    otherwise."""
    if all(_numeric(v) for v in values):
        return "number"
    if all(_numeric(v) or (isinstance(v, tuple) and v and all(_numeric(x) for x in v))
           for v in values):
        return "size"
    if all(isinstance(v, Word) for v in values):
        return "word"
    if all(isinstance(v, TensorRef) for v in values):
        return "tensor"
    return None


def _literal_default(v: Any) -> bool:
    return (_numeric(v) and not isinstance(v, Deferred)) or isinstance(v, Word) or (
        isinstance(v, tuple) and bool(v) and all(_numeric(x) for x in v))


class _Emitter:
    """Walks the AST again, with the elaborator's binding, and writes Python lines."""

    def __init__(self, program: ast.Program, network: ast.Network,
                 functions: dict[str, dict[str, str]]) -> None:
        self.program = program
        self.network = network
        self.binder = Elaborator(program)
        self.blocks = {b.name.id: b for b in program.blocks}
        self.functions = functions  # the blocks written as functions: their params' kinds
        self.fn_names = {}
        taken: set[str] = set()
        for b in program.blocks:
            if b.name.id in functions:
                self.fn_names[b.name.id] = identifier(b.name.id, taken)
                taken.add(self.fn_names[b.name.id])
        self.lines: list[str] = []
        self.indent = 1
        self.tensors: list[str] = []  # TensorRef(k).node -> variable name
        self.n_vars = 0
        self.loop_depth = 0
        self.named: set[str] = set()  # the names the body being written reads as `@name`
        self.variables: set[str] = set()  # the Python names taken in the function
        self.outputs: list[str] | None = None  # `outputs @a @b`: their variables
        self.input_vars: list[str] = []
        self.several_inputs = False

    # ---- helpers

    def emit(self, *lines: str) -> None:
        self.lines += [INDENT * self.indent + line for line in lines]

    def new_var(self) -> str:
        self.n_vars += 1
        return f"x{self.n_vars}"

    def tensor_ref(self, var: str) -> TensorRef:
        self.tensors.append(var)
        return TensorRef(len(self.tensors) - 1)

    def resolve(self, v: Any) -> Any:
        """A Deferred (`in.c // 2`) as a Sym over the tensor's `.shape`."""
        if isinstance(v, Deferred):
            return evaluate(v.expr, v.env,
                            lambda node: _SymShape(self.tensors[node]) if node is not None
                            else None)
        if isinstance(v, tuple):
            return tuple(self.resolve(x) for x in v)
        return v

    def fits(self, name: _Name) -> _Name:
        """A name counted by a condition (`conv_{(1 if c else 0) + 1}`) must fit on its
        line: an f-string cannot be wrapped."""
        text = name.render()
        if " if " in text and not _fits(self.indent + 1, f"name={text},"):
            raise Unsupported("a name counted by a long condition")
        return name

    def loop_var(self) -> str:
        self.loop_depth += 1
        return "ijk"[self.loop_depth - 1] if self.loop_depth <= 3 else f"i{self.loop_depth}"

    # ---- statements

    def body(self, stmts: tuple[ast.Stmt, ...], env: dict[str, Any], scope: _Scope,
             current: str, chain: str) -> str:
        for stmt in stmts:
            named = isinstance(stmt, ast.Stmt) and stmt.alias is not None and (
                stmt.alias.id in self.named or (self.several_inputs and stmt.op.id == "input"))
            # A tensor read later as `@name` gets a variable of its own, named after it.
            out = self.variable(stmt.alias.id) if named else chain  # type: ignore[union-attr]
            current = self.stmt(stmt, env, scope, current, out)
            if named:
                env["@" + stmt.alias.id] = self.tensor_ref(current)  # type: ignore[union-attr]
        return current

    def variable(self, name: str) -> str:
        """A Python variable for a named tensor: a safe identifier, unique in its function."""
        var = identifier(name, self.variables)
        self.variables.add(var)
        return var

    def stmt(self, stmt: ast.Statement, env: dict[str, Any], scope: _Scope, current: str,
             chain: str) -> str:
        if isinstance(stmt, ast.If):
            return self.if_(stmt, env, scope, current, chain)
        if stmt.ref is not None:
            return self.tensor_var(stmt.ref, env)
        if stmt.is_call:
            return self.call(stmt, env, scope, current, chain)
        if stmt.op.id == "repeat":
            return self.repeat(stmt, env, scope, current, chain)
        if stmt.op.id == "outputs":
            self.outputs = [self.tensor_var(a.value, env) for a in stmt.args]  # type: ignore[arg-type]
            return current
        if stmt.op.id == "reuse":
            raise Unsupported("`reuse`: written layer by layer, each shared layer once")
        op = OPS[stmt.op.id]
        operands = [a for a in stmt.args if isinstance(a.value, ast.Ref)]
        if operands:
            stmt = replace(stmt, args=tuple(a for a in stmt.args if a not in operands))
        args = self.bind(op, stmt, env)
        inputs = [current]
        if operands:
            inputs = [self.tensor_var(a.value, env) for a in operands]  # type: ignore[arg-type]
        elif op.arity == "merge":
            assert stmt.brace is not None
            inputs = []
            for path in stmt.brace.paths:
                inputs.append(self.body(path.body, env, scope, current, self.new_var()))
        if op.arity == "source":
            name = scope.claim(stmt.alias.id if stmt.alias else "input")
        elif stmt.alias:
            name = scope.claim(stmt.alias.id)
        else:
            name = self.fits(scope.fresh(op.name))
        return self.layers(op, args, name, inputs, chain)

    def tensor_var(self, ref: ast.Ref, env: dict[str, Any]) -> str:
        """The variable holding `@name` (checked: the name is bound)."""
        value = env.get("@" + ref.id, env.get(ref.id) if ref.id == "in" else None)
        if not isinstance(value, TensorRef) or value.node is None:
            raise Unsupported(f"the tensor `@{ref.id}`")
        return self.tensors[value.node]

    def bind(self, op: Op, stmt: ast.Stmt, env: dict[str, Any]) -> dict[str, Any]:
        for arg in stmt.args:  # a flag word must be known to be bound as one
            if isinstance(arg, ast.Positional):
                v = evaluate(arg.value, env)
                if isinstance(v, Sym) and v.kind == "word":
                    raise Unsupported(f"the word parameter {v.src} written positionally")
        try:
            values, _ = self.binder.bind(op, stmt, env)
        except CnnError as err:  # checked concretely; symbolically it binds otherwise
            raise Unsupported(err.message) from err
        out = {}
        for spec in op.args:
            v = self.resolve(values[spec.name])
            if is_symbolic(v):
                v = _normalise(spec.kind, v)
            out[spec.name] = v
        return out

    def layers(self, op: Op, args: dict[str, Any], name: _Name, inputs: list[str],
               chain: str) -> str:
        specs = op.to_keras(args)
        if op.arity == "source":
            spec = specs[0]
            kwargs = [*_kwargs(spec), f"name={_suffixed(name, spec.suffix)}"]
            var = chain if self.several_inputs else "inputs"
            self.emit(*call_lines(f"{var} = keras.Input", kwargs, "", self.indent))
            self.input_vars.append(var)
            return var
        x = f"[{', '.join(inputs)}]" if op.arity == "merge" else inputs[0]
        for spec in specs:
            self.emit(*call_lines(f"{chain} = {_layer_class(spec)}",
                                  [*_kwargs(spec), f"name={_suffixed(name, spec.suffix)}"],
                                  f"({x})", self.indent))
            x = chain
        return chain

    # ---- conditionals

    def if_(self, stmt: ast.If, env: dict[str, Any], scope: _Scope, current: str,
            chain: str, keyword: str = "if") -> str:
        """A known condition picks its branch; one on a parameter or on `in.c` becomes a
        Python `if` (an `else if` on one, an `elif`), each branch leaving its result in
        `chain`."""
        cond = self.condition(stmt, env)
        if not isinstance(cond, Sym):
            return self.body(stmt.body if cond else stmt.orelse, env, scope, current, chain)
        if any(s.alias is not None and s.alias.id in self.named for s in walk((stmt,))):
            raise Unsupported("a tensor named inside a conditional branch")
        before = scope.snapshot()
        self.emit(f"{keyword} {_condition(cond, _OR)}:")
        self._branch(stmt.body, env, scope, current, chain)
        after_if = scope.snapshot()
        scope.counters, scope.claimed = dict(before[0]), set(before[1])
        nested = stmt.orelse[0] if len(stmt.orelse) == 1 else None
        if isinstance(nested, ast.If) and isinstance(self.condition(nested, env), Sym):
            self.if_(nested, env, scope, current, chain, "elif")
        elif stmt.orelse or current != chain:
            self.emit("else:")
            self._branch(stmt.orelse, env, scope, current, chain)
        scope.join(cond, before, after_if)
        return chain

    def condition(self, stmt: ast.If, env: dict[str, Any]) -> bool | Sym:
        try:
            return truth(self.resolve(evaluate(stmt.cond, env)), stmt.cond)
        except CnnError as err:  # checked concretely; symbolically it reads otherwise
            raise Unsupported(err.message) from err

    def _branch(self, stmts: tuple[ast.Statement, ...], env: dict[str, Any], scope: _Scope,
                current: str, chain: str) -> None:
        self.indent += 1
        start = len(self.lines)
        out = self.body(stmts, env, scope, current, chain)
        if out != chain:
            self.emit(f"{chain} = {out}")
        if len(self.lines) == start:
            self.emit("pass")
        self.indent -= 1

    # ---- blocks

    def call(self, stmt: ast.Stmt, env: dict[str, Any], scope: _Scope, current: str,
             chain: str, name: _Name | None = None) -> str:
        block = self.blocks[stmt.op.id]
        if name is None:
            name = scope.claim(stmt.alias.id) if stmt.alias else self.fits(
                scope.fresh(block.name.id))
        if block.name.id in self.functions:
            return self.function_call(block, stmt, env, name, current, chain)
        # Expanded in place: the block's body, with its arguments bound.
        if _reads_in(block.body) and current == chain:
            saved = self.new_var()
            self.emit(f"{saved} = {current}")
            current = saved
        ref = self.tensor_ref(current)
        try:
            inner = self.binder._bind_call(block, stmt, env, ref.node)
        except CnnError as err:
            raise Unsupported(err.message) from err
        inner = {k: self.resolve(v) for k, v in inner.items()}
        self.emit(f"# block `{block.name.id}`, expanded in place")
        return self.body(block.body, inner, _Scope(name), current, chain)

    def function_call(self, block: ast.BlockDef, stmt: ast.Stmt, env: dict[str, Any],
                      name: _Name, current: str, chain: str) -> str:
        params = _param_names(block, self.fn_names)
        args = []
        for arg in stmt.args:
            if isinstance(arg.value, ast.Ref):  # a tensor parameter: its variable
                text = self.tensor_var(arg.value, env)
            else:
                text = literal(self.resolve(evaluate(arg.value, env)))
            args.append(f"{params[arg.name.id]}={text}" if isinstance(arg, ast.Keyword)
                        else text)
        args.append(f"name={name.render()}")
        self.emit(*call_lines(f"{chain} = {self.fn_names[block.name.id]}",
                              [current, *args], "", self.indent))
        return chain

    def repeat(self, stmt: ast.Stmt, env: dict[str, Any], scope: _Scope, current: str,
               chain: str) -> str:
        counts = [a for a in stmt.args if isinstance(a, ast.Positional)]
        count = self.resolve(evaluate(counts[0].value, env))
        counter = repeat_index(stmt, env)  # bound to each repetition's number, from 0
        assert stmt.brace is not None
        body = stmt.brace.body
        own_scope = stmt.alias is not None or not (len(body) == 1 and _is_call(body[0])
                                                   and body[0].alias is None)
        base = (stmt.alias.id if stmt.alias else "repeat") if own_scope else body[0].op.id
        if count != 0 and not _makes_layers(body, self.blocks):
            count = 1  # the elaborator stops after a repetition that makes nothing
        if not isinstance(count, Sym) and (count <= 1 or scope.collides(base, count)):
            # Unrolled: once, or around a name taken by hand (`as repeat_2`), as the
            # elaborator skips it
            for k in range(count):
                name = scope.fresh(base)
                inner = env if counter is None else {**env, counter: k}
                current = self._repetition(body, inner, scope, name, own_scope, current, chain)
            return current
        if self.loop_depth >= MAX_LOOP_DEPTH:  # Python allows 20 nested blocks
            raise Unsupported("repeats nested too deeply for Python's loops")
        if current != chain:
            self.emit(f"{chain} = {current}")
        start = scope.advance(base, count)
        var = self.loop_var()
        if counter is not None and not _INTERNAL.match(counter):  # `index=b`: `for b in`
            var = identifier(counter, self.variables)
            self.variables.add(var)
        self.emit(f"for {var} in range({literal(count)}):")
        self.indent += 1
        index = Sym(var) + (start + 1) if not isinstance(start, Sym) else start + Sym(var) + 1
        name = scope.name.child(f"{base}_", index)
        inner = env if counter is None else {**env, counter: Sym(var)}
        out = self._repetition(body, inner, scope, name, own_scope, chain, chain)
        if out != chain:  # a named tensor ends the body: the next repetition reads it
            self.emit(f"{chain} = {out}")
        self.indent -= 1
        self.loop_depth -= 1
        return chain

    def _repetition(self, body: tuple[ast.Stmt, ...], env: dict[str, Any], scope: _Scope,
                    name: _Name, own_scope: bool, current: str, chain: str) -> str:
        if own_scope:
            return self.body(body, env, _Scope(name), current, chain)
        return self.call(body[0], env, scope, current, chain, name)

    # ---- a block's function

    def function(self, block: ast.BlockDef) -> _Function:
        self.lines, self.indent, self.tensors, self.n_vars = [], 1, [], 0
        params = _param_names(block, self.fn_names)
        self.named = _reads(block.body)
        self.variables = {*self.fn_names.values(), *params.values()}
        env: dict[str, Any] = {"in": self.tensor_ref("inputs")}
        signature = ["inputs"]
        defaults = []
        seen_default = False
        for p in block.params:
            py = params[p.name.id]
            if p.default is None:
                if seen_default:
                    raise Unsupported("a parameter without a default after one with")
                signature.append(py)
            else:
                seen_default = True
                # evaluated as the elaborator does: earlier parameters and `in` bound
                value = self.resolve(evaluate(p.default, env))
                if _literal_default(value):
                    signature.append(f"{py}={literal(value)}")
                else:  # computed from earlier parameters or the input's shape
                    signature.append(f"{py}=None")
                    defaults.append((py, value))
            kind = self.functions[block.name.id][p.name.id]
            if kind == "tensor":
                env[p.name.id] = env["@" + p.name.id] = self.tensor_ref(py)
            else:
                env[p.name.id] = Sym(py, kind=kind)
        signature += ["*", "name"]
        for py, default in defaults:
            self.emit(f"if {py} is None:")
            self.emit(f"{INDENT}{py} = {literal(default)}")
        out = self.body(block.body, env, _Scope(_Name((Sym("name"),))), "inputs", "x")
        self.emit(f"return {out}")
        doc = f'"""Block `{block.name.id}`: its layers are named under `name`."""'
        return _Function(self.fn_names[block.name.id], signature, doc, self.lines)

    def build_model(self) -> tuple[list[str], str]:
        """The body of `build_model()`, and "Sequential" or "Functional"."""
        self.lines, self.indent, self.tensors, self.n_vars = [], 1, [], 0
        self.named = _reads(self.network.body)
        self.variables = set(self.fn_names.values())
        self.input_vars, self.outputs = [], None
        self.several_inputs = sum(isinstance(s, ast.Stmt) and s.op.id == "input"
                                  for s in self.network.body) > 1
        if self.several_inputs and _reads_in(self.network.body):
            raise Unsupported("`in` at the top of a network with several inputs")
        model_name = string_literal(_model_name(self.network.name.id))
        items = self.sequential()
        if items is not None:
            self.lines = []
            self.emit("return keras.Sequential(", f"{INDENT}[")
            for item in items:
                self.lines += [INDENT * 3 + line for line in item]
            self.emit(f"{INDENT}],", f"{INDENT}name={model_name},", ")")
            return self.lines, "Sequential"
        self.lines, self.indent, self.tensors, self.n_vars = [], 1, [], 0
        scope = _Scope(_Name(()))
        env = {"in": self.tensor_ref("inputs")}
        out = self.body(self.network.body, env, scope, "", "x")
        if not self.several_inputs and self.outputs is None:
            self.emit(f"return keras.Model(inputs, {out}, name={model_name})")
        else:
            self.emit(*model_lines(self.input_vars, self.outputs or [out], model_name))
        return self.lines, "Functional"

    def sequential(self) -> list[list[str]] | None:
        """The layers of a plain chain, each as the lines of its constructor; else None."""
        body = self.network.body
        if any(not isinstance(s, ast.Stmt) or s.is_call or s.op.id not in OPS
               or OPS[s.op.id].arity == "merge" for s in body) \
                or sum(s.op.id == "input" for s in body) > 1:
            return None
        scope = _Scope(_Name(()))
        env = {"in": self.tensor_ref("inputs")}
        items = []
        for stmt in body:
            op = OPS[stmt.op.id]
            args = self.bind(op, stmt, env)
            if any(is_symbolic(v) for v in args.values()):
                return None  # reads `in.c`: needs a tensor
            if op.arity == "source":
                name = scope.claim(stmt.alias.id if stmt.alias else "input")
            else:
                name = scope.claim(stmt.alias.id) if stmt.alias else scope.fresh(op.name)
            for spec in op.to_keras(args):
                head = "keras.Input" if op.arity == "source" else _layer_class(spec)
                items.append(call_lines(head, [*_kwargs(spec),
                                               f"name={_suffixed(name, spec.suffix)}"],
                                        ",", 3))
        return items


def model_lines(inputs: list[str], outputs: list[str], model_name: str) -> list[str]:
    """`return keras.Model(inputs=[...], outputs=[...], name=...)` for several inputs or
    outputs (one of either stays a tensor, not a list, as Keras's own models have it)."""

    def ports(vars_: list[str]) -> str:
        return vars_[0] if len(vars_) == 1 else f"[{', '.join(vars_)}]"

    return call_lines("return keras.Model", [f"inputs={ports(inputs)}",
                                             f"outputs={ports(outputs)}", f"name={model_name}"],
                      "", 1)


def _reads(stmts: tuple[ast.Stmt, ...]) -> set[str]:
    """The names a body reads as `@name` (not counting `@in`)."""
    return refs(stmts) - {"in"}


def _model_name(network: str) -> str:
    """As the runtime names it (cnndsl.backends.runtime._model_name)."""
    return network if network.isidentifier() else "model"


# ----------------------------------------------------------------------------- fallback: flat


def flat_body(analysis: Analysis) -> list[str]:
    """`build_model()` layer by layer from the checked graph: exact, if not short.

    A layer that `reuse` applies again is made once, as a variable, and called at each use.
    """
    lines = []
    var = {}
    graph = analysis.graph
    shared = {n.shares for n in graph.nodes if n.shares is not None}
    several = len(graph.inputs) > 1
    taken: set[str] = set()
    for layer in analysis.layers:
        node = layer.node
        specs = node.op.to_keras(node.args)
        name = _Name((node.keras_name,))
        if node.op.arity == "source":
            args = [*_kwargs(specs[0]), f"name={_suffixed(name, specs[0].suffix)}"]
            var[node.id] = identifier(node.name, taken) if several else "inputs"
            taken.add(var[node.id])
            lines += call_lines(f"{var[node.id]} = keras.Input", args, "", 1)
            continue
        ins = [var[i] for i in node.inputs]  # type: ignore[index]
        x = f"[{', '.join(ins)}]" if node.op.arity == "merge" else ins[0]
        out = f"x{node.id}"
        for k, spec in enumerate(specs):
            made = _layer_class(spec)
            args = [*_kwargs(spec), f"name={_suffixed(name, spec.suffix)}"]
            if node.shares is not None:
                lines.append(f"{out} = layer{node.shares}_{k}({x})")
            elif node.id in shared:
                lines += call_lines(f"layer{node.id}_{k} = {made}", args, "", 1)
                lines.append(f"{out} = layer{node.id}_{k}({x})")
            else:
                lines += call_lines(f"{out} = {made}", args, f"({x})", 1)
            x = out
        var[node.id] = out
    model_name = string_literal(_model_name(graph.network))
    if not several and len(graph.outputs) == 1:
        lines.append(f"return keras.Model(inputs, {var[graph.output]}, name={model_name})")
    else:
        lines += model_lines([var[p.node] for p in graph.inputs],
                             [var[p.node] for p in graph.outputs], model_name)
    return [INDENT + line for line in lines]


# ----------------------------------------------------------------------------- the module


@dataclass
class Module:
    """What the template renders."""

    header: list[str]
    network: str
    functions: list[_Function]
    build_lines: list[str]
    kind: str  # Sequential, Functional or flat
    compile_lines: list[str]
    expanded: list[str]  # blocks expanded in place instead of being functions
    shared: bool = False  # some layer is applied again (`reuse`)
    classes: list[str] = field(default_factory=list)  # cnndsl's own layers, as source
    uses_layers: bool = True  # any layer from `keras.layers` (else no import of it)

    @property
    def uses_math(self) -> bool:
        """Whether the code calls `math.ceil` or `math.floor` (and so imports math)."""
        lines = [*self.build_lines, *(line for f in self.functions for line in f.lines)]
        return any(_USES_MATH.search(line) for line in lines)

    @property
    def note(self) -> list[str]:
        """Comment lines saying which blocks are not functions, and why."""
        if self.kind == "flat" and self.shared:
            text = ("Written layer by layer from the checked graph: each layer that `reuse` "
                    "applies again is made once and called at each use.")
        elif self.kind == "flat":
            text = ("Written layer by layer from the checked graph: the blocks could not "
                    "be written as functions of their parameters.")
        elif self.expanded:
            text = ("Expanded in place, as a parameter is not a number, a size or a flag "
                    "word at every call: " + ", ".join(f"`{b}`" for b in self.expanded) + ".")
        else:
            return []
        return [f"{INDENT}# {line}" for line in textwrap.wrap(text, LINE_LENGTH - 6)]


def plan(program: ast.Program, network: ast.Network, analysis: Analysis, filename: str,
         train: Any = None, force_flat: bool = False) -> Module:
    """Everything the module holds, as lines of code."""
    recorder = _Recorder(program)
    try:
        recorder.network(network)
    except RecursionError:  # nested too deeply for functions: write the graph out
        force_flat = True
    functions: dict[str, dict[str, str]] = {}
    for b in program.blocks:
        instances = recorder.instances.get(b.name.id)
        if not instances:
            continue  # not used by this network: nothing checked it
        kinds = {p.name.id: _param_kind([env[p.name.id] for env in instances])
                 for p in b.params}
        if all(kinds.values()):
            functions[b.name.id] = kinds  # type: ignore[assignment]
    fns: list[_Function] = []
    while not force_flat:
        emitter = _Emitter(program, network, functions)
        fns, failed = [], None
        try:
            for b in program.blocks:
                if b.name.id in functions:
                    failed = b.name.id
                    fns.append(emitter.function(b))
            failed = None
            build_lines, kind = emitter.build_model()
            break
        except Unsupported:
            if failed is None:
                force_flat = True
            else:
                del functions[failed]
        except RecursionError:
            force_flat = True
    if force_flat:
        fns, build_lines, kind = [], flat_body(analysis), "flat"
    used = set(recorder.instances)
    expanded = sorted(used - {f for f in functions}) if kind != "flat" else sorted(used)
    shared = any(n.shares is not None for n in analysis.graph.nodes)
    specs = [s for layer in analysis.layers if layer.node.op.arity != "source"
             for s in layer.node.op.to_keras(layer.node.args)]
    classes = [custom_sources()[c] for c in sorted({s.cls for s in specs if s.custom})]
    return Module(_header(analysis, filename, network.name.id), network.name.id, fns,
                  build_lines, kind,
                  _compile_lines(train, [p.name for p in analysis.graph.outputs]), expanded,
                  shared, classes, any(not s.custom for s in specs))


def _header(analysis: Analysis, filename: str, network: str) -> list[str]:
    t = analysis.totals
    outputs = analysis.port_shapes(analysis.graph.outputs)
    shape = literal((None, *analysis.output_shape)) if analysis.output_shape else "?"
    # No text of the input on the first two lines: Python reads a `coding=` there (PEP 263),
    # and a file named `coding=utf-16.cnn` must not choose the module's encoding.
    lines = [
        f"# Generated by cnndsl {__version__} (`cnndsl build`).",
        "# Edit the .cnn file and build again rather than this file.",
        f"# From the network `{network}`",
        f"# of {literal(filename)}.",
        "# Expected, as `cnndsl check` reports it:",
        f"#   params {t.params:,} (trainable {t.trainable:,}, non-trainable "
        f"{t.non_trainable:,})",
    ]
    if len(outputs) <= 1:
        return [*lines, f"#   MACs {t.macs:,}; output shape {shape}"]
    # One output a line: names can be long, and comments keep to the line length too.
    return [*lines, f"#   MACs {t.macs:,}; output shapes:",
            *(f"#     {name} {literal((None, *out))}" for name, out in outputs)]  # type: ignore[misc]


def _compile_lines(config: Any, outputs: list[str]) -> list[str]:
    """`model.compile(...)` with the train section's optimizer, loss and metrics (with
    several outputs, a loss, a weight and the metrics for each, in the outputs' order)."""
    if config is None:
        return []
    from cnndsl.analysis.train_section import METRIC_CLASSES, OPTIMIZER_CLASSES

    cls = OPTIMIZER_CLASSES[config.optimizer]
    if not NAME_RE.match(cls):
        raise ValueError(cls)
    options = [f"{identifier_key(k)}={literal(v)}" for k, v in config.optimizer_options.items()]
    optimizer = f"keras.optimizers.{cls}({', '.join(options)})"
    metrics = "[" + ", ".join(f"keras.metrics.{METRIC_CLASSES[m]}()" if m in METRIC_CLASSES
                              else literal(m) for m in config.metrics) + "]"
    losses = [config.output_losses.get(name, config.loss) for name in outputs]
    if len(outputs) == 1:
        args = [f"optimizer={optimizer}", f"loss={literal(losses[0])}", f"metrics={metrics}"]
    else:
        weights = [float(config.loss_weights.get(name, 1.0)) for name in outputs]
        args = [f"optimizer={optimizer}", f"loss={literal(losses)}",
                f"loss_weights={literal(weights)}",
                f"metrics=[{', '.join([metrics] * len(outputs))}]"]
    return [INDENT + line for line in call_lines("model.compile", args, "", 1)]


def identifier_key(key: str) -> str:
    if not NAME_RE.match(key) or keyword.iskeyword(key):
        raise ValueError(f"not a keyword argument: {key!r}")
    return key


def render(module: Module) -> str:
    """The module's text, from templates/module.py.j2."""
    import jinja2

    from cnndsl.common.resources import resource_dir

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(resource_dir("templates"))),
        autoescape=False,  # Python, not HTML: every value is already a Python literal
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    functions = [{"signature": call_lines(f"def {f.name}", f.params, ":", 0),
                  "doc": INDENT + f.doc, "body": f.lines} for f in module.functions]
    return env.get_template("module.py.j2").render(m=module, functions=functions)


def generate(source: str, filename: str, network: str | None = None,
             force_flat: bool = False) -> tuple[str | None, list[Diagnostic]]:
    """The module for an error-free file, or None and the diagnostics as `check` has them
    (the `train` section's included)."""
    result = analyse(source, network)
    if not result.ok:
        return None, result.diagnostics
    return module_source(result, filename, force_flat), result.diagnostics


def module_source(result: Result, filename: str, force_flat: bool = False) -> str:
    """The module of an error-free analysis; `filename` is named in its header."""
    from cnndsl.analysis.train_section import validate_train

    assert result.ok and result.analysis and result.program and result.network
    train = result.analysis.graph.train
    config = validate_train(train)[0] if train else None
    return render(plan(result.program, result.network, result.analysis, filename, config,
                       force_flat))


def _normalise(kind: str, v: Any) -> Any:
    """A symbolic argument in the form `convert` gives a known one: 3 -> (3, 3). A `size`
    parameter (a number or a tuple) stays as it is: Keras reads both as the .cnn file does."""
    if isinstance(v, tuple):
        flat = [x for x in v for x in (x if isinstance(x, tuple) else (x,))]
        if any(isinstance(x, Sym) and x.kind != "number" for x in flat):
            raise Unsupported("a size or word inside a tuple")
    sym = v if isinstance(v, Sym) else None
    if sym is not None and sym.kind == "word":
        if kind in ("padding", "activation", "choice"):
            return v
        raise Unsupported(f"a word parameter as a {kind}")
    if kind in ("size2", "pair"):
        return (v, v) if sym is not None and sym.kind == "number" else v
    if kind == "pad":
        if sym is not None:
            return ((v, v), (v, v)) if sym.kind == "number" else v
        if isinstance(v, tuple) and len(v) == 2 and not any(isinstance(x, tuple) for x in v):
            return ((v[0], v[0]), (v[1], v[1]))
        return v
    if kind == "shape":
        return (v,) if sym is not None and sym.kind == "number" else v
    if kind == "floats":  # a number, or a tuple of numbers: Keras reads both
        return v
    if kind in ("count", "int", "float", "rate"):
        if isinstance(v, tuple) or (sym is not None and sym.kind != "number"):
            raise Unsupported("a size where a number goes")
        return v
    raise Unsupported(f"a symbolic {kind}")


def _makes_layers(stmts: tuple[ast.Statement, ...], blocks: dict[str, ast.BlockDef],
                  seen: frozenset[str] = frozenset()) -> bool:
    maybe = False  # an `if` makes layers in one branch only
    for s in stmts:
        if isinstance(s, ast.If):
            either = (_makes_layers(s.body, blocks, seen), _makes_layers(s.orelse, blocks, seen))
            if all(either):
                return True
            maybe = maybe or any(either)
            continue
        if not s.is_call:
            return True
        b = blocks.get(s.op.id)
        if b is not None and b.name.id not in seen and _makes_layers(b.body, blocks,
                                                                    seen | {b.name.id}):
            return True
    if maybe:  # and nothing else surely does: the elaborator's count depends on the branch
        raise Unsupported("a repeated `if` that may make no layers")
    return False


def _is_call(stmt: ast.Statement) -> bool:
    return isinstance(stmt, ast.Stmt) and stmt.is_call


def _param_names(block: ast.BlockDef, fn_names: dict[str, str]) -> dict[str, str]:
    taken = set(fn_names.values())
    out = {}
    for p in block.params:
        out[p.name.id] = identifier(p.name.id, taken)
        taken.add(out[p.name.id])
    return out


def _layer_class(spec: KerasLayer) -> str:
    """`layers.Conv2D`, or the bare name of a class of cnndsl's the module defines."""
    if not NAME_RE.match(spec.cls):
        raise ValueError(f"not a Keras class name: {spec.cls!r}")
    return spec.cls if spec.custom else f"layers.{spec.cls}"


def _kwargs(spec: KerasLayer) -> list[str]:
    out = []
    for key, value in spec.kwargs.items():
        if not NAME_RE.match(key) or keyword.iskeyword(key):
            raise ValueError(f"not a keyword argument: {key!r}")
        out.append(f"{key}={literal(value)}")
    return out


def _suffixed(name: _Name, suffix: str) -> str:
    return _Name((*name.parts, suffix)).render() if suffix else name.render()
