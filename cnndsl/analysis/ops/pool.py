"""Pooling: maxpool, avgpool (a window, stride defaulting to it) and global pooling."""

from __future__ import annotations

from cnndsl.analysis.ops.base import (
    PAD_SUFFIX,
    Args,
    ArgSpec,
    Context,
    KerasLayer,
    Op,
    Shape,
    Window,
    spatial,
)
from cnndsl.analysis.ops.conv import PADDING_FLAGS, WINDOW_ARGS, conv_output

_POOL_ARGS = (
    ArgSpec("pool", "size2", (2, 2), positional=True, doc="window size: `2x2`, `3`"),
    *(a for a in WINDOW_ARGS if a.name != "stride"),
    ArgSpec("stride", "size2", None, doc="step of the window; defaults to the window size"),
)


def _resolved(args: Args) -> dict:
    """Pooling seen as a convolution window: stride defaults to the pool size, no dilation."""
    return {**args, "kernel": args["pool"], "stride": args["stride"] or args["pool"],
            "dilation": (1, 1)}


def _pool(name: str, keras: str, summary: str) -> Op:
    def shape(args: Args, ctx: Context) -> Shape:
        return conv_output(_resolved(args), ctx, name)

    def windows(args: Args, ctx: Context) -> tuple[Window, Window]:
        a = _resolved(args)
        return (Window(a["kernel"][0], a["stride"][0]), Window(a["kernel"][1], a["stride"][1]))

    def to_keras(args: Args) -> list[KerasLayer]:
        a = _resolved(args)
        kwargs = {"pool_size": a["pool"], "strides": a["stride"],
                  "padding": "valid" if a["pad"] is not None else a["padding"]}
        layers = [KerasLayer(keras, kwargs)]
        if a["pad"] is not None:
            layers.insert(0, KerasLayer("ZeroPadding2D", {"padding": a["pad"]}, PAD_SUFFIX))
        return layers

    return Op(name=name, keras=keras, summary=summary, args=_POOL_ARGS, flags=PADDING_FLAGS,
              shape=shape, windows=windows, to_keras=to_keras)


def _global(name: str, keras: str, summary: str) -> Op:
    def shape(args: Args, ctx: Context) -> Shape:
        _, _, c = spatial(ctx, name)
        return (1, 1, c) if args["keepdims"] else (c,)

    def windows(args: Args, ctx: Context) -> tuple[Window, Window]:
        h, w, _ = ctx.shape
        return (Window(h, 1), Window(w, 1))

    def to_keras(args: Args) -> list[KerasLayer]:
        return [KerasLayer(keras, {"keepdims": True} if args["keepdims"] else {})]

    return Op(name=name, keras=keras, summary=summary,
              args=(ArgSpec("keepdims", "bool", False, doc="keep a 1x1 height and width"),),
              shape=shape, windows=windows, to_keras=to_keras)


OPS = (
    _pool("maxpool", "MaxPooling2D", "max pooling over a window"),
    _pool("avgpool", "AveragePooling2D", "average pooling over a window"),
    _global("globalavgpool", "GlobalAveragePooling2D", "average over height and width"),
    _global("globalmaxpool", "GlobalMaxPooling2D", "maximum over height and width"),
)
