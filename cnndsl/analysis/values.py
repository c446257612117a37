"""Values of the language: expression evaluation and argument kinds.

Elaboration evaluates most expressions at once. An expression that reads a tensor's shape
(`in.c // 2`) cannot be known until inference, so it stays a `Deferred` value, which
inference evaluates with the same rules once the shapes are known.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cnndsl.analysis.ops.activations import ACTIVATIONS
from cnndsl.analysis.ops.base import ArgSpec, Shape
from cnndsl.common.diagnostics import MAX_NUMBER, CnnError, Span, did_you_mean
from cnndsl.lang import ast


@dataclass(frozen=True)
class Word:
    """A bare name that is not a variable: a flag (`same`, `relu`) or a value like `true`."""

    name: str


# ----------------------------------------------------------------------------- expressions


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def describe(v: Any) -> str:
    if v in (Word("true"), Word("false")):
        return f"the truth value `{v.name}`"
    if isinstance(v, Word):
        return f"the name `{v.name}`"
    if isinstance(v, str):
        return f'the string "{v}"'
    if isinstance(v, tuple):
        return f"the tuple {show(v)}"
    return f"`{v}`"


def show(v: Any) -> str:
    """A value as the .cnn source writes it: `2`, `(3, 3)`, `same`."""
    if isinstance(v, tuple):
        return "(" + ", ".join(show(x) for x in v) + ("," if len(v) == 1 else "") + ")"
    return v.name if isinstance(v, Word) else repr(v)


@dataclass(frozen=True)
class TensorRef:
    """A tensor: `in` (the input of the enclosing block, of the network at the top level),
    a named tensor `@x` or a tensor parameter.

    `node` is its producing node's id, or None when an earlier error lost it; `scope` is the
    block instance or repeat it is the output of, when it was named as one (for `reuse`).
    """

    node: int | None
    scope: tuple[str, ...] | None = None


@dataclass(frozen=True, eq=False)
class Deferred:
    """An expression that reads a tensor's shape (`in.c // 2`), evaluated during inference."""

    expr: ast.Expr
    env: dict[str, Any]


class Symbolic:
    """A value known only when generated code runs (a block parameter inside the function
    `build` writes for the block): arithmetic on it builds an expression, and `convert`
    passes it through unchecked, as it does a Deferred."""

    def apply(self, func: str, args: tuple[Any, ...]) -> Any:
        """`func(*args)` for a built-in function or a comparison (`==`, `and`, ...) whose
        arguments include this value; the code generator's values implement it."""
        raise NotImplementedError


def is_symbolic(v: Any) -> bool:
    """A Symbolic value, or a tuple holding one."""
    if isinstance(v, tuple):
        return any(is_symbolic(x) for x in v)
    return isinstance(v, Symbolic)


ShapeOf = Callable[[int | None], Shape | None]
_AXES = {"h": 0, "w": 1, "c": -1}


class UnknownShape(Exception):
    """A shape an expression reads is unknown after an earlier error: stay silent."""


def evaluate(expr: ast.Expr, env: dict[str, Any], shape_of: ShapeOf | None = None) -> Any:
    """The value of an expression: int, float, str, tuple, or a Word for an unbound name.

    Without `shape_of` (during elaboration), an expression that reads a tensor's shape
    evaluates to a Deferred; with it (during inference), to its value.
    """
    if shape_of is None and _reads_shape(expr, env):
        return Deferred(expr, env)
    return _eval(expr, env, shape_of)


def _eval(expr: ast.Expr, env: dict[str, Any], shape_of: ShapeOf | None) -> Any:
    match expr:
        case ast.Num(value=v):
            return _in_range(v, expr.span)
        case ast.Str(value=v):
            return v
        case ast.Size(dims=dims):
            for d in dims:
                _in_range(d, expr.span)
            return dims
        case ast.Name(id=name):
            value = env[name] if name in env else Word(name)
            if isinstance(value, Deferred):
                return evaluate(value.expr, value.env, shape_of)
            if isinstance(value, TensorRef):
                raise CnnError(f"`{name}` is a tensor; use its `{name}.h`, `{name}.w` or "
                               f"`{name}.c`", expr.span)
            return value
        case ast.Ref(id=name):
            raise CnnError(f"`@{name}` is a tensor, not a value", expr.span,
                           "a tensor goes on its own line, as a merge operand (`add @a @b`) "
                           "or as a block's tensor argument")
        case ast.Tuple(items=items):
            return tuple(_eval(i, env, shape_of) for i in items)
        case ast.Neg(operand=operand):
            value = _number(_eval(operand, env, shape_of), operand.span, "-")
            return Quotient(-value) if isinstance(value, Quotient) else -value
        case ast.BinOp(op=op, left=left, right=right):
            a = _number(_eval(left, env, shape_of), left.span, op)
            b = _number(_eval(right, env, shape_of), right.span, op)
            return _arith(op, a, b, expr.span)
        case ast.Attr():
            return _attr(expr, env, shape_of)
        case ast.Call():
            return _call(expr, [_eval(a, env, shape_of) for a in expr.args])
        case ast.Compare(op=op, left=left, right=right):
            return _compare(expr, _eval(left, env, shape_of), _eval(right, env, shape_of))
        case ast.Logic():
            return _logic(expr, env, shape_of)
    raise CnnError("this expression is not supported", expr.span)


