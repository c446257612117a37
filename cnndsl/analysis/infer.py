"""Stage 3: graph -> analysed graph. Shapes, parameters, MACs, receptive fields and the
diagnostics they raise; the one object every backend reads."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from fractions import Fraction
from functools import cached_property

from cnndsl.analysis.graph import Graph, Node, Port, Scope
from cnndsl.analysis.ops.base import Context, Shape, ShapeError, Window, fmt_shape
from cnndsl.analysis.values import Deferred, UnknownShape, convert, evaluate
from cnndsl.common.diagnostics import ERROR, MAX_NUMBER, WARNING, CnnError, Diagnostic, Label

BYTES_PER_VALUE = 4  # float32


@dataclass(frozen=True)
class Field:
    """Receptive field along height and width, and the jump (product of strides) so far.

    While every stride so far is a whole number of pixels, the field of `d + 1`
    neighbouring positions is `extent + d * jump` input rows. After upsampling it is not:
    `upsample 2` after a stride of 2 repeats each position, so neighbours are 0 or 2 input
    rows apart, never the average 1. Such a field keeps the layer it came from (`source`)
    and that layer's windows, and `span` follows them back to a whole-pixel field.
    """

    extent: tuple[int, int]
    jump: tuple[int | Fraction, int | Fraction]
    source: tuple[Field, ...] = ()  # the fields this one is derived from, when not linear
    windows: tuple[Window, Window] | None = None  # from its single source; None: a merge
    _spans: dict[tuple[int, int], int] = field(default_factory=dict, repr=False, compare=False)

    @property
    def size(self) -> tuple[int, int]:
        return self.extent

    def span(self, axis: int, d: int) -> int:
        """The most input rows (axis 0) or columns (1) that `d + 1` neighbouring positions
        read together, over every position.

        Walked with an explicit stack (no recursion, however deep the network) and cached
        per merge. `span` grows with `d`, so paths that reach the same field only need the
        largest `d` they ask of it."""
        f, d = _chase(self, axis, d)
        if not f.source:
            return _linear(f, axis, d)
        stack = [(f, d)]
        while stack:
            g, e = stack[-1]
            if (axis, e) in g._spans:
                stack.pop()
                continue
            wanted: dict[int, tuple[Field, int]] = {}
            for p in g.source:
                h, x = _chase(p, axis, e)
                if id(h) not in wanted or wanted[id(h)][1] < x:
                    wanted[id(h)] = (h, x)
            pending = [(h, x) for h, x in wanted.values()
                       if h.source and (axis, x) not in h._spans]
            if pending:
                stack.extend(pending)
                continue
            g._spans[(axis, e)] = max(h._spans[(axis, x)] if h.source else _linear(h, axis, x)
                                      for h, x in wanted.values())
            stack.pop()
        return f._spans[(axis, d)]


def _chase(f: Field, axis: int, d: int) -> tuple[Field, int]:
    """Follow a chain of single-source fields back to a merge or a linear field."""
    while f.source and f.windows is not None:
        d = _reach(f.windows[axis], d)
        f = f.source[0]
    return f, d


def _linear(f: Field, axis: int, d: int) -> int:
    return int(f.extent[axis] + d * f.jump[axis])


def _anchor(f: Field) -> tuple[Field, tuple[int, int]]:
    """`f` as a field it reads through stride-1 windows only, and those windows' kernels
    less one: `f.span(a, d) == anchor.span(a, d + offset[a])`."""
    if f.source and f.windows is not None and all(w.stride == 1 for w in f.windows):
        return f.source[0], (f.windows[0].kernel - 1, f.windows[1].kernel - 1)
    return f, (0, 0)


def _reach(window: Window, d: int) -> int:
    """How many positions apart, at most, the first and last positions of the previous
    layer are that `d + 1` neighbouring positions of this layer read.

    A window of `kernel` with whole stride `s` reads `s * d + kernel` positions. An
    upsampling window (stride `1/s`) is given as the output positions one input value
    reaches, `kernel`: output `o` reads the inputs `i` with `s * i <= o + c < s * i + kernel`
    (some phase `c`), so positions `o` to `o + d` read inputs
    `ceil((o + c - kernel + 1) / s)` to `floor((o + c + d) / s)`: at most
    `(d + kernel - 1) // s` apart.
    """
    s = window.stride
    if isinstance(s, Fraction) and s.denominator != 1:
        return (d + window.kernel - 1) * s.numerator // s.denominator
    return int(s) * d + window.kernel - 1


@dataclass(frozen=True)
class Layer:
    """One analysed layer; `shape` is None when an earlier error left its input unknown."""

    node: Node
    shape: Shape | None
    trainable: int = 0
    non_trainable: int = 0
    macs: int = 0
    field: Field | None = None

    @property
    def params(self) -> int:
        return self.trainable + self.non_trainable


@dataclass(frozen=True)
class Totals:
    trainable: int = 0
    non_trainable: int = 0
    macs: int = 0

    @property
    def params(self) -> int:
        return self.trainable + self.non_trainable

    def __add__(self, layer: Layer) -> Totals:
        return Totals(self.trainable + layer.trainable, self.non_trainable + layer.non_trainable,
                      self.macs + layer.macs)


@dataclass
class Analysis:
    graph: Graph
    layers: list[Layer]
    diagnostics: list[Diagnostic] = field(default_factory=list)

    @property
    def input_shape(self) -> Shape | None:
        """The input's shape; None for a network with several inputs."""
        if len(self.graph.inputs) > 1:
            return None
        return self.layers[0].shape if self.layers else None

    @property
    def output_shape(self) -> Shape | None:
        """The output's shape; None for a network with several outputs."""
        out = self.graph.output
        if out is None or len(self.graph.outputs) > 1:
            return None
        return self.layers[out].shape

    def port_shapes(self, ports: list[Port]) -> list[tuple[str, Shape | None]]:
        """Each input or output by name, with its shape."""
        return [(p.name, self.layers[p.node].shape) for p in ports]

    @property
    def totals(self) -> Totals:
        total = Totals()
        for layer in self.layers:
            total += layer
        return total

    def scope_totals(self, scope: Scope) -> Totals:
        return self._by_scope[0].get(scope.path, Totals())

    def scope_output(self, scope: Scope) -> Shape | None:
        """The shape of the last layer inside a block instance (its output)."""
        return self._by_scope[1].get(scope.path)

    @cached_property
    def _by_scope(self) -> tuple[dict[tuple[str, ...], Totals],
                                 dict[tuple[str, ...], Shape | None]]:
        """Totals and output of every scope, in one pass (a layer counts in all its scopes)."""
        totals: dict[tuple[str, ...], Totals] = {}
        outputs: dict[tuple[str, ...], Shape | None] = {}
        for layer in self.layers:
            path = layer.node.scope
            for depth in range(1, len(path) + 1):
                prefix = path[:depth]
                totals[prefix] = totals.get(prefix, Totals()) + layer
                outputs[prefix] = layer.shape
        return totals, outputs

    @property
    def peak_activation_bytes(self) -> int:
        """The most activation memory alive at once in a forward pass (batch 1, float32).

        A tensor lives from the layer that makes it to the last layer that reads it.
        """
        last_use = {}
        for layer in self.layers:
            for i in layer.node.inputs:
                if i is not None:
                    last_use[i] = layer.node.id
        for port in self.graph.outputs:
            last_use[port.node] = len(self.layers)
        live, peak, sizes = 0, 0, {}
        for layer in self.layers:
            sizes[layer.node.id] = math.prod(layer.shape) if layer.shape else 0
            live += sizes[layer.node.id]
            peak = max(peak, live)
            for i in set(layer.node.inputs):
                if i is not None and last_use.get(i) == layer.node.id:
                    live -= sizes[i]
            if layer.node.id not in last_use:
                live -= sizes[layer.node.id]
        return peak * BYTES_PER_VALUE


