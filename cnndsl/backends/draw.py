"""Backend: the analysed graph as a Graphviz diagram (`cnndsl draw`).

Every layer is a node (op and key arguments, output shape, params), coloured by op family;
every block instance a labelled cluster; edges carry tensor shapes. A merge's paths leave
the fork in source order, so dot lays them side by side like the Inception paper's figure.
Block instances deeper than `depth` fold into single nodes, and consecutive identical
instances fold into one node marked `x N`. Layers that failed are red with the message;
layers whose shape an error left unknown are grey and dashed.
"""

from __future__ import annotations

import html
import re
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import graphviz

from cnndsl.analysis.graph import Scope
from cnndsl.analysis.infer import Analysis, Layer
from cnndsl.analysis.ops.base import fmt_shape
from cnndsl.backends.report import human
from cnndsl.common.diagnostics import ERROR, Diagnostic

RANKDIRS = ("TB", "LR")

FONT = "Helvetica,Arial,sans-serif"

# Op families: (fill, border). The fills step in lightness as well as hue (grey levels
# about 180 conv, 200 dense, 225 pool, 240 merge, 255 elementwise), so a grey print still
# tells them apart; text is always near-black.
FAMILY = {
    "input": ("#d9d9d9", "#525252"),
    "conv": ("#8fbde0", "#2171b5"),
    "dense": ("#fdb97d", "#d94801"),
    "pool": ("#d3edcb", "#238b45"),
    "merge": ("#fff5c2", "#a58400"),
    "shape": ("#f0f0f0", "#737373"),
    "elementwise": ("#ffffff", "#969696"),
    "block": ("#dadaeb", "#54278f"),
}
ERROR_STYLE = ("#fcbba1", "#cb181d")
UNKNOWN_STYLE = ("#f7f7f7", "#bdbdbd")
CLUSTER_FILLS = ("#f7f7f7", "#ebebeb", "#dfdfdf")

_FAMILY_OF = {
    "input": "input",
    "conv": "conv", "dwconv": "conv", "sepconv": "conv", "convt": "conv", "local": "conv",
    "maxpool": "pool", "avgpool": "pool", "globalavgpool": "pool", "globalmaxpool": "pool",
    "dense": "dense",
    "concat": "merge", "add": "merge", "multiply": "merge", "subtract": "merge",
    "flatten": "shape", "reshape": "shape", "zeropad": "shape", "rescale": "shape",
    "upsample": "shape", "crop": "shape", "permute": "shape", "channel_shuffle": "shape",
    "normalization": "shape",
}


def family(op_name: str) -> str:
    """The colour family of an op; activations, batchnorm, dropout, identity are elementwise."""
    return _FAMILY_OF.get(op_name, "elementwise")


# ----------------------------------------------------------------------------- labels


def _size(pair: tuple[int, int]) -> str:
    return f"{pair[0]}" if pair[0] == pair[1] else f"{pair[0]}x{pair[1]}"


def _window(kernel: tuple[int, int], stride: tuple[int, int], padding: str) -> str:
    """`3x3/2 same`: the paper notation for a window, its stride and padding."""
    text = f"{kernel[0]}x{kernel[1]}"
    if stride != (1, 1):
        text += f"/{_size(stride)}"
    return text + (" same" if padding == "same" else "")


def _pad(pad: Any) -> str:
    (t, b), (left, right) = pad
    if t == b == left == right:
        return str(t)
    return f"({t}, {left})" if (t, left) == (b, right) else str(pad)


def _numbers(v: float | tuple[float, ...], spec: str) -> str:
    """A scale or offset, or one per channel: `0.003922`, `(0.01712, 0.01751, 0.01743)`."""
    if isinstance(v, tuple):
        return "(" + ", ".join(format(x, spec) for x in v) + ")"
    return format(v, spec)