# ----------------------------------------------------------------------------- functions

TRUE, FALSE = Word("true"), Word("false")


def _whole(x: float, rounding: Callable[[float], int]) -> int:
    return x if isinstance(x, int) else rounding(x)


# name: (fewest arguments, most arguments or None, the function on numbers)
FUNCTIONS: dict[str, tuple[int, int | None, Callable[..., Any]]] = {
    "min": (2, None, min),
    "max": (2, None, max),
    "round": (1, 1, round),  # Python's: halves go to the even neighbour
    "ceil": (1, 1, lambda x: _whole(x, math.ceil)),
    "floor": (1, 1, lambda x: _whole(x, math.floor)),
}


def _call(expr: ast.Call, args: list[Any]) -> Any:
    name = expr.func.id
    if name not in FUNCTIONS:
        raise CnnError(f"unknown function `{name}`", expr.func.span,
                       did_you_mean(name, FUNCTIONS)
                       or "the functions are " + ", ".join(f"`{f}`" for f in FUNCTIONS))
    fewest, most, function = FUNCTIONS[name]
    if len(args) < fewest or (most is not None and len(args) > most):
        count = f"{fewest}" if fewest == most else f"at least {fewest}"
        raise CnnError(f"`{name}` takes {count} argument{'s' if fewest != 1 else ''}, "
                       f"not {len(args)}", expr.span)
    for a, e in zip(args, expr.args, strict=True):
        _number(a, e.span, name)
    symbolic = next((a for a in args if isinstance(a, Symbolic)), None)
    if symbolic is not None:
        return symbolic.apply(name, tuple(args))
    return _in_range(function(*args), expr.span)


def _kind(v: Any) -> str:
    if _is_number(v) or isinstance(v, Symbolic):
        return "number"
    if isinstance(v, Word):
        return "word"
    return "string" if isinstance(v, str) else "tuple"


def _compare(expr: ast.Compare, a: Any, b: Any) -> Word | Any:
    """`==` and `!=` compare values of one kind; the orderings compare numbers."""
    op = expr.op
    symbolic = isinstance(a, Symbolic) or isinstance(b, Symbolic)
    if op in ("==", "!="):
        if _kind(a) != _kind(b) and not symbolic:
            raise CnnError(f"`{op}` compares {describe(a)} with {describe(b)}", expr.span,
                           "both sides must be numbers, or both words like `same`; "
                           "is a name misspelt?")
    else:
        _number(a, expr.left.span, op)
        _number(b, expr.right.span, op)
    if symbolic:
        return (a if isinstance(a, Symbolic) else b).apply(op, (a, b))
    result = {"==": a == b, "!=": a != b}.get(op)
    if result is None:
        result = {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]
    return TRUE if result else FALSE


def truth(v: Any, expr: ast.Expr) -> bool | Symbolic:
    """A condition's value: `true` or `false` (a comparison gives one)."""
    span = expr.span
    if isinstance(v, Symbolic):
        return v
    if v in (TRUE, FALSE):
        return v == TRUE
    if isinstance(v, Word):
        shown = expr.id if isinstance(expr, ast.Name) and expr.id != v.name else "act"
        raise CnnError(f"a condition must be `true` or `false`, not the name `{v.name}`", span,
                       f"compare it: `{shown} == {v.name}`, or pass `true` or `false`")
    hint = "compare it: `x != 0`" if _is_number(v) else "compare it with `==`"
    raise CnnError(f"a condition must be `true` or `false`, not {describe(v)}", span, hint)


