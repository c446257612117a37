"""Convolutions: conv (Conv2D), dwconv (DepthwiseConv2D), sepconv (SeparableConv2D)."""

from __future__ import annotations

from cnndsl.analysis.ops.activations import ACTIVATION_FLAGS, activation_kwargs
from cnndsl.analysis.ops.base import (
    PAD_SUFFIX,
    Args,
    ArgSpec,
    Context,
    KerasLayer,
    Op,
    Shape,
    ShapeError,
    Window,
    effective_kernel,
    padded_extent,
    spatial,
    warn_uncovered,
    window_output,
)

PADDING_FLAGS = {"same": ("padding", "same"), "valid": ("padding", "valid")}

# The arguments every sliding-window layer shares.
WINDOW_ARGS = (
    ArgSpec("stride", "size2", (1, 1), doc="step of the window; `2` or `(2, 1)`"),
    ArgSpec("padding", "padding", "valid", doc="`same` or `valid` (a flag word)"),
    ArgSpec("pad", "pad", None, doc="explicit zero padding on every side: `1`, `(1, 2)`"),
)
CONV_ARGS = (
    *WINDOW_ARGS,
    ArgSpec("dilation", "size2", (1, 1), doc="dilation rate"),
    ArgSpec("activation", "activation", None, doc="an activation name (a flag word)"),
    ArgSpec("use_bias", "bool", True, doc="add a bias per output channel"),
)


def conv_output(args: Args, ctx: Context, what: str) -> tuple[int, int, int]:
    """(height, width, input channels) after the window of op `what`, with padding checks."""
    h, w, c = spatial(ctx, what)
    kernel = args["kernel"]
    if args["pad"] is not None and args["padding"] == "same":
        raise ShapeError("`same` and `pad=` both set the padding", "keep one of them",
                         arg="pad")
    (sh, sw), (dh, dw) = args["stride"], args["dilation"]
    pad = args["pad"] or (None, None)
    out_h, left_h = window_output(h, effective_kernel(kernel[0], dh), sh, args["padding"],
                                  "height", pad[0])
    out_w, left_w = window_output(w, effective_kernel(kernel[1], dw), sw, args["padding"],
                                  "width", pad[1])
    warn_uncovered(ctx, (left_h, left_w), (padded_extent(h, pad[0]), padded_extent(w, pad[1])),
                   (sh, sw))
    return out_h, out_w, c


def conv_windows(args: Args, ctx: Context) -> tuple[Window, Window]:
    k, s, d = args["kernel"], args["stride"], args["dilation"]
    return (Window(effective_kernel(k[0], d[0]), s[0]), Window(effective_kernel(k[1], d[1]), s[1]))


def conv_keras(cls: str, main: dict, args: Args, custom: bool = False) -> list[KerasLayer]:
    """The Keras layers of a convolution: explicit padding becomes a ZeroPadding2D before it.
    `custom`: the class is cnndsl's own (see KerasLayer)."""
    kwargs = dict(main)
    if args["stride"] != (1, 1):
        kwargs["strides"] = args["stride"]
    kwargs["padding"] = "valid" if args["pad"] is not None else args["padding"]
    if args["dilation"] != (1, 1):
        kwargs["dilation_rate"] = args["dilation"]
    kwargs.update(activation_kwargs(args["activation"]))
    if not args["use_bias"]:
        kwargs["use_bias"] = False
    layers = [KerasLayer(cls, kwargs, custom=custom)]
    if args["pad"] is not None:
        layers.insert(0, KerasLayer("ZeroPadding2D", {"padding": args["pad"]}, PAD_SUFFIX))
    return layers


def _no_dilated_strides(args: Args) -> None:
    if max(args["stride"]) > 1 and max(args["dilation"]) > 1:
        raise ShapeError("Keras's Conv2D takes no stride above 1 together with dilation above 1",
                         "downsample in a separate layer", arg="dilation")


# ----------------------------------------------------------------------------- conv


def _conv_shape(args: Args, ctx: Context) -> Shape:
    _no_dilated_strides(args)
    h, w, c = conv_output(args, ctx, "conv")
    groups, filters = args["groups"], args["filters"]
    if c % groups:
        raise ShapeError(f"{c} input channels do not split into {groups} groups",
                         "make the input channels a multiple of `groups`", arg="groups")
    if filters % groups:
        raise ShapeError(f"{filters} filters do not split into {groups} groups",
                         "make `filters` a multiple of `groups`", arg="groups")
    return (h, w, filters)