def describe(op_name: str, args: dict[str, Any]) -> tuple[str, list[str]]:
    """The head line (op and window) and detail words (filters, activation...) of a layer."""
    a = args
    details: list[str] = []
    if op_name in ("conv", "sepconv", "dwconv", "convt", "local"):
        head = f"{op_name} {_window(a['kernel'], a['stride'], a['padding'])}"
        if op_name != "dwconv":
            details.append(f"{a['filters']} filters")
        elif a.get("multiplier", 1) != 1:
            details.append(f"multiplier {a['multiplier']}")
        if a.get("pad") is not None:
            details.append(f"pad {_pad(a['pad'])}")
        if a.get("dilation", (1, 1)) != (1, 1):
            details.append(f"dilation {_size(a['dilation'])}")
        if a.get("output_padding") is not None:
            details.append(f"output padding {_size(a['output_padding'])}")
        if op_name == "local":
            details.append("unshared")
        if a.get("groups", 1) != 1:
            details.append(f"groups {a['groups']}")
        if a["activation"] not in (None, "linear"):
            details.append(a["activation"])
        if not a["use_bias"]:
            details.append("no bias")
        return head, details
    if op_name in ("maxpool", "avgpool"):
        head = f"{op_name} {_window(a['pool'], a['stride'] or a['pool'], a['padding'])}"
        if a["pad"] is not None:
            details.append(f"pad {_pad(a['pad'])}")
        return head, details
    if op_name == "dense":
        details.append(f"{a['units']} units")
        if a["activation"] not in (None, "linear"):
            details.append(a["activation"])
        return "dense", details
    if op_name == "dropout":
        if a.get("noise_shape") is not None:
            details.append(f"noise shape {fmt_shape(a['noise_shape'])}")
        return f"dropout {a['rate']:g}", details
    if op_name == "activation":
        return str(a["function"]), details
    if op_name == "zeropad":
        return f"zeropad {_pad(a['pad'])}", details
    if op_name == "reshape":
        return f"reshape {fmt_shape(a['shape'])}", details
    if op_name == "rescale":
        offset = f" + {_numbers(a['offset'], 'g')}" if a.get("offset") else ""
        return f"rescale x{_numbers(a['scale'], '.4g')}{offset}", details
    if op_name == "concat" and a.get("axis", -1) != -1:
        details.append(f"axis {a['axis']}")
    if a.get("keepdims"):
        details.append("keepdims")
    return op_name, details


MAX_LABEL = 120  # characters of one name in the picture; Graphviz refuses very long strings


def _clip(text: str) -> str:
    return text if len(text) <= MAX_LABEL else text[:MAX_LABEL - 1] + "…"


def _esc(text: str) -> str:
    return html.escape(_clip(text), quote=False)


def _auto_name(layer: Layer) -> bool:
    """True for names elaboration made up (`conv_3`); names given with `as` are worth showing."""
    local = layer.node.local_name
    return local == layer.node.op.name or bool(re.fullmatch(rf"{re.escape(layer.node.op.name)}_\d+",
                                                            local))


def _html(lines: list[str]) -> str:
    return "<" + "<br/>".join(lines) + ">"


def _small(text: str, colour: str = "#404040") -> str:
    return f'<font point-size="9" color="{colour}">{_esc(text)}</font>'


def _counts(shape: str, params: int, word: str = "params") -> str:
    return f"{shape} · {human(params)} {word}" if params else shape


def layer_label(layer: Layer, error: str | None, shares: str | None = None) -> str:
    """An HTML-like label: [name], op and window in bold, details, shape and params;
    `shares`, the layer whose weights a `reuse` applies again."""
    node = layer.node
    if node.op.label is not None:
        head, details = node.op.label(node.args), []
    else:
        head, details = describe(node.op.name, dict(node.args))
    lines = [] if _auto_name(layer) else [_small(node.local_name, "#525252")]
    lines.append(f"<b>{_esc(head)}</b>")
    if details:
        lines.append(_esc(", ".join(details)))
    if node.shares is not None:  # `reuse`: drawn again, dashed, naming the first use
        lines.append(_small(f"shares {shares}", "#54278f"))
    if error is not None:
        wrapped = textwrap.wrap(error, 36) or ["error"]
        lines += [f'<font point-size="9" color="#a50f15">{_esc(w)}</font>' for w in wrapped]
    else:
        lines.append(_small(_counts(fmt_shape(layer.shape), layer.params)))
    return _html(lines)


# ----------------------------------------------------------------------------- folding


@dataclass
class Fold:
    """Block instances drawn as one node: one instance, or consecutive identical ones."""

    scopes: list[Scope]
    layers: list[Layer] = field(default_factory=list)

    @property
    def key(self) -> str:
        return "fold_" + re.sub(r"\W", "_", "/".join(self.scopes[0].path))


def _fold_inputs(a: Analysis, fold: Fold) -> list[int]:
    """Ids of the layers outside the fold that feed it, in order."""
    inside = {x.node.id for x in fold.layers}
    ids = [i for x in fold.layers for i in x.node.inputs if i is not None and i not in inside]
    return list(dict.fromkeys(ids))


