"""The core layers: input, dense, flatten, dropout, spatial_dropout, batchnorm, activations
(with their Keras settings), zeropad, identity, rescale, reshape."""

from __future__ import annotations

import math

from cnndsl.analysis.ops.activations import (
    ACTIVATION_FLAGS,
    ACTIVATION_LAYERS,
    ACTIVATION_SETTINGS,
    ACTIVATIONS,
    activation_kwargs,
)
from cnndsl.analysis.ops.base import (
    Args,
    ArgSpec,
    Context,
    KerasLayer,
    Op,
    Shape,
    ShapeError,
    Window,
    fmt_shape,
    spatial,
)


def same_shape(args: Args, ctx: Context) -> Shape:
    return ctx.shape


def keras_padding(pad: tuple[tuple[int, int], tuple[int, int]]):
    """The shortest way to write a padding for Keras: 1, (1, 2) or ((0, 1), (0, 1))."""
    (t, b), (left, right) = pad
    if t == b and left == right:
        return t if t == left else (t, left)
    return pad


# ----------------------------------------------------------------------------- input


def _input_shape(args: Args, ctx: Context) -> Shape:
    if any(d < 1 for d in args["shape"]):
        raise ShapeError("input sizes must be positive", arg="shape")
    return args["shape"]


INPUT = Op(
    name="input",
    keras="InputLayer",
    summary="the network's input, height x width x channels (channels last, as Keras)",
    args=(ArgSpec("shape", "shape", positional=True, doc="`28x28x1`, or a tuple"),),
    shape=_input_shape,
    to_keras=lambda a: [KerasLayer("Input", {"shape": a["shape"]})],
    arity="source",
)

# ----------------------------------------------------------------------------- dense


def _dense_shape(args: Args, ctx: Context) -> Shape:
    if len(ctx.shape) > 1:
        ctx.warn(f"`dense` on {fmt_shape(ctx.shape)} acts on the last axis only, as in Keras",
                 "did you forget `flatten` (or global pooling) before it?")
    return (*ctx.shape[:-1], args["units"])


def _dense_params(args: Args, ctx: Context, out: Shape) -> tuple[int, int]:
    units = args["units"]
    return (ctx.shape[-1] * units + (units if args["use_bias"] else 0), 0)


def _dense_macs(args: Args, ctx: Context, out: Shape) -> int:
    return math.prod(ctx.shape) * args["units"]


def _dense_keras(args: Args) -> list[KerasLayer]:
    kwargs = {"units": args["units"], **activation_kwargs(args["activation"])}
    if not args["use_bias"]:
        kwargs["use_bias"] = False
    return [KerasLayer("Dense", kwargs)]


DENSE = Op(
    name="dense",
    keras="Dense",
    summary="fully connected layer",
    args=(
        ArgSpec("units", "count", positional=True, doc="number of outputs"),
        ArgSpec("activation", "activation", None, doc="an activation name (a flag word)"),
        ArgSpec("use_bias", "bool", True, doc="add a bias per output"),
    ),
    flags=ACTIVATION_FLAGS,
    shape=_dense_shape,
    params=_dense_params,
    macs=_dense_macs,
    to_keras=_dense_keras,
)

# ----------------------------------------------------------------------------- reshaping


def _flatten_windows(args: Args, ctx: Context) -> tuple[Window, Window] | None:
    if len(ctx.shape) != 3:
        return None
    h, w, _ = ctx.shape
    return (Window(h, 1), Window(w, 1))


FLATTEN = Op(
    name="flatten",
    keras="Flatten",
    summary="flatten to one axis",
    args=(),
    shape=lambda a, ctx: (math.prod(ctx.shape),),
    windows=_flatten_windows,
    to_keras=lambda a: [KerasLayer("Flatten", {})],
)


