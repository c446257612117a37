"""Reordering axes and channels: permute (Permute), channel_shuffle (ShuffleNet's shuffle)."""

from __future__ import annotations

from cnndsl.analysis.ops.base import (
    Args,
    ArgSpec,
    Context,
    KerasLayer,
    Op,
    Shape,
    ShapeError,
    spatial,
)


def _permute_shape(args: Args, ctx: Context) -> Shape:
    dims, rank = args["dims"], len(ctx.shape)
    if sorted(dims) != list(range(1, rank + 1)):
        raise ShapeError(f"`permute` {dims} is not an order of the axes 1 to {rank}",
                         f"name each axis of the {rank}-axis input once, counting from 1 "
                         "(the batch is not counted), as Keras's Permute does", arg="dims")
    return tuple(ctx.shape[d - 1] for d in dims)


PERMUTE = Op(
    name="permute",
    keras="Permute",
    summary="reorder the axes: `permute (2, 1, 3)` swaps height and width",
    args=(ArgSpec("dims", "shape", positional=True, doc="the new order of the axes, from 1"),),
    shape=_permute_shape,
    to_keras=lambda a: [KerasLayer("Permute", {"dims": a["dims"]})],
    label=lambda a: f"permute {a['dims']}",
)


def _shuffle_shape(args: Args, ctx: Context) -> Shape:
    _, _, c = spatial(ctx, "channel_shuffle")
    if c % args["groups"]:
        raise ShapeError(f"{c} channels do not split into {args['groups']} groups",
                         "make the channels a multiple of `groups`", arg="groups")
    return ctx.shape


CHANNEL_SHUFFLE = Op(
    name="channel_shuffle",
    keras="ChannelShuffle",
    summary="ShuffleNet's channel shuffle: channel g*n + i moves to i*groups + g",
    args=(ArgSpec("groups", "count", doc="the groups of the grouped convolution before it"),),
    shape=_shuffle_shape,
    to_keras=lambda a: [KerasLayer("ChannelShuffle", {"groups": a["groups"]}, custom=True)],
    label=lambda a: f"channel shuffle, {a['groups']} groups",
)

OPS = (PERMUTE, CHANNEL_SHUFFLE)