def _receptive_field(node: Node, ctx: Context, inputs: list[Field]) -> Field:
    if not inputs:
        return Field((1, 1), (1, 1))
    if node.op.windows is None:  # the widest field over a merge's paths
        if all(not f.source for f in inputs):
            return Field(tuple(max(f.extent[i] for f in inputs) for i in (0, 1)),  # type: ignore[arg-type]
                         tuple(max(f.jump[i] for f in inputs) for i in (0, 1)))  # type: ignore[arg-type]
        jumps = tuple(max(f.jump[i] for f in inputs) for i in (0, 1))
        anchors = [_anchor(f) for f in inputs]
        if all(a is anchors[0][0] for a, _ in anchors):  # every path reads one field by stride 1
            # `span` grows with `d`, so the widest path is the one with the largest offset
            wide = tuple(Window(max(o[i] for _, o in anchors) + 1, 1) for i in (0, 1))
            merged = Field((0, 0), jumps, (anchors[0][0],), wide)  # type: ignore[arg-type]
        else:
            merged = Field((0, 0), jumps, tuple(inputs))  # type: ignore[arg-type]
        return replace(merged, extent=(merged.span(0, 0), merged.span(1, 0)), _spans={})
    windows = node.op.windows(node.args, ctx)
    f = inputs[0]
    if windows is None:
        return f
    jump = tuple(f.jump[i] * windows[i].stride for i in (0, 1))
    if not f.source and all(isinstance(j, int) for j in jump):  # whole strides: linear
        size = tuple(f.extent[i] + (windows[i].kernel - 1) * f.jump[i] for i in (0, 1))
        return Field(size, jump)  # type: ignore[arg-type]
    anchor, offset = _anchor(f)
    if anchor is not f and all(w.stride == 1 for w in windows):  # fold stride-1 chains
        windows = tuple(Window(windows[i].kernel + offset[i], 1) for i in (0, 1))  # type: ignore[assignment]
        f = anchor
    step = Field(f.extent, jump, (f,), windows)  # type: ignore[arg-type]
    return replace(step, extent=(step.span(0, 0), step.span(1, 0)), _spans={})