def _reshape_shape(args: Args, ctx: Context) -> Shape:
    target, size = args["shape"], math.prod(ctx.shape)
    if target.count(-1) > 1:
        raise ShapeError("`reshape` takes at most one -1", "give every size but one", arg="shape")
    known = math.prod(d for d in target if d != -1)
    if -1 in target:
        if size % known:
            raise ShapeError(f"{fmt_shape(ctx.shape)} ({size} values) does not reshape to "
                             f"a multiple of {known}", arg="shape")
        return tuple(size // known if d == -1 else d for d in target)
    if known != size:
        raise ShapeError(f"cannot reshape {fmt_shape(ctx.shape)} ({size} values) to "
                         f"{fmt_shape(target)} ({known} values)",
                         "the sizes must multiply to the same number", arg="shape")
    return target


RESHAPE = Op(
    name="reshape",
    keras="Reshape",
    summary="reshape, keeping the number of values",
    args=(ArgSpec("shape", "shape", positional=True, doc="`7x7x16`, `(1, 1, c)`, `(-1, 16)`"),),
    shape=_reshape_shape,
    to_keras=lambda a: [KerasLayer("Reshape", {"target_shape": a["shape"]})],
)


def _zeropad_shape(args: Args, ctx: Context) -> Shape:
    h, w, c = spatial(ctx, "zeropad")
    (t, b), (left, right) = args["pad"]
    return (h + t + b, w + left + right, c)


ZEROPAD = Op(
    name="zeropad",
    keras="ZeroPadding2D",
    summary="pad height and width with zeros",
    args=(ArgSpec("pad", "pad", positional=True, doc="`1`, `(1, 2)`, `((0, 1), (0, 1))`"),),
    shape=_zeropad_shape,
    to_keras=lambda a: [KerasLayer("ZeroPadding2D", {"padding": keras_padding(a["pad"])})],
)

# ----------------------------------------------------------------------------- pass-through


def _dropout_shape(args: Args, ctx: Context) -> Shape:
    noise = args["noise_shape"]
    if noise is not None and (len(noise) != len(ctx.shape) or any(
            n not in (1, d) for n, d in zip(noise, ctx.shape, strict=True))):
        raise ShapeError(f"`noise_shape` {fmt_shape(noise)} does not fit the input "
                         f"{fmt_shape(ctx.shape)}", "give each axis, batch left out, 1 "
                         "(one draw shared along it) or its size", arg="noise_shape")
    return ctx.shape


def _dropout_keras(args: Args) -> list[KerasLayer]:
    kwargs: dict = {"rate": args["rate"]}
    if args["noise_shape"] is not None:  # Keras counts the batch: one mask per sample
        kwargs["noise_shape"] = (None, *args["noise_shape"])
    return [KerasLayer("Dropout", kwargs)]


DROPOUT = Op(
    name="dropout",
    keras="Dropout",
    summary="randomly zero a fraction of the values while training",
    args=(
        ArgSpec("rate", "rate", positional=True, doc="fraction dropped"),
        ArgSpec("noise_shape", "shape", None, doc="the mask's shape, batch left out: "
                "`(1, 1, 1)` drops whole samples (drop-connect)"),
    ),
    shape=_dropout_shape,
    to_keras=_dropout_keras,
)


def _spatial_dropout_shape(args: Args, ctx: Context) -> Shape:
    spatial(ctx, "spatial_dropout")
    return ctx.shape


SPATIAL_DROPOUT = Op(
    name="spatial_dropout",
    keras="SpatialDropout2D",
    summary="randomly zero whole channels while training",
    args=(ArgSpec("rate", "rate", positional=True, doc="fraction dropped"),),
    shape=_spatial_dropout_shape,
    to_keras=lambda a: [KerasLayer("SpatialDropout2D", {"rate": a["rate"]})],
)


def _bn_params(args: Args, ctx: Context, out: Shape) -> tuple[int, int]:
    c = ctx.shape[-1]
    return (c * (int(args["center"]) + int(args["scale"])), 2 * c)


_BN_DEFAULTS = {"momentum": 0.99, "epsilon": 0.001, "center": True, "scale": True}

BATCHNORM = Op(
    name="batchnorm",
    keras="BatchNormalization",
    summary="batch normalisation over the last axis",
    args=(
        # Keras accepts any number; outside these a moving average grows without bound
        # and a zero variance divides by zero.
        ArgSpec("momentum", "float", 0.99, doc="of the moving averages", low=0, high=1),
        ArgSpec("epsilon", "float", 0.001, doc="added to the variance", low=0, low_open=True),
        ArgSpec("center", "bool", True, doc="learn an offset (beta)"),
        ArgSpec("scale", "bool", True, doc="learn a scale (gamma)"),
    ),
    shape=same_shape,
    params=_bn_params,
    to_keras=lambda a: [KerasLayer(
        "BatchNormalization", {k: a[k] for k, v in _BN_DEFAULTS.items() if a[k] != v})],
)

IDENTITY = Op(
    name="identity",
    keras="Identity",
    summary="pass the input through unchanged (the shortcut path of a residual `add`)",
    args=(),
    shape=same_shape,
    to_keras=lambda a: [KerasLayer("Identity", {})],
)


def per_channel(args: Args, ctx: Context, *names: str) -> None:
    """Tuples of per-channel values must have one value per channel (Keras broadcasts them
    against the last axis, and fails only when the model runs)."""
    for name in names:
        v = args[name]
        if isinstance(v, tuple) and len(v) not in (1, ctx.shape[-1]):
            raise ShapeError(f"`{name}` has {len(v)} values for {ctx.shape[-1]} channels",
                             "give one value, or one per channel", arg=name)


def _rescale_shape(args: Args, ctx: Context) -> Shape:
    per_channel(args, ctx, "scale", "offset")
    return ctx.shape


RESCALE = Op(
    name="rescale",
    keras="Rescaling",
    summary="multiply by `scale` and add `offset`: `rescale 1/255`",
    args=(
        ArgSpec("scale", "floats", positional=True, doc="the factor, or one per channel"),
        ArgSpec("offset", "floats", 0.0, doc="added after scaling, or one per channel"),
    ),
    shape=_rescale_shape,
    to_keras=lambda a: [KerasLayer("Rescaling", {
        "scale": a["scale"], **({"offset": a["offset"]} if a["offset"] != 0 else {})})],
)

ACTIVATION = Op(
    name="activation",
    keras="Activation",
    summary="an activation function as a layer of its own",
    args=(ArgSpec("function", "activation", positional=True, doc="`relu`, `softmax`, ..."),),
    shape=same_shape,
    to_keras=lambda a: [KerasLayer("Activation", {"activation": a["function"]})],
)


def _setting(value: float | bool) -> str:
    return str(value).lower() if isinstance(value, bool) else f"{value:g}"


def _named_activation(name: str) -> Op:
    """`relu`, `gelu`...: `Activation(name)`, or with settings the Keras layer taking them."""
    settings = ACTIVATION_SETTINGS.get(name, ())

    def shape(args: Args, ctx: Context) -> Shape:
        for spec in settings:
            value = args[spec.name]
            if name in ("relu", "leaky_relu") and value is not None and value < 0:
                raise ShapeError(f"`{spec.name}` cannot be negative (Keras refuses it)",
                                 f"Keras's {ACTIVATION_LAYERS[name][0]} takes 0 or more",
                                 arg=spec.name)
        return ctx.shape

    def to_keras(args: Args) -> list[KerasLayer]:
        changed = {s.name: args[s.name] for s in settings if args[s.name] != s.default}
        if not changed:
            return [KerasLayer("Activation", {"activation": name})]
        cls, keys, custom = ACTIVATION_LAYERS[name]
        return [KerasLayer(cls, {keys.get(k, k): v for k, v in changed.items()},
                           custom=custom)]

    def label(args: Args) -> str:
        """`leaky_relu alpha=0.1`: the settings that differ from Keras's defaults."""
        return " ".join([name, *(f"{s.name}={_setting(args[s.name])}" for s in settings
                                 if args[s.name] != s.default)])

    return Op(name=name, keras="Activation", summary=f"the `{name}` activation",
              args=settings, shape=shape, to_keras=to_keras, label=label)


OPS = (INPUT, DENSE, FLATTEN, RESHAPE, ZEROPAD, DROPOUT, SPATIAL_DROPOUT, BATCHNORM, IDENTITY,
       RESCALE, ACTIVATION, *(_named_activation(n) for n in ACTIVATIONS))
