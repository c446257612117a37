"""What an op is: one definition that the checker, code generator, runtime and diagram read."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

Shape = tuple[int, ...]
Args = Mapping[str, Any]
REQUIRED = object()


class ShapeError(Exception):
    """A shape rule's refusal; `arg` names the argument to point at, if one is to blame."""

    def __init__(self, message: str, hint: str | None = None, arg: str | None = None) -> None:
        super().__init__(message)
        self.message, self.hint, self.arg = message, hint, arg


@dataclass(frozen=True)
class ArgSpec:
    """One argument of an op.

    kind: count (int > 0), int, size2 (kernel-like pair), pair (two ints >= 0), pad
    (explicit zero padding), rate (a float from 0 up to, not including, 1: its range), float,
    floats (a float or a tuple of them), bool, activation, padding, shape, choice (one of
    `choices`, a flag word).
    low/high: the range of a number argument beyond its kind, what the layer means
    (check refuses the rest; the docs show it); `low_open`/`high_open` leave the bound out.
    """

    name: str
    kind: str
    default: Any = REQUIRED
    positional: bool = False
    doc: str = ""
    choices: tuple[str, ...] = ()
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __post_init__(self) -> None:
        if self.kind == "rate" and self.low is None and self.high is None:
            for key, value in (("low", 0), ("high", 1), ("high_open", True)):
                object.__setattr__(self, key, value)

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def bounds(self) -> str | None:
        """The range in words, "from 0 to 1", "above 0"; None when the kind says it all."""
        low = None if self.low is None else ("above " if self.low_open else "") + f"{self.low:g}"
        high = None if self.high is None else f"{self.high:g}"
        if low is not None and high is not None:
            to = "up to (not including)" if self.high_open else "to"
            return f"from {low} {to} {high}" if not self.low_open else \
                f"{low} and {'below' if self.high_open else 'at most'} {high}"
        if low is not None:
            return low if self.low_open else f"at least {low}"
        if high is not None:
            return f"{'below' if self.high_open else 'at most'} {high}"
        return None

    def within(self, v: float) -> bool:
        return not ((self.low is not None and (v < self.low or (self.low_open and v == self.low)))
                    or (self.high is not None
                        and (v > self.high or (self.high_open and v == self.high))))


# Keras layer names join scopes with `-`: Keras forbids `/`, PyTorch's parameter names `.`,
# and `-` is in no .cnn name, so `inception_3a/conv_1` <-> `inception_3a-conv_1` both ways.
KERAS_SEP = "-"
# The extra ZeroPadding2D of `pad=`: `conv_1-pad` is never a node's name, because `conv_1`
# (a layer) cannot also be a scope (check keeps layer and block names unique together).
PAD_SUFFIX = KERAS_SEP + "pad"


def keras_name(name: str) -> str:
    """The Keras layer name of a layer `check` names `name` (docs/build.md, "Layer names")."""
    return name.replace("/", KERAS_SEP)


@dataclass(frozen=True)
class KerasLayer:
    """One Keras layer an op becomes: `keras.layers.<cls>(**kwargs)`, named name + suffix.

    `custom`: the class is cnndsl's own (cnndsl/backends/keras_layers.py), for what Keras lacks.
    """

    cls: str
    kwargs: Mapping[str, Any]
    suffix: str = ""
    custom: bool = False


@dataclass(frozen=True)
class Window:
    """A sliding window along one axis, for the receptive field: effective kernel and stride.

    Upsampling layers step by a fraction of an input pixel: `stride` is then a Fraction
    `1/s`, and `kernel` is how many output values one input value reaches (a `convt`'s
    kernel), so that an output value reads at most `(kernel - 1) // s + 1` inputs.
    """

    kernel: int
    stride: int | Fraction


@dataclass
class Context:
    """What a shape rule sees besides the arguments: its input shapes and a place for warnings."""

    inputs: list[Shape]
    warnings: list[tuple[str, str | None]] = field(default_factory=list)

    @property
    def shape(self) -> Shape:
        return self.inputs[0]

    def warn(self, message: str, hint: str | None = None) -> None:
        self.warnings.append((message, hint))


def _zero(args: Args, ctx: Context, out: Shape) -> int:
    return 0


def _no_params(args: Args, ctx: Context, out: Shape) -> tuple[int, int]:
    return (0, 0)


