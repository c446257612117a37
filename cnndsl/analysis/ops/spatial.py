"""Spatial layers beyond convolution and pooling: convt (Conv2DTranspose), local (Keras 2's
LocallyConnected2D), upsample (UpSampling2D), crop (Cropping2D)."""

from __future__ import annotations

from fractions import Fraction

from cnndsl.analysis.ops.activations import ACTIVATION_FLAGS
from cnndsl.analysis.ops.base import (
    Args,
    ArgSpec,
    Context,
    KerasLayer,
    Op,
    Shape,
    ShapeError,
    Window,
    effective_kernel,
    fmt_shape,
    spatial,
)
from cnndsl.analysis.ops.conv import CONV_ARGS, PADDING_FLAGS, conv_keras, conv_output, conv_windows
from cnndsl.analysis.ops.core import keras_padding


def _size(pair: tuple[int, int]) -> str:
    return f"{pair[0]}" if pair[0] == pair[1] else f"{pair[0]}x{pair[1]}"


# ----------------------------------------------------------------------------- convt


def _transposed_length(size: int, kernel: int, stride: int, padding: str,
                       output_padding: int | None) -> int:
    """Keras's deconv_output_length: the output length of a transposed convolution."""
    if output_padding is None:
        if padding == "valid":
            return size * stride + max(kernel - stride, 0)
        return size * stride
    pad = kernel // 2 if padding == "same" else 0
    return (size - 1) * stride + kernel - 2 * pad + output_padding


def _convt_shape(args: Args, ctx: Context) -> Shape:
    h, w, _ = spatial(ctx, "convt")
    stride, dilation, out_pad = args["stride"], args["dilation"], args["output_padding"]
    if max(stride) > 1 and max(dilation) > 1:
        raise ShapeError("Keras's Conv2DTranspose takes no stride above 1 together with "
                         "dilation above 1", "upsample in a separate layer", arg="dilation")
    if out_pad is not None and any(p >= s for p, s in zip(out_pad, stride, strict=True)):
        raise ShapeError(f"`output_padding` {_size(out_pad)} must be less than the stride "
                         f"{_size(stride)}, as Keras requires", arg="output_padding")
    sizes = tuple(
        _transposed_length(n, effective_kernel(k, d), s, args["padding"],
                           None if out_pad is None else p)
        for n, k, s, d, p in zip((h, w), args["kernel"], stride, dilation,
                                 out_pad or (None, None), strict=True))
    if max(dilation) > 1:
        ctx.warn("TensorFlow runs a dilated `convt` on GPUs only: its CPU kernel refuses "
                 "dilation above 1", "train on a GPU, or upsample and use a dilated `conv`")
    if min(sizes) < 1:
        raise ShapeError(f"the output would be {sizes[0]}x{sizes[1]}: nothing is left",
                         "use a larger `output_padding` or `valid` padding")
    return (*sizes, args["filters"])


def _convt_params(args: Args, ctx: Context, out: Shape) -> tuple[int, int]:
    kh, kw = args["kernel"]
    weights = kh * kw * ctx.shape[-1] * args["filters"]
    return (weights + (args["filters"] if args["use_bias"] else 0), 0)


def _convt_macs(args: Args, ctx: Context, out: Shape) -> int:
    """Each input value is multiplied into a kh x kw x filters window of the output."""
    kh, kw = args["kernel"]
    h, w, c = ctx.shape
    return kh * kw * c * args["filters"] * h * w


def _convt_windows(args: Args, ctx: Context) -> tuple[Window, Window]:
    """Each input value is spread over a kernel of output values, a stride apart: a step
    in the output is 1/stride of one input, and one input reaches `kernel` outputs (so an
    output value reads at most (kernel - 1) // stride + 1 inputs)."""
    return tuple(Window(effective_kernel(k, d), Fraction(1, s))  # type: ignore[return-value]
                 for k, s, d in zip(args["kernel"], args["stride"], args["dilation"],
                                    strict=True))


def _convt_keras(args: Args) -> list[KerasLayer]:
    main: dict = {"filters": args["filters"], "kernel_size": args["kernel"]}
    if args["output_padding"] is not None:
        main["output_padding"] = args["output_padding"]
    return conv_keras("Conv2DTranspose", main, {**args, "pad": None})


CONVT = Op(
    name="convt",
    keras="Conv2DTranspose",
    summary="transposed 2-D convolution (learned upsampling)",
    args=(
        ArgSpec("filters", "count", positional=True, doc="number of output channels"),
        ArgSpec("kernel", "size2", positional=True, doc="kernel size: `3x3`, `2`"),
        *(a for a in CONV_ARGS if a.name != "pad"),
        ArgSpec("output_padding", "pair", None, doc="extra rows and columns at the end "
                "(less than the stride); fixes the output size"),
    ),
    flags={**PADDING_FLAGS, **ACTIVATION_FLAGS},
    shape=_convt_shape,
    params=_convt_params,
    macs=_convt_macs,
    windows=_convt_windows,
    to_keras=_convt_keras,
)

# ----------------------------------------------------------------------------- local


