"""Normalisation and scaling over the channels: layernorm (LayerNormalization), groupnorm
(GroupNormalization), layerscale (ConvNeXt's LayerScale), normalization (Normalization,
the preprocessing layer)."""

from __future__ import annotations

from cnndsl.analysis.ops.base import Args, ArgSpec, Context, KerasLayer, Op, Shape, ShapeError
from cnndsl.analysis.ops.core import per_channel, same_shape


def _affine_params(args: Args, ctx: Context, out: Shape) -> tuple[int, int]:
    """A learned scale (gamma) and offset (beta) per channel, each optional."""
    return (ctx.shape[-1] * (int(args["center"]) + int(args["scale"])), 0)


_AFFINE_ARGS = (
    ArgSpec("epsilon", "float", 0.001, doc="added to the variance"),
    ArgSpec("center", "bool", True, doc="learn an offset (beta)"),
    ArgSpec("scale", "bool", True, doc="learn a scale (gamma)"),
)


def _changed(args: Args, specs: tuple[ArgSpec, ...], keys: dict[str, str] | None = None
             ) -> dict:
    """The arguments that differ from their defaults, as Keras names them."""
    keys = keys or {}
    return {keys.get(s.name, s.name): args[s.name] for s in specs
            if args[s.name] != s.default}


LAYERNORM = Op(
    name="layernorm",
    keras="LayerNormalization",
    summary="layer normalisation over the channels of each position",
    args=_AFFINE_ARGS,
    shape=same_shape,
    params=_affine_params,
    to_keras=lambda a: [KerasLayer("LayerNormalization", _changed(a, _AFFINE_ARGS))],
)

# ----------------------------------------------------------------------------- groupnorm


def _groupnorm_shape(args: Args, ctx: Context) -> Shape:
    c, groups = ctx.shape[-1], args["groups"]
    if groups > c:
        raise ShapeError(f"{groups} groups are more than the {c} channels",
                         "use at most one group per channel", arg="groups")
    if c % groups:
        raise ShapeError(f"{c} channels do not split into {groups} groups",
                         "make the channels a multiple of `groups`", arg="groups")
    return ctx.shape


_GROUPNORM_ARGS = (
    ArgSpec("groups", "count", 32, doc="channel groups normalised together (Keras's 32)"),
    *_AFFINE_ARGS,
)

GROUPNORM = Op(
    name="groupnorm",
    keras="GroupNormalization",
    summary="group normalisation: the channels in groups, each normalised on its own",
    args=_GROUPNORM_ARGS,
    shape=_groupnorm_shape,
    params=_affine_params,
    to_keras=lambda a: [KerasLayer("GroupNormalization", {"groups": a["groups"],
                                                          **_changed(a, _AFFINE_ARGS)})],
)

# ----------------------------------------------------------------------------- layerscale

LAYERSCALE = Op(
    name="layerscale",
    keras="LayerScale",
    summary="ConvNeXt's layer scale: each channel times a learned factor",
    args=(ArgSpec("init", "float", 1e-6, positional=True, doc="the factors' first value"),),
    shape=same_shape,
    params=lambda a, ctx, out: (ctx.shape[-1], 0),
    to_keras=lambda a: [KerasLayer("LayerScale", {"init_values": a["init"]}, custom=True)],
)

# ----------------------------------------------------------------------------- normalization


def _normalization_shape(args: Args, ctx: Context) -> Shape:
    if (args["mean"] is None) != (args["variance"] is None):
        missing = "variance" if args["variance"] is None else "mean"
        raise ShapeError("`normalization` takes both `mean` and `variance`, or neither",
                         f"give `{missing}=` too, or neither: they are then weights, "
                         "adapted or loaded", arg=missing)
    mean, variance = args["mean"], args["variance"]
    if isinstance(mean, tuple) != isinstance(variance, tuple) or (
            isinstance(mean, tuple) and len(mean) != len(variance)):
        raise ShapeError("`mean` and `variance` must have the same shape, as Keras requires",
                         "give both one value, or both one per channel", arg="variance")
    per_channel(args, ctx, "mean", "variance")
    return ctx.shape


def _normalization_params(args: Args, ctx: Context, out: Shape) -> tuple[int, int]:
    """Unless given, the mean and variance per channel and the count of samples they were
    adapted on are non-trainable weights (EfficientNet's 7 parameters on RGB)."""
    return (0, 0) if args["mean"] is not None else (0, 2 * ctx.shape[-1] + 1)


_NORMALIZATION_ARGS = (
    ArgSpec("mean", "floats", None, doc="the mean, or one per channel"),
    ArgSpec("variance", "floats", None, doc="the variance, or one per channel"),
)

NORMALIZATION = Op(
    name="normalization",
    keras="Normalization",
    summary="subtract a mean and divide by the standard deviation, per channel",
    args=_NORMALIZATION_ARGS,
    shape=_normalization_shape,
    params=_normalization_params,
    to_keras=lambda a: [KerasLayer("Normalization", _changed(a, _NORMALIZATION_ARGS))],
)

OPS = (LAYERNORM, GROUPNORM, LAYERSCALE, NORMALIZATION)