def _signature(a: Analysis, fold: Fold) -> tuple[Any, ...]:
    """What makes adjacent instances repetitions: same parent, same block (or the same
    `repeat` body), same input and output shapes, same parameter count."""
    scope = fold.scopes[0]
    body = scope.block if scope.kind == "block" else scope.span
    shapes_in = tuple(a.layers[i].shape for i in _fold_inputs(a, fold))
    return (scope.path[:-1], scope.kind, body, shapes_in, fold.layers[-1].shape,
            a.scope_totals(scope).params)


def folds(a: Analysis, depth: int | None) -> dict[int, Fold]:
    """Layer id -> its fold, for layers inside block instances nested deeper than `depth`.
    An instance fed by the one before it and alike in signature joins its fold."""
    if depth is None:
        return {}
    scopes = {s.path: s for s in a.graph.scopes}
    instances: dict[tuple[str, ...], Fold] = {}
    for layer in a.layers:
        path = layer.node.scope[: depth + 1]
        if len(path) == depth + 1 and path in scopes:
            instances.setdefault(path, Fold([scopes[path]])).layers.append(layer)
    groups: list[Fold] = []
    previous: tuple[Any, ...] | None = None
    for one in instances.values():  # in layer order
        signature = _signature(a, one)
        if (groups and signature == previous
                and _fold_inputs(a, one) == [groups[-1].layers[-1].node.id]):
            groups[-1].scopes += one.scopes
            groups[-1].layers += one.layers
        else:
            groups.append(one)
        previous = signature
    return {x.node.id: fold for fold in groups for x in fold.layers}


def fold_label(a: Analysis, fold: Fold) -> str:
    scope = fold.scopes[0]
    name = scope.path[-1]
    kind = scope.block or "repeat"
    params = sum(a.scope_totals(s).params for s in fold.scopes)
    macs = sum(a.scope_totals(s).macs for s in fold.scopes)
    shape_in = ", ".join(fmt_shape(a.layers[i].shape) for i in _fold_inputs(a, fold)) or "?"
    lines = []
    if len(fold.scopes) > 1:
        lines.append(f"<b>{_esc(kind)} x {len(fold.scopes)}</b>")
        lines.append(_small(f"{name} … {fold.scopes[-1].path[-1]}", "#525252"))
    else:
        lines.append(f"<b>{_esc(name)}</b>")
        if kind != name:
            lines.append(_small(kind, "#525252"))
    lines.append(_esc(f"{shape_in} → {fmt_shape(fold.layers[-1].shape)}"))
    lines.append(_small(_counts(f"{human(params)} params", macs, "MACs")))
    return _html(lines)


# ----------------------------------------------------------------------------- errors


def failures(a: Analysis, diagnostics: list[Diagnostic]) -> tuple[dict[int, str],
                                                                   list[Diagnostic]]:
    """Layer id -> error message, for layers whose own shape rule failed (inputs known);
    and the errors no drawn layer shows (an unknown op, a bad block call...)."""
    errors = [d for d in diagnostics if d.severity == ERROR]
    shown: set[Diagnostic] = set()
    out: dict[int, str] = {}
    for layer in a.layers:
        node = layer.node
        if layer.shape is not None or any(i is None or a.layers[i].shape is None
                                          for i in node.inputs):
            continue
        spans = {node.span, *node.arg_spans.values()}
        found = next((d for d in errors if d.span in spans), None)
        out[node.id] = found.message if found else "shape error"
        if found is not None:
            shown.add(found)
    return out, [d for d in errors if d not in shown]


# ----------------------------------------------------------------------------- the graph


def _node_attrs(colours: tuple[str, str], **extra: str) -> dict[str, str]:
    fill, border = colours
    return {"fillcolor": fill, "color": border, **extra}


def _cluster_label(a: Analysis, scope: Scope | None, path: tuple[str, ...]) -> str:
    """`inception_3a — 28x28x256` over `inception · 164K params`: two short lines, so the
    edge entering the cluster's top centre rarely crosses them."""
    inside = [x for x in a.layers if x.node.scope[: len(path)] == path]
    shape = fmt_shape(inside[-1].shape) if inside else "?"
    kind = (scope.block if scope else None) or "repeat"
    if scope is not None and scope.kind == "reuse":
        kind += ", reused"
    params = sum(x.params for x in inside)
    return (f"<<b>{_esc(path[-1])}</b> — {_esc(shape)}<br align=\"left\"/>"
            f"{_small(f'{kind} · {human(params)} params')}<br align=\"left\"/>>")


