"""Backend: `check`'s output, as a table for people and as JSON for tools."""

from __future__ import annotations

from typing import Any

from cnndsl.analysis.graph import Port, Scope
from cnndsl.analysis.infer import BYTES_PER_VALUE, Analysis, Layer, Totals
from cnndsl.analysis.ops.base import fmt_shape
from cnndsl.analysis.pipeline import Result

_STYLE = {"head": "\033[1m", "block": "\033[1;36m", "dim": "\033[2m", "total": "\033[1m"}
_RESET = "\033[0m"


def human(n: int) -> str:
    """1234 -> 1.23K, 3868726272 -> 3.87G: short counts for the table."""
    units = (("T", 10**12), ("G", 10**9), ("M", 10**6), ("K", 10**3), ("", 1))
    for i, (unit, size) in enumerate(units):
        if n >= size:
            short = float(f"{n / size:.3g}")
            if short >= 1000 and i:  # 999,999 rounds up to the next unit: 1M, not 1e+03K
                unit, short = units[i - 1][0], short / 1000
            return f"{short:g}{unit}"
    return str(n)


def human_bytes(n: int) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n} B"


def _rf(layer: Layer) -> str:
    if layer.field is None:
        return "?"
    h, w = layer.field.size
    return str(h) if h == w else f"{h}x{w}"


# ----------------------------------------------------------------------------- JSON


def _shape(shape: tuple[int, ...] | None) -> list[int] | None:
    return list(shape) if shape is not None else None


def to_json(result: Result, filename: str) -> dict[str, Any]:
    """The schema other tools rely on (docs/language.md, "check --json")."""
    a = result.analysis
    diagnostics = [d.to_json() for d in result.diagnostics]
    if a is None:
        return {"file": filename, "network": None, "input_shape": None, "output_shape": None,
                "inputs": [], "outputs": [], "params": None, "macs": None, "flops": None,
                "memory": None, "layers": [], "blocks": [],
                "diagnostics": diagnostics}
    totals = a.totals
    return {
        "file": filename,
        "network": a.graph.network,
        "input_shape": _shape(a.input_shape),
        "output_shape": _shape(a.output_shape),
        "inputs": _ports_json(a, a.graph.inputs),
        "outputs": _ports_json(a, a.graph.outputs),
        "params": {"total": totals.params, "trainable": totals.trainable,
                   "non_trainable": totals.non_trainable},
        "macs": totals.macs,
        "flops": 2 * totals.macs,
        "memory": {"params_bytes": totals.params * BYTES_PER_VALUE,
                   "peak_activation_bytes": a.peak_activation_bytes},
        "layers": [_layer_json(a, layer) for layer in a.layers],
        "blocks": [_block_json(a, s) for s in a.graph.scopes],
        "diagnostics": diagnostics,
    }


def _ports_json(a: Analysis, ports: list[Port]) -> list[dict[str, Any]]:
    return [{"name": name, "shape": _shape(shape)} for name, shape in a.port_shapes(ports)]


def _layer_json(a: Analysis, layer: Layer) -> dict[str, Any]:
    node = layer.node
    entry = {
        "name": node.name,
        "op": node.op.name,
        "keras": node.op.keras,
        "keras_name": node.keras_name,
        "scope": list(node.scope),
        "output_shape": _shape(layer.shape),
        "params": layer.params,
        "trainable_params": layer.trainable,
        "macs": layer.macs,
        "receptive_field": list(layer.field.size) if layer.field else None,
        "unshared_params": _unshared_params(layer),
        "line": node.span.line,
        "inputs": [a.layers[i].node.name if i is not None else None for i in node.inputs],
    }
    if node.shares is not None:  # `reuse`: the layer whose weights it applies again
        entry["shares"] = a.layers[node.shares].node.name
    return entry


def _unshared_params(layer: Layer) -> int | None:
    """What a `conv` would cost without weight sharing (as `local`): its weights and biases
    once per output position. The seed's lesson, 3,860 against 756,560, for any network."""
    if layer.node.op.name != "conv" or layer.shape is None:
        return None
    return layer.shape[0] * layer.shape[1] * layer.params