def _conv_params(args: Args, ctx: Context, out: Shape) -> tuple[int, int]:
    kh, kw = args["kernel"]
    weights = kh * kw * (ctx.shape[-1] // args["groups"]) * args["filters"]
    return (weights + (args["filters"] if args["use_bias"] else 0), 0)


def _conv_macs(args: Args, ctx: Context, out: Shape) -> int:
    kh, kw = args["kernel"]
    return kh * kw * (ctx.shape[-1] // args["groups"]) * out[0] * out[1] * out[2]


def _conv_keras(args: Args) -> list[KerasLayer]:
    main = {"filters": args["filters"], "kernel_size": args["kernel"]}
    if args["groups"] != 1:
        main["groups"] = args["groups"]
    return conv_keras("Conv2D", main, args)


CONV = Op(
    name="conv",
    keras="Conv2D",
    summary="2-D convolution",
    args=(
        ArgSpec("filters", "count", positional=True, doc="number of output channels"),
        ArgSpec("kernel", "size2", positional=True, doc="kernel size: `3x3`, `1x7`, `3`"),
        *CONV_ARGS,
        ArgSpec("groups", "count", 1, doc="grouped convolution: channels split into groups"),
    ),
    flags={**PADDING_FLAGS, **ACTIVATION_FLAGS},
    shape=_conv_shape,
    params=_conv_params,
    macs=_conv_macs,
    windows=conv_windows,
    to_keras=_conv_keras,
)

# ----------------------------------------------------------------------------- dwconv


def _dw_shape(args: Args, ctx: Context) -> Shape:
    h, w, c = conv_output(args, ctx, "dwconv")
    return (h, w, c * args["multiplier"])


def _dw_params(args: Args, ctx: Context, out: Shape) -> tuple[int, int]:
    kh, kw = args["kernel"]
    channels = ctx.shape[-1] * args["multiplier"]
    return (kh * kw * channels + (channels if args["use_bias"] else 0), 0)


def _dw_macs(args: Args, ctx: Context, out: Shape) -> int:
    kh, kw = args["kernel"]
    return kh * kw * out[0] * out[1] * out[2]


def _dw_keras(args: Args) -> list[KerasLayer]:
    main: dict = {"kernel_size": args["kernel"]}
    if args["multiplier"] != 1:
        main["depth_multiplier"] = args["multiplier"]
    return conv_keras("DepthwiseConv2D", main, args)


DWCONV = Op(
    name="dwconv",
    keras="DepthwiseConv2D",
    summary="depthwise 2-D convolution: one filter (or `multiplier`) per input channel",
    args=(
        ArgSpec("kernel", "size2", positional=True, doc="kernel size"),
        *CONV_ARGS,
        ArgSpec("multiplier", "count", 1, doc="output channels per input channel"),
    ),
    flags={**PADDING_FLAGS, **ACTIVATION_FLAGS},
    shape=_dw_shape,
    params=_dw_params,
    macs=_dw_macs,
    windows=conv_windows,
    to_keras=_dw_keras,
)

# ----------------------------------------------------------------------------- sepconv


def _sep_shape(args: Args, ctx: Context) -> Shape:
    h, w, _ = conv_output(args, ctx, "sepconv")
    return (h, w, args["filters"])


def _sep_params(args: Args, ctx: Context, out: Shape) -> tuple[int, int]:
    kh, kw = args["kernel"]
    mid = ctx.shape[-1] * args["multiplier"]
    bias = args["filters"] if args["use_bias"] else 0
    return (kh * kw * mid + mid * args["filters"] + bias, 0)


def _sep_macs(args: Args, ctx: Context, out: Shape) -> int:
    kh, kw = args["kernel"]
    mid = ctx.shape[-1] * args["multiplier"]
    return out[0] * out[1] * (kh * kw * mid + mid * args["filters"])


def _sep_keras(args: Args) -> list[KerasLayer]:
    main: dict = {"filters": args["filters"], "kernel_size": args["kernel"]}
    if args["multiplier"] != 1:
        main["depth_multiplier"] = args["multiplier"]
    return conv_keras("SeparableConv2D", main, args)


SEPCONV = Op(
    name="sepconv",
    keras="SeparableConv2D",
    summary="depthwise-separable convolution: a depthwise then a 1x1 pointwise convolution",
    args=(
        ArgSpec("filters", "count", positional=True, doc="number of output channels"),
        ArgSpec("kernel", "size2", positional=True, doc="depthwise kernel size"),
        *CONV_ARGS,
        ArgSpec("multiplier", "count", 1, doc="depthwise channels per input channel"),
    ),
    flags={**PADDING_FLAGS, **ACTIVATION_FLAGS},
    shape=_sep_shape,
    params=_sep_params,
    macs=_sep_macs,
    windows=conv_windows,
    to_keras=_sep_keras,
)

OPS = (CONV, DWCONV, SEPCONV)