def _logic(expr: ast.Logic, env: dict[str, Any], shape_of: ShapeOf | None) -> Any:
    """`and`/`or` read their right side only when the left does not decide."""
    left = truth(_eval(expr.left, env, shape_of), expr.left)
    if expr.op == "not":
        return left.apply("not", (left,)) if isinstance(left, Symbolic) else \
            (FALSE if left else TRUE)
    if not isinstance(left, Symbolic) and left == (expr.op == "or"):
        return TRUE if left else FALSE
    assert expr.right is not None
    right = truth(_eval(expr.right, env, shape_of), expr.right)
    if isinstance(left, Symbolic):
        return left.apply(expr.op, (left, right))
    if isinstance(right, Symbolic):  # the left side did not decide: the right one does
        return right
    return TRUE if right else FALSE


def _attr(expr: ast.Attr, env: dict[str, Any], shape_of: ShapeOf | None) -> int:
    """`in.h`, `in.w`, `in.c`: a size of the block's input tensor."""
    ref = env.get(expr.obj.id)
    if not isinstance(ref, TensorRef):
        raise CnnError(f"`{expr.obj.id}` has no properties", expr.span,
                       "`in.h`, `in.w` and `in.c` read the size of a block's input")
    axis = _AXES.get(expr.attr.id)
    if axis is None:
        _no_such_axis(expr.attr)
    shape = shape_of(ref.node) if shape_of else None
    if shape is None:
        raise UnknownShape
    if axis != -1 and len(shape) != 3:
        raise CnnError(f"`{expr.obj.id}` has no height and width: it is "
                       f"{'x'.join(map(str, shape))}", expr.span)
    return shape[axis]


def _no_such_axis(attr: ast.Name) -> None:
    raise CnnError(f"a tensor has no `{attr.id}`", attr.span,
                   did_you_mean(attr.id, ("h", "w", "c"))
                   or "use `h` (height), `w` (width) or `c` (channels)")


def _reads_shape(expr: ast.Expr, env: dict[str, Any]) -> bool:
    match expr:
        case ast.Attr(obj=obj, attr=attr):
            if isinstance(env.get(obj.id), TensorRef) and attr.id not in _AXES:
                _no_such_axis(attr)  # a misspelling is known now, whatever the shapes
            return isinstance(env.get(obj.id), TensorRef)
        case ast.Name(id=name):
            return isinstance(env.get(name), Deferred)
        case ast.Tuple(items=items):
            return any(_reads_shape(i, env) for i in items)
        case ast.Neg(operand=operand):
            return _reads_shape(operand, env)
        case ast.BinOp(left=left, right=right) | ast.Compare(left=left, right=right):
            return _reads_shape(left, env) or _reads_shape(right, env)
        case ast.Logic(left=left, right=right):
            return _reads_shape(left, env) or (right is not None and _reads_shape(right, env))
        case ast.Call(args=args):
            return any(_reads_shape(a, env) for a in args)
    return False


def _number(v: Any, span: Span, op: str) -> Any:
    if not _is_number(v) and not isinstance(v, Symbolic):
        what = f"the undefined name `{v.name}`" if isinstance(v, Word) else describe(v)
        raise CnnError(f"`{op}` needs numbers, not {what}", span)
    return v


class Quotient(float):
    """A float that `/` made, directly or through later arithmetic: where a whole number
    is needed, the error can say that `//` is the integer division."""