def _call_site(node: Node, scopes: dict[tuple[str, ...], Scope]) -> tuple[Label, ...]:
    """A label at the block call a layer was expanded from, so errors in blocks find their use."""
    scope = scopes.get(node.scope)
    if scope is None or scope.kind != "block":
        return ()
    return (Label(scope.span, f"in `{'/'.join(scope.path)}`, expanded from this call"),)


def _resolve(node: Node, layers: list[Layer]) -> Node:
    """The node with its shape-dependent arguments (`in.c // 2`) evaluated and checked."""
    deferred = {k: v for k, v in node.args.items() if isinstance(v, Deferred)}
    if not deferred:
        return node

    def shape_of(i: int | None) -> Shape | None:
        return layers[i].shape if i is not None and i < len(layers) else None

    args = dict(node.args)
    for key, value in deferred.items():
        spec = node.op.arg(key)
        assert spec is not None  # elaboration bound only the op's own arguments
        result = evaluate(value.expr, value.env, shape_of)
        args[key] = convert(spec, result, node.arg_spans.get(key, node.span))
    return replace(node, args=args)


def _layer(node: Node, layers: list[Layer], diagnostics: list[Diagnostic],
           scopes: dict[tuple[str, ...], Scope]) -> Layer:
    ins = [layers[i] if i is not None else None for i in node.inputs]
    if any(i is None or i.shape is None for i in ins):
        return Layer(node, None)  # an earlier error: stay silent rather than cascade
    try:
        node = _resolve(node, layers)
    except UnknownShape:
        return Layer(node, None)
    except CnnError as err:
        d = err.diagnostic(node.span)
        diagnostics.append(replace(d, labels=d.labels + _call_site(node, scopes)))
        return Layer(node, None)
    ctx = Context([i.shape for i in ins])  # type: ignore[union-attr, misc]
    try:
        out = node.op.shape(node.args, ctx)
    except ShapeError as err:
        span = node.arg_spans.get(err.arg or "", node.span)
        labels = tuple(Label(s, f"this path gives {fmt_shape(i.shape)}")  # type: ignore[union-attr]
                       for s, i in zip(node.input_spans, ins, strict=False))
        diagnostics.append(Diagnostic(ERROR, err.message, span, _with_input(err.hint, ctx, node),
                                      labels + _call_site(node, scopes)))
        return Layer(node, None)
    if math.prod(out) > MAX_NUMBER:  # beyond int64: no framework holds it, counts overflow
        shape = f" ({fmt_shape(out)})" if len(out) <= 8 else ""
        diagnostics.append(Diagnostic(ERROR, f"this layer's output{shape} has more than "
                                      "2**63 values", node.span, "check the sizes",
                                      _call_site(node, scopes)))
        return Layer(node, None)
    for message, hint in ctx.warnings:
        diagnostics.append(Diagnostic(WARNING, message, node.span, hint, _call_site(node, scopes)))
    trainable, non_trainable = node.op.params(node.args, ctx, out)
    if node.shares is not None:  # `reuse`: the weights are the first application's
        if not _same_weights(node, layers, ctx, (trainable, non_trainable), diagnostics):
            return Layer(node, None)
        trainable, non_trainable = 0, 0
    field_ = _receptive_field(node, ctx, [i.field for i in ins])  # type: ignore[union-attr, misc]
    return Layer(node, out, trainable, non_trainable, node.op.macs(node.args, ctx, out), field_)