def _local_shape(args: Args, ctx: Context) -> Shape:
    if args["padding"] == "same":
        raise ShapeError("Keras 2's LocallyConnected2D has only `valid` padding",
                         "pad explicitly with `pad=`", arg="padding")
    h, w, _ = conv_output({**args, "dilation": (1, 1)}, ctx, "local")
    return (h, w, args["filters"])


def _local_params(args: Args, ctx: Context, out: Shape) -> tuple[int, int]:
    """A conv's weights and biases once per output position: nothing is shared."""
    kh, kw = args["kernel"]
    positions = out[0] * out[1]
    weights = positions * kh * kw * ctx.shape[-1] * args["filters"]
    return (weights + (positions * args["filters"] if args["use_bias"] else 0), 0)


def _local_macs(args: Args, ctx: Context, out: Shape) -> int:
    kh, kw = args["kernel"]
    return kh * kw * ctx.shape[-1] * out[0] * out[1] * out[2]


def _local_keras(args: Args) -> list[KerasLayer]:
    main = {"filters": args["filters"], "kernel_size": args["kernel"]}
    return conv_keras("LocallyConnected2D", main, {**args, "dilation": (1, 1)}, custom=True)


LOCAL = Op(
    name="local",
    keras="LocallyConnected2D",
    summary="locally connected 2-D layer: a convolution without weight sharing",
    args=(
        ArgSpec("filters", "count", positional=True, doc="number of output channels"),
        ArgSpec("kernel", "size2", positional=True, doc="kernel size: `3x3`, `8`"),
        *(a for a in CONV_ARGS if a.name != "dilation"),
    ),
    flags={**PADDING_FLAGS, **ACTIVATION_FLAGS},
    shape=_local_shape,
    params=_local_params,
    macs=_local_macs,
    windows=lambda a, ctx: conv_windows({**a, "dilation": (1, 1)}, ctx),
    to_keras=_local_keras,
)

# ----------------------------------------------------------------------------- upsample

# Keras's interpolations, and how many input values along an axis each output value reads.
INTERPOLATIONS = {"nearest": 1, "bilinear": 2, "bicubic": 4, "lanczos3": 6, "lanczos5": 10,
                  "area": 1}


def _upsample_shape(args: Args, ctx: Context) -> Shape:
    h, w, c = spatial(ctx, "upsample")
    sh, sw = args["size"]
    return (h * sh, w * sw, c)


def _upsample_windows(args: Args, ctx: Context) -> tuple[Window, Window]:
    """Each output value copies its nearest input value, or blends `reach` neighbours; a
    step in the output is 1/size of one input, and one input reaches `reach * size`
    outputs (as a `convt` with that kernel and stride `size`)."""
    reach = INTERPOLATIONS[args["interpolation"]]
    # At a factor of 1 every interpolation returns its input.
    return tuple(Window(reach * s if s > 1 else 1, Fraction(1, s))  # type: ignore[return-value]
                 for s in args["size"])


def _upsample_keras(args: Args) -> list[KerasLayer]:
    kwargs: dict = {"size": args["size"]}
    if args["interpolation"] != "nearest":
        kwargs["interpolation"] = args["interpolation"]
    return [KerasLayer("UpSampling2D", kwargs)]


UPSAMPLE = Op(
    name="upsample",
    keras="UpSampling2D",
    summary="repeat (or interpolate) rows and columns: `upsample 2 bilinear`",
    args=(
        ArgSpec("size", "size2", (2, 2), positional=True, doc="the factor: `2`, `(2, 1)`"),
        ArgSpec("interpolation", "choice", "nearest", doc="`nearest` or `bilinear` (flag "
                "words), or `interpolation=bicubic`", choices=tuple(INTERPOLATIONS)),
    ),
    flags={"nearest": ("interpolation", "nearest"), "bilinear": ("interpolation", "bilinear")},
    shape=_upsample_shape,
    windows=_upsample_windows,
    to_keras=_upsample_keras,
    label=lambda a: f"upsample x{_size(a['size'])} {a['interpolation']}",
)

# ----------------------------------------------------------------------------- crop


def _crop_shape(args: Args, ctx: Context) -> Shape:
    h, w, c = spatial(ctx, "crop")
    (t, b), (left, right) = args["crop"]
    if t + b >= h or left + right >= w:
        raise ShapeError(f"cropping {t + b}x{left + right} leaves nothing of the "
                         f"{fmt_shape((h, w))} input", "crop less", arg="crop")
    return (h - t - b, w - left - right, c)


CROP = Op(
    name="crop",
    keras="Cropping2D",
    summary="cut rows and columns off the edges (U-Net's skips)",
    args=(ArgSpec("crop", "pad", positional=True,
                  doc="`1`, `(1, 2)` (height, width), `((0, 1), (0, 1))` per side"),),
    shape=_crop_shape,
    windows=lambda a, ctx: (Window(1, 1), Window(1, 1)),
    to_keras=lambda a: [KerasLayer("Cropping2D", {"cropping": keras_padding(a["crop"])})],
    label=lambda a: f"crop {keras_padding(a['crop'])}",
)

OPS = (CONVT, LOCAL, UPSAMPLE, CROP)
