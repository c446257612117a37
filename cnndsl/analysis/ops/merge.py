"""Merges: concat, add, multiply, subtract. Each takes `{ | path | path ... }` (or named
tensors, `add @a @b`) and joins them."""

from __future__ import annotations

from cnndsl.analysis.ops.base import Args, ArgSpec, Context, KerasLayer, Op, Shape, ShapeError


def _concat_shape(args: Args, ctx: Context) -> Shape:
    shapes = ctx.inputs
    rank = len(shapes[0])
    if any(len(s) != rank for s in shapes):
        raise ShapeError("`concat` paths have different ranks",
                         "flatten or reshape the paths to the same rank")
    # `axis` counts as Keras's does, the batch being axis 0: 1 is the height, -1 the channels.
    axis = args["axis"]
    if axis in (0, -rank - 1):
        raise ShapeError(f"axis {axis} is the batch axis", "join along 1 (height), 2 (width) "
                         "or -1 (channels), counting as Keras does", arg="axis")
    if not -rank <= axis <= rank:
        raise ShapeError(f"axis {axis} is out of range for rank-{rank} tensors (as Keras "
                         f"counts them: 1 to {rank}, or -{rank} to -1)", arg="axis")
    axis = axis - 1 if axis > 0 else axis + rank
    others = {tuple(d for i, d in enumerate(s) if i != axis) for s in shapes}
    if len(others) > 1:
        what = "height and width" if rank == 3 and axis == 2 else "sizes off the joined axis"
        raise ShapeError(f"`concat` paths disagree in {what}",
                         "give every path the same stride and padding (`same` keeps sizes)")
    joined = sum(s[axis] for s in shapes)
    return tuple(joined if i == axis else d for i, d in enumerate(shapes[0]))


def _broadcast(name: str):
    def shape(args: Args, ctx: Context) -> Shape:
        shapes = ctx.inputs
        rank = max(len(s) for s in shapes)
        out = []
        for i in range(1, rank + 1):
            dims = {s[-i] for s in shapes if len(s) >= i} - {1}
            if len(dims) > 1:
                raise ShapeError(f"`{name}` paths have shapes that do not broadcast",
                                 "every path must give the same shape (or 1 where it differs)")
            out.append(dims.pop() if dims else 1)
        return tuple(reversed(out))
    return shape


def _subtract_shape(args: Args, ctx: Context) -> Shape:
    if len(ctx.inputs) != 2:
        raise ShapeError(f"`subtract` takes exactly two paths, not {len(ctx.inputs)}",
                         "it computes the first minus the second")
    return _broadcast("subtract")(args, ctx)


def _merge(name: str, keras: str, summary: str, shape, args=()) -> Op:
    def to_keras(a: Args) -> list[KerasLayer]:
        kwargs = {"axis": a["axis"]} if a.get("axis", -1) != -1 else {}
        return [KerasLayer(keras, kwargs)]
    return Op(name=name, keras=keras, summary=summary, args=args, shape=shape,
              to_keras=to_keras, arity="merge")


OPS = (
    _merge("concat", "Concatenate", "join the paths along the channels", _concat_shape,
           (ArgSpec("axis", "int", -1, doc="the axis to join along"),)),
    _merge("add", "Add", "add the paths element-wise (residual connections)", _broadcast("add")),
    _merge("multiply", "Multiply", "multiply the paths element-wise (squeeze-and-excitation)",
           _broadcast("multiply")),
    _merge("subtract", "Subtract", "the first of two paths minus the second (Siamese "
           "distances)", _subtract_shape),
)