class _Builder:
    """Collects node statements per cluster, then nests the clusters into one Digraph."""

    def __init__(self, a: Analysis, diagnostics: list[Diagnostic], depth: int | None) -> None:
        self.a = a
        self.folded = folds(a, depth)
        self.failed, self.unshown = failures(a, diagnostics)
        self.scopes = {s.path: s for s in a.graph.scopes}
        # cluster path -> ordered items: ("node", name, label, attrs) or ("cluster", path)
        self.items: dict[tuple[str, ...], list[tuple[Any, ...]]] = {(): []}
        self.count = 0

    def key(self, layer_id: int) -> str:
        fold = self.folded.get(layer_id)
        return fold.key if fold is not None else f"n{layer_id}"

    def _place(self, path: tuple[str, ...], item: tuple[Any, ...]) -> None:
        """Put an item in the cluster `path`, opening the enclosing clusters as needed."""
        for n in range(1, len(path) + 1):
            if path[:n] not in self.items:
                self.items[path[:n]] = []
                self.items[path[: n - 1]].append(("cluster", path[:n]))
        self.items[path].append(item)

    def trunk(self) -> set[str]:
        """The drawn nodes on the longest chain through the network, kept in one straight
        line (dot's `group`), so residual shortcuts bend around it."""
        best: dict[str, tuple[int, str | None]] = {}
        for tail, head, _, _ in self.edges():  # edges come in topological order
            length = best.get(tail, (1, None))[0] + 1
            if length > best.get(head, (0, None))[0]:
                best[head] = (length, tail)
        if not best:
            return set()
        node: str | None = max(best, key=lambda k: best[k][0])
        chain = set()
        while node is not None:
            chain.add(node)
            node = best.get(node, (0, None))[1]
        return chain

    def add_nodes(self) -> None:
        trunk = self.trunk()
        seen: set[str] = set()
        for layer in self.a.layers:
            fold = self.folded.get(layer.node.id)
            if fold is not None:
                if fold.key not in seen:
                    seen.add(fold.key)
                    attrs = _node_attrs(FAMILY["block"], shape="box3d", style="filled",
                                        margin="0.15,0.08")
                    if fold.key in trunk:
                        attrs["group"] = "trunk"
                    self._place(fold.scopes[0].path[:-1],
                                ("node", fold.key, fold_label(self.a, fold), attrs))
                continue
            label, attrs = self._layer_node(layer)
            if f"n{layer.node.id}" in trunk:
                attrs["group"] = "trunk"
            self._place(layer.node.scope, ("node", f"n{layer.node.id}", label, attrs))

    def _layer_node(self, layer: Layer) -> tuple[str, dict[str, str]]:
        error = self.failed.get(layer.node.id)
        tooltip = f"{_clip(layer.node.name)} (line {layer.node.span.line})"
        if error is not None:
            attrs = _node_attrs(ERROR_STYLE, penwidth="2", fontcolor="#67000d")
        elif layer.shape is None:
            attrs = _node_attrs(UNKNOWN_STYLE, style="rounded,filled,dashed",
                                fontcolor="#969696")
        else:
            fam = family(layer.node.op.name)
            attrs = _node_attrs(FAMILY[fam])
            if fam == "merge":
                attrs["penwidth"] = "1.6"
            if layer.node.shares is not None:
                attrs["style"] = "rounded,filled,dashed"
        attrs["tooltip"] = tooltip
        shares = layer.node.shares
        return layer_label(layer, error, None if shares is None
                           else self.a.layers[shares].node.name), attrs

    def edges(self) -> Iterator[tuple[str, str, str, bool]]:
        """(tail, head, shape, known) once per pair of drawn nodes, in consumer order, so a
        fork's out-edges follow its paths' source order."""
        done: set[tuple[str, str]] = set()
        for layer in self.a.layers:
            head = self.key(layer.node.id)
            for i in layer.node.inputs:
                if i is None:
                    continue
                tail = self.key(i)
                if tail == head or (tail, head) in done:
                    continue
                done.add((tail, head))
                shape = self.a.layers[i].shape
                yield tail, head, fmt_shape(shape), shape is not None

    def path_heads(self) -> list[list[str]]:
        """The first drawn node of each path out of every fork, to sit on one rank."""
        consumers: dict[str, list[str]] = {}
        for tail, head, _, _ in self.edges():
            layer = self.layer_of(head)
            if layer is None or family(layer.node.op.name) != "merge":
                consumers.setdefault(tail, []).append(head)
        return [heads for heads in consumers.values() if len(heads) > 1]

    def layer_of(self, key: str) -> Layer | None:
        return self.a.layers[int(key[1:])] if key.startswith("n") else None

    def cluster(self, path: tuple[str, ...], depth: int) -> graphviz.Digraph:
        self.count += 1
        sub = graphviz.Digraph(name=f"cluster_{self.count}")
        sub.attr(label=_cluster_label(self.a, self.scopes.get(path), path), labeljust="l",
                 style="rounded,filled", fillcolor=CLUSTER_FILLS[(depth - 1) % 3],
                 color="#969696", fontsize="11")
        self.fill(sub, path, depth)
        return sub

    def fill(self, g: graphviz.Digraph, path: tuple[str, ...], depth: int) -> None:
        for item in self.items.get(path, []):
            if item[0] == "cluster":
                g.subgraph(self.cluster(item[1], depth + 1))
            else:
                _, name, label, attrs = item
                g.node(name, label=label, **attrs)