def _same_weights(node: Node, layers: list[Layer], ctx: Context, params: tuple[int, int],
                  diagnostics: list[Diagnostic]) -> bool:
    """Whether a reused layer's weights fit its new input (they were made for the first)."""
    first = layers[node.shares]  # type: ignore[index]
    if first.shape is None:
        return False
    if params == (first.trainable, first.non_trainable):
        return True
    original = first.node
    before = layers[original.inputs[0]].shape if original.inputs[0] is not None else None
    diagnostics.append(Diagnostic(
        ERROR, f"`reuse` gives `{original.name}` a {fmt_shape(ctx.shape)} input, which its "
        "weights do not fit", node.span,
        f"its weights were made for a {fmt_shape(before)} input; reuse a layer on tensors of "
        "the shape it was first applied to", (Label(original.span, "first applied here"),)))
    return False


def _with_input(hint: str | None, ctx: Context, node: Node) -> str | None:
    if node.op.arity == "merge" or not ctx.inputs:
        return hint
    shape = f"the input here is {fmt_shape(ctx.shape)}"
    return f"{shape}; {hint}" if hint else shape


def infer(graph: Graph) -> Analysis:
    """Analyse every layer in order (elaboration emits them topologically)."""
    layers: list[Layer] = []
    diagnostics: list[Diagnostic] = []
    scopes = {s.path: s for s in graph.scopes}
    for node in graph.nodes:
        layers.append(_layer(node, layers, diagnostics, scopes))
    return Analysis(graph, layers, list(dict.fromkeys(diagnostics)))  # once per repeat body


class Shapes:
    """The shapes of a graph still being built, inferred on demand and cached: elaboration
    asks for them when an `if` reads `in.c`. Nodes come in topological order, so each is
    analysed once, by the same per-layer rule as `infer`; the diagnostics are left to
    `infer`, which says them in full."""

    def __init__(self, nodes: list[Node]) -> None:
        self.nodes = nodes  # the elaborator's list, growing
        self.layers: list[Layer] = []

    def shape_of(self, node: int | None) -> Shape | None:
        if node is None or not 0 <= node < len(self.nodes):
            return None
        while len(self.layers) <= node:
            self.layers.append(_layer(self.nodes[len(self.layers)], self.layers, [], {}))
        return self.layers[node].shape