def _block_json(a: Analysis, scope: Scope) -> dict[str, Any]:
    t = a.scope_totals(scope)
    return {"name": "/".join(scope.path), "kind": scope.kind, "block": scope.block,
            "params": t.params, "trainable_params": t.trainable, "macs": t.macs,
            "line": scope.span.line}


# ----------------------------------------------------------------------------- table


class _Table:
    def __init__(self, analysis: Analysis, colour: bool) -> None:
        self.a = analysis
        self.colour = colour
        self.rows: list[tuple[str, list[str]]] = []
        self.scopes = {s.path: s for s in analysis.graph.scopes}

    def style(self, kind: str, text: str) -> str:
        return f"{_STYLE[kind]}{text}{_RESET}" if self.colour and kind in _STYLE else text

    def build(self) -> list[tuple[str, list[str]]]:
        open_path: tuple[str, ...] = ()
        for layer in self.a.layers:
            path = layer.node.scope
            common = 0
            while common < min(len(open_path), len(path)) and open_path[common] == path[common]:
                common += 1
            for depth in range(common, len(path)):
                self._block_row(path[: depth + 1])
            open_path = path
            indent = "  " * len(path)
            self.rows.append(("layer", [
                indent + layer.node.local_name, layer.node.op.name, fmt_shape(layer.shape),
                f"{layer.params:,}", human(layer.macs), _rf(layer)]))
        return self.rows

    def _block_row(self, path: tuple[str, ...]) -> None:
        scope = self.scopes[path]
        t: Totals = self.a.scope_totals(scope)
        out = fmt_shape(self.a.scope_output(scope))
        label = scope.block or "repeat"
        self.rows.append(("block", ["  " * (len(path) - 1) + path[-1], label, out,
                                    f"{t.params:,}", human(t.macs), ""]))

    def render(self) -> str:
        headers = ["layer", "op", "output", "params", "MACs", "RF"]
        rows = self.build()
        widths = [max(len(h), *(len(r[i]) for _, r in rows)) for i, h in enumerate(headers)]
        right = {3, 4, 5}

        def line(cells: list[str]) -> str:
            return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                             for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

        rule = "-" * len(line(["" for _ in headers]).ljust(sum(widths) + 10))
        out = [self.style("head", line(headers)), rule]
        out += [self.style("block", line(r)) if kind == "block" else line(r) for kind, r in rows]
        out.append(rule)
        return "\n".join(out)


def _ports_line(a: Analysis) -> str:
    """`Input 28x28x1 -> output 10`, or with names when there are several."""
    if len(a.graph.inputs) <= 1 and len(a.graph.outputs) <= 1:
        return f"Input {fmt_shape(a.input_shape)} -> output {fmt_shape(a.output_shape)}"

    def named(ports: list[Port]) -> str:
        return ", ".join(f"{n} {fmt_shape(s)}" for n, s in a.port_shapes(ports))

    return f"Inputs {named(a.graph.inputs)} -> outputs {named(a.graph.outputs)}"


def table(analysis: Analysis, filename: str, colour: bool = False) -> str:
    t = analysis.totals
    tab = _Table(analysis, colour)
    head = tab.style("head", f"network {analysis.graph.network}") + f"  ({filename})"
    footer = [
        f"Total params:           {t.params:,} ({human_bytes(t.params * BYTES_PER_VALUE)})",
        f"Trainable params:       {t.trainable:,}",
        f"Non-trainable params:   {t.non_trainable:,}",
        f"MACs:                   {t.macs:,} ({human(t.macs)})",
        f"FLOPs (2 x MACs):       {2 * t.macs:,} ({human(2 * t.macs)})",
        f"Peak activation memory: {human_bytes(analysis.peak_activation_bytes)} "
        "(batch 1, float32)",
        f"{_ports_line(analysis)}, {len(analysis.layers)} layers",
    ]
    return "\n".join([head, "", tab.render(), *(tab.style("total", f) for f in footer)])