def _arith(op: str, a: Any, b: Any, span: Span) -> Any:
    if isinstance(a, Symbolic) or isinstance(b, Symbolic):
        return {"+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b,
                "//": lambda: a // b, "/": lambda: a / b}[op]()
    if op in ("//", "/") and b == 0:
        raise CnnError("division by zero", span)
    result = {"+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b,
              "//": lambda: a // b, "/": lambda: a / b}[op]()
    if isinstance(result, float) and (op == "/" or Quotient in (type(a), type(b))):
        result = Quotient(result)
    return _in_range(result, span)


def _in_range(v: int | float, span: Span) -> int | float:
    """Numbers stay within int64, as TensorFlow's sizes do (and floats stay finite)."""
    too_large = not math.isfinite(v) if isinstance(v, float) else abs(v) > MAX_NUMBER
    if too_large:
        raise CnnError("this number is too large", span,
                       f"numbers go up to {MAX_NUMBER:,} (2**63 - 1)")
    return v


# ----------------------------------------------------------------------------- argument kinds


def whole(v: Any, what: str, span: Span, minimum: int) -> int:
    """An integer of at least `minimum`, or an error saying what it should be."""
    if not isinstance(v, int) or isinstance(v, bool):
        hint = ("`/` is true division and gives a float (`72 / 16` is 4.5); `//` is the "
                "integer one (`72 // 16` is 4), and `round`, `ceil`, `floor` make whole "
                "numbers") if isinstance(v, Quotient) else None
        raise CnnError(f"{what} must be a whole number, not {describe(v)}", span, hint)
    if v < minimum:
        bound = "positive" if minimum == 1 else f"at least {minimum}"
        raise CnnError(f"{what} must be {bound}, not {v}", span)
    return v


def _pair(v: Any, what: str, span: Span, minimum: int) -> tuple[int, int]:
    if isinstance(v, tuple):
        if len(v) != 2:
            raise CnnError(f"{what} takes two sizes (height, width), not {len(v)}", span,
                           "write `3x3`, `1x7` or `(3, 3)`")
        return (whole(v[0], what, span, minimum), whole(v[1], what, span, minimum))
    n = whole(v, what, span, minimum)
    return (n, n)


def _pad(v: Any, what: str, span: Span) -> tuple[tuple[int, int], tuple[int, int]]:
    if isinstance(v, tuple) and len(v) == 2 and all(isinstance(x, tuple) for x in v):
        return (_pair(v[0], what, span, 0), _pair(v[1], what, span, 0))
    h, w = _pair(v, what, span, 0)
    return ((h, h), (w, w))


def _shape(v: Any, what: str, span: Span) -> tuple[int, ...]:
    dims = v if isinstance(v, tuple) else (v,)
    if not dims:
        raise CnnError(f"{what} needs at least one size", span)
    out = tuple(whole(d, what, span, -(10**18)) for d in dims)
    bad = [d for d in out if d == 0 or d < -1]
    if bad:
        raise CnnError(f"sizes must be positive, but `{'x'.join(map(str, out))}` has {bad[0]}",
                       span)
    return out


def _choice(v: Any, what: str, span: Span, choices: tuple[str, ...]) -> str:
    if isinstance(v, Word) and v.name in choices:
        return v.name
    name = v.name if isinstance(v, Word) else str(v)
    shown = f"`{v.name}`" if isinstance(v, Word) else describe(v)
    if len(choices) <= 3:
        listed = ", ".join(f"`{c}`" for c in choices[:-1]) + f" or `{choices[-1]}`"
        raise CnnError(f"{what} must be {listed}, not {shown}", span, did_you_mean(name, choices))
    hint = did_you_mean(name, choices) or "one of: " + ", ".join(f"`{c}`" for c in choices[:8])
    raise CnnError(f"{what} cannot be {shown}", span, hint)


def convert(spec: ArgSpec, v: Any, span: Span) -> Any:
    """Check a value against its argument's kind and range, and normalise it (`3` -> `(3, 3)`)."""
    if isinstance(v, Deferred) or is_symbolic(v):  # converted once the values are known
        return v
    if v is None and spec.default is None:
        return None
    value = _convert(spec, v, span)
    if _is_number(value) and not spec.within(value):
        raise CnnError(f"`{spec.name}` must be a number {spec.bounds()}, not {describe(v)}",
                       span, None if spec.required else f"the default is {show(spec.default)}")
    return value


def _convert(spec: ArgSpec, v: Any, span: Span) -> Any:
    what = f"`{spec.name}`"
    match spec.kind:
        case "count":
            return whole(v, what, span, 1)
        case "int":
            return whole(v, what, span, -(10**18))
        case "size2":
            return _pair(v, what, span, 1)
        case "pair":
            return _pair(v, what, span, 0)
        case "pad":
            return _pad(v, what, span)
        case "shape":
            return _shape(v, what, span)
        case "float" | "rate":  # a rate's range is declared (ArgSpec)
            if not _is_number(v):
                raise CnnError(f"{what} must be a number, not {describe(v)}", span)
            return float(v)
        case "floats":
            if isinstance(v, tuple) and v and all(_is_number(x) for x in v):
                return tuple(float(x) for x in v)
            if not _is_number(v):
                raise CnnError(f"{what} must be a number or a tuple of numbers (one per "
                               f"channel), not {describe(v)}", span)
            return float(v)
        case "choice":
            return _choice(v, what, span, spec.choices)
        case "bool":
            return _choice(v, what, span, ("true", "false")) == "true"
        case "activation":
            return _choice(v, what, span, ACTIVATIONS)
        case "padding":
            return _choice(v, what, span, ("same", "valid"))
    raise AssertionError(f"unknown argument kind {spec.kind}")