def _title(a: Analysis, n_errors: int, unshown: list[Diagnostic]) -> str:
    """The network, its input and output, totals; then any errors no layer shows, in red."""
    t = a.totals
    if len(a.graph.inputs) > 1 or len(a.graph.outputs) > 1:
        ports = (f"{len(a.graph.inputs)} input{'s' * (len(a.graph.inputs) > 1)} → "
                 f"{len(a.graph.outputs)} output{'s' * (len(a.graph.outputs) > 1)}")
    else:
        ports = f"{fmt_shape(a.input_shape)} → {fmt_shape(a.output_shape)}"
    text = (f"<<b>{_esc(a.graph.network)}</b>   {_esc(ports)}   {t.params:,} params   "
            f"{human(t.macs)} MACs")
    if n_errors:
        plural = "s" if n_errors > 1 else ""
        text += f'   <font color="#cb181d">{n_errors} error{plural}</font>'
    for d in unshown:
        where = f"line {d.span.line}: " if d.span else ""
        text += f'<br/><font point-size="11" color="#a50f15">{_esc(where + d.message)}</font>'
    return text + ">"


def box_count(a: Analysis, depth: int | None) -> int:
    """The boxes a drawing at `depth` has: one per layer, one per folded block instance
    (what Graphviz's layout time grows with)."""
    folded = folds(a, depth)
    return len({folded[x.node.id].key if x.node.id in folded else f"n{x.node.id}"
                for x in a.layers})


def to_digraph(a: Analysis, diagnostics: list[Diagnostic] | None = None, rankdir: str = "TB",
               depth: int | None = None) -> graphviz.Digraph:
    """The diagram of an analysed network; `depth` folds block instances nested deeper."""
    diagnostics = diagnostics or []
    b = _Builder(a, diagnostics, depth)
    g = graphviz.Digraph(name=_clip(a.graph.network))
    n_errors = sum(d.severity == ERROR for d in diagnostics)
    g.attr(rankdir=rankdir, ordering="out", nodesep="0.25", ranksep="0.3", newrank="true",
           fontname=FONT, label=_title(a, n_errors, b.unshown), labelloc="t", fontsize="14",
           bgcolor="white", pad="0.3")
    g.attr("node", shape="box", style="rounded,filled", fontname=FONT, fontsize="11",
           margin="0.12,0.04", penwidth="1.0")
    g.attr("edge", fontname=FONT, fontsize="8", fontcolor="#525252", color="#525252",
           arrowsize="0.6")
    b.add_nodes()
    b.fill(g, (), 0)
    for heads in b.path_heads():
        with g.subgraph() as same:
            same.attr(rank="same")
            for head in heads:
                same.node(head)
    for tail, head, shape, known in b.edges():
        style = {} if known else {"style": "dashed", "color": "#bdbdbd"}
        g.edge(tail, head, label=f" {shape}", **style)
    if len(a.graph.inputs) > 1 or len(a.graph.outputs) > 1:
        _ports(g, b, a)
    return g


def _ports(g: graphviz.Digraph, b: _Builder, a: Analysis) -> None:
    """Several inputs side by side on the top rank; each output a labelled end below its
    layer, all on the bottom rank."""
    with g.subgraph() as top:
        top.attr(rank="source")
        for port in a.graph.inputs:
            top.node(b.key(port.node))
    with g.subgraph() as bottom:
        bottom.attr(rank="sink")
        several = len(a.graph.outputs) > 1
        for k, port in enumerate(a.graph.outputs, 1):
            shape = fmt_shape(a.layers[port.node].shape)
            head = f"output {k}" if several else "output"
            bottom.node(f"output_{k}", label=_html([f"<b>{head}: {_esc(port.name)}</b>",
                                                    _small(shape)]),
                        **_node_attrs(FAMILY["input"], shape="box", style="rounded,filled,bold"))
    for k, port in enumerate(a.graph.outputs, 1):
        g.edge(b.key(port.node), f"output_{k}")