@dataclass(frozen=True)
class Op:
    """A layer kind. `arity`: "source" (input), "one", or "merge" (takes `{ | paths }`)."""

    name: str
    keras: str
    summary: str
    args: tuple[ArgSpec, ...]
    shape: Callable[[Args, Context], Shape]
    to_keras: Callable[[Args], list[KerasLayer]]
    flags: Mapping[str, tuple[str, Any]] = field(default_factory=dict)
    params: Callable[[Args, Context, Shape], tuple[int, int]] = _no_params
    macs: Callable[[Args, Context, Shape], int] = _zero
    windows: Callable[[Args, Context], tuple[Window, Window] | None] | None = None
    arity: str = "one"
    label: Callable[[Args], str] | None = None

    def arg(self, name: str) -> ArgSpec | None:
        return next((a for a in self.args if a.name == name), None)

    @property
    def positional(self) -> tuple[ArgSpec, ...]:
        return tuple(a for a in self.args if a.positional)

    def usage(self) -> str:
        """`conv FILTERS KERNEL [stride=1] ...`: the one-line usage shown in hints."""
        parts = [self.name]
        for a in self.args:
            if a.positional:
                parts.append(a.name.upper() if a.required else f"[{a.name.upper()}]")
        parts += [f"{a.name}=..." for a in self.args if not a.positional and a.required]
        return " ".join(parts)


# ----------------------------------------------------------------------------- spatial rules


def padded_extent(size: int, pad: tuple[int, int] | None) -> int:
    return size if pad is None else size + pad[0] + pad[1]


def effective_kernel(kernel: int, dilation: int) -> int:
    return kernel + (kernel - 1) * (dilation - 1)


def window_output(size: int, kernel: int, stride: int, padding: str, axis: str,
                  pad: tuple[int, int] | None = None) -> tuple[int, int]:
    """Output length of a sliding window, exactly as TensorFlow computes it, and how many
    trailing input rows no window covers.

    `same`: ceil(size / stride). `valid` (after any explicit padding):
    floor((size - kernel) / stride) + 1, an error when the window does not fit.
    """
    if padding == "same" and pad is None:
        return -(-size // stride), 0  # integer ceil: exact for any size
    extent = padded_extent(size, pad)
    if extent < kernel:
        where = f"{size}" if pad is None else f"{size} + padding = {extent}"
        raise ShapeError(
            f"the {kernel}-wide window does not fit in the input's {axis} ({where})",
            "use a smaller kernel, `same` padding, or drop a downsampling layer before this one",
        )
    # A window narrower than its stride skips rows by design (a 1x1/2 projection); only
    # windows meant to tile the input can leave a remainder worth a warning.
    left = (extent - kernel) % stride if kernel >= stride else 0
    return (extent - kernel) // stride + 1, left


def warn_uncovered(ctx: Context, left: tuple[int, int], extent: tuple[int, int],
                   stride: tuple[int, int]) -> None:
    """One warning per layer for the input rows and columns that no window reaches."""
    rows, cols = left
    if not rows and not cols:
        return
    count = lambda n, word: word if n == 1 else f"{n} {word}s"  # noqa: E731
    if rows == cols:
        what = f"the last {count(rows, 'row')} and {count(cols, 'column')}"
    else:
        what = " and ".join(f"the last {count(n, w)}" for n, w in
                            ((rows, "row"), (cols, "column")) if n)
    steps = stride[0] if stride[0] == stride[1] else f"{stride[0]}x{stride[1]}"
    ctx.warn(f"stride {steps} leaves {what} of the "
             f"{extent[0]}x{extent[1]} input uncovered",
             "use `same` padding, or sizes where (input - kernel) divides by the stride")


def spatial(ctx: Context, what: str) -> tuple[int, int, int]:
    """The (height, width, channels) of a rank-3 input, or a ShapeError saying what is wrong."""
    shape = ctx.shape
    if len(shape) != 3:
        raise ShapeError(
            f"`{what}` needs a height x width x channels input, but gets {fmt_shape(shape)}",
            "spatial layers go before `flatten` or global pooling",
        )
    return shape  # type: ignore[return-value]


def fmt_shape(shape: Shape | None) -> str:
    if shape is None:
        return "?"
    return "x".join(str(d) for d in shape) if shape else "scalar"


def pair(value: Any) -> tuple[int, int]:
    return tuple(value) if isinstance(value, tuple) else (value, value)  # type: ignore[return-value]
