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


Row = tuple[str, int, list[str]]  # kind ("layer" or "block"), nesting level, cells


def rows(analysis: Analysis, depth: int | None = None) -> list[Row]:
    """The table's rows in layer order: a block row opens each block instance (with its
    totals), its layers one level deeper. With `depth`, rows nested deeper than `depth`
    levels are left out (the top level is 1), so an instance at level `depth` stands for
    its whole contents in one row, as torchinfo's `depth=` does; its RF is its output's."""
    scopes = {s.path: s for s in analysis.graph.scopes}
    last = {layer.node.scope[:n]: layer for layer in analysis.layers
            for n in range(1, len(layer.node.scope) + 1)}
    out: list[Row] = []
    open_path: tuple[str, ...] = ()
    for layer in analysis.layers:
        path = layer.node.scope if depth is None else layer.node.scope[:depth]
        common = 0
        while common < min(len(open_path), len(path)) and open_path[common] == path[common]:
            common += 1
        for n in range(common + 1, len(path) + 1):
            scope = scopes[path[:n]]
            t: Totals = analysis.scope_totals(scope)
            out.append(("block", n - 1, [path[n - 1], scope.block or "repeat",
                                         fmt_shape(analysis.scope_output(scope)),
                                         f"{t.params:,}", human(t.macs),
                                         _rf(last[path[:n]]) if n == depth else ""]))
        open_path = path
        if depth is None or len(layer.node.scope) < depth:
            out.append(("layer", len(path), [
                layer.node.local_name, layer.node.op.name, fmt_shape(layer.shape),
                f"{layer.params:,}", human(layer.macs), _rf(layer)]))
    return out


_HEADERS = ["layer", "op", "output", "params", "MACs", "RF"]
_RIGHT = {3, 4, 5}  # the columns of numbers


def _style(kind: str, text: str, colour: bool) -> str:
    return f"{_STYLE[kind]}{text}{_RESET}" if colour and kind in _STYLE else text


def _render_rows(table: list[Row], colour: bool) -> list[str]:
    cells = [["  " * level + r[0], *r[1:]] for _, level, r in table]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(_HEADERS)]

    def line(row: list[str]) -> str:
        return "  ".join(c.rjust(w) if i in _RIGHT else c.ljust(w)
                         for i, (c, w) in enumerate(zip(row, widths, strict=True))).rstrip()

    rule = "-" * len(line(["" for _ in _HEADERS]).ljust(sum(widths) + 10))
    out = [_style("head", line(_HEADERS), colour), rule]
    out += [_style(kind, line(row), colour) if kind == "block" else line(row)
            for (kind, _, _), row in zip(table, cells, strict=True)]
    out.append(rule)
    return out


def _ports_line(a: Analysis) -> str:
    """`Input 28x28x1 -> output 10`, or with names when there are several."""
    if len(a.graph.inputs) <= 1 and len(a.graph.outputs) <= 1:
        return f"Input {fmt_shape(a.input_shape)} -> output {fmt_shape(a.output_shape)}"

    def named(ports: list[Port]) -> str:
        return ", ".join(f"{n} {fmt_shape(s)}" for n, s in a.port_shapes(ports))

    return f"Inputs {named(a.graph.inputs)} -> outputs {named(a.graph.outputs)}"


def _totals(analysis: Analysis) -> list[tuple[str, str]]:
    t = analysis.totals
    return [
        ("Total params", f"{t.params:,} ({human_bytes(t.params * BYTES_PER_VALUE)})"),
        ("Trainable params", f"{t.trainable:,}"),
        ("Non-trainable params", f"{t.non_trainable:,}"),
        ("MACs", f"{t.macs:,} ({human(t.macs)})"),
        ("FLOPs (2 x MACs)", f"{2 * t.macs:,} ({human(2 * t.macs)})"),
        ("Peak activation memory",
         f"{human_bytes(analysis.peak_activation_bytes)} (batch 1, float32)"),
    ]


def _last_line(analysis: Analysis) -> str:
    return f"{_ports_line(analysis)}, {len(analysis.layers)} layers"


def table(analysis: Analysis, filename: str, colour: bool = False,
          depth: int | None = None) -> str:
    """`check`'s table; `depth` folds block instances nested deeper (see `rows`)."""
    head = _style("head", f"network {analysis.graph.network}", colour) + f"  ({filename})"
    footer = [f"{label + ':':<24}{value}" for label, value in _totals(analysis)]
    footer.append(_last_line(analysis))
    return "\n".join([head, "", *_render_rows(rows(analysis, depth), colour),
                      *(_style("total", f, colour) for f in footer)])


# ----------------------------------------------------------------------------- HTML


def html_table(analysis: Analysis, filename: str, depth: int | None = None) -> str:
    """The table for a notebook (Jupyter's `_repr_html_`): block rows bold, their layers
    indented under them, the totals below. Every text is escaped."""
    from html import escape

    def cell(tag: str, i: int, text: str, level: int = 0) -> str:
        style = "text-align:right" if i in _RIGHT else "text-align:left"
        if level:
            style += f";padding-left:{0.5 + 1.25 * level:g}em"
        return f'<{tag} style="{style}">{escape(text)}</{tag}>'

    head = "".join(cell("th", i, h) for i, h in enumerate(_HEADERS))
    body = []
    for kind, level, row in rows(analysis, depth):
        cells = "".join(cell("td", i, text, level if i == 0 else 0) for i, text in enumerate(row))
        body.append(f'<tr style="font-weight:bold">{cells}</tr>' if kind == "block"
                    else f"<tr>{cells}</tr>")
    totals = "".join(f'<tr><td style="text-align:left">{escape(label)}</td>'
                     f'<td style="text-align:left">{escape(value)}</td></tr>'
                     for label, value in _totals(analysis))
    return (f'<div class="cnndsl-network"><p><b>network {escape(analysis.graph.network)}'
            f"</b> ({escape(filename)})</p>\n"
            f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n" + "\n".join(body)
            + f"\n</tbody>\n</table>\n<table>{totals}</table>\n"
            f"<p>{escape(_last_line(analysis))}</p></div>")
