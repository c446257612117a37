"""The graph language: named tensors (`as x`, `@x`), several inputs and outputs, `reuse`
and tensor parameters. Each network is checked against the Keras model the runtime builds
from it, and the Siamese example against an independently written Keras model."""

from __future__ import annotations

import os
import re
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import pytest
from test_runtime import analysed, assert_matches

from cnndsl.analysis.pipeline import analyse
from cnndsl.backends import report
from cnndsl.backends.runtime import build_model

UNET_LIKE = """
network unet_like {
  input 32x32x3
  conv 8 3x3 same relu as enc1
  maxpool 2x2
  conv 16 3x3 same relu as enc2
  maxpool 2x2
  conv 32 3x3 same relu
  up(16)
  concat { | @enc2 | conv 16 1x1 }
  conv 16 3x3 same relu
  up(8)
  concat { | @enc1; conv 4 1x1 | identity; conv 4 3x3 same }
  conv 2 1x1 softmax
}
# Twice the height and width, with the channels given (a stand-in for `upsample`).
block up(filters) {
  conv 4 * filters 1x1
  reshape (2 * in.h, 2 * in.w, filters)
}
"""


GRAPH_SOURCES = {
    "cells": """
block cell(prev, filters) {
  conv filters 1x1 as here
  concat { | @prev; conv filters 1x1 | @here }
  conv prev.c 1x1
}
network cells {
  input 8x8x4 as x0
  conv 6 1x1 as x1
  cell(@x0, 4) as c1
  cell(@x1, 5) as c2
  cell(prev=@c1, filters=3)
  globalavgpool as main
  @c2
  flatten
  dense 3 softmax as aux
  input 8x8x4 as other
  flatten as input
  concat @aux @input
  dense 2 as extra
  outputs @main @aux @extra
}""",
    "reuse": """
block tower() {
  zeropad 1
  conv 4 3x3 pad=1 relu
  batchnorm
  flatten
  dense 8
}
network shared {
  input 12x12x1 as a
  tower() as ta
  dense 8 as head
  input 12x12x1 as b
  reuse @ta as tb
  reuse @head as hb
  subtract @head @hb
}""",
    "unet_like": UNET_LIKE,
    # `in` at the top is the first input: written layer by layer
    "two_inputs_in": """
network n {
  input 4x4x2 as a
  input 4x4x3 as b
  conv in.c 1x1 as c
  concat @a @c @in
}""",
    # named tensors at the end of loop bodies and block functions, `@in`, expanded blocks
    "repeat_named_last": """
network n {
  input 8x8x4
  repeat 3 {
    conv 4 1x1 as a
    add @a @in as s
    @s
  }
  repeat 2 { conv 4 1x1 as b; add @b @in as t; @t }
}""",
    "block_named_last": """
block f(k) {
  conv k 1x1 as a
  add @a @in as out
  @out
}
network n {
  input 8x8x4
  f(4)
  f(4) as g
  add @g @in
  repeat 2 { f(4) }
}""",
    "expanded_block_with_refs": """
block f(act) {
  conv 4 1x1 act as a
  add { | @a | @in }
}
network n {
  input 8x8x4
  f(relu)
  f(sigmoid)
}""",
    "reuse_of_reuse": """
network n {
  input 8x8x4 as i
  conv 4 1x1 as c
  reuse @c as d
  reuse @d as e
  add @c @e
}""",
    "at_in_block": """
block f() { conv 2 1x1 as q; @in; conv 3 1x1 as z; concat @z @q }
network n { input 4x4x1; f(); f() }
""",
}


def json_of(source: str) -> dict:
    result = analyse(source)
    assert result.ok, [d.message for d in result.diagnostics]
    return report.to_json(result, "net.cnn")


def test_references_in_paths_and_operands_match_keras():
    source = """
network skips {
  input 16x16x3
  conv 8 3x3 same relu as a
  conv 8 3x3 same relu as b
  conv 8 3x3 same as c
  add @a @c as s
  concat @s @b axis=-1 as j
  @b
  conv 8 1x1 as d
  concat { | @a | @d; conv 8 1x1 | @j }
  globalavgpool
  dense 3 softmax
}"""
    analysis = analysed(source)
    assert_matches(analysis)
    layers = {layer["name"]: layer for layer in json_of(source)["layers"]}
    assert layers["s"]["inputs"] == ["a", "c"]
    assert layers["j"]["inputs"] == ["s", "b"]
    assert layers["d"]["inputs"] == ["b"]
    assert layers["concat_1"]["inputs"] == ["a", "conv_1", "j"]


def test_several_inputs_and_outputs_reach_the_json_and_keras():
    source = """
network two_heads {
  input 8x8x1 as left
  flatten as lf
  input 4x4x2 as right
  flatten as rf
  concat @lf @rf
  dense 10 softmax as main
  @lf
  dense 2 softmax as aux
  outputs @aux @main
}"""
    data = json_of(source)
    assert data["inputs"] == [{"name": "left", "shape": [8, 8, 1]},
                              {"name": "right", "shape": [4, 4, 2]}]
    assert data["outputs"] == [{"name": "aux", "shape": [2]}, {"name": "main", "shape": [10]}]
    assert data["input_shape"] is None and data["output_shape"] is None
    analysis = analysed(source)
    assert_matches(analysis)
    model = build_model(analysis)
    assert [t.name for t in model.inputs] == ["left", "right"]
    assert [tuple(t.shape[1:]) for t in model.outputs] == [(2,), (10,)]
    keras.backend.clear_session()


def test_one_input_network_keeps_its_shapes_and_gains_ports():
    data = json_of("network n {\n  input 28x28x1\n  flatten\n  dense 10 as out\n}")
    assert data["input_shape"] == [28, 28, 1] and data["output_shape"] == [10]
    assert data["inputs"] == [{"name": "input", "shape": [28, 28, 1]}]
    assert data["outputs"] == [{"name": "out", "shape": [10]}]
    assert data["layers"][0]["inputs"] == [] and data["layers"][1]["inputs"] == ["input"]


def test_reuse_counts_weights_once_and_macs_per_application():
    source = GRAPH_SOURCES["reuse"]
    analysis = analysed(source)
    assert_matches(analysis)  # Keras: the shared layers are one set of weights
    data = json_of(source)
    layers = {layer["name"]: layer for layer in data["layers"]}
    assert layers["tb/conv_1"]["shares"] == "ta/conv_1" and layers["tb/conv_1"]["params"] == 0
    assert layers["hb"]["shares"] == "head"
    assert layers["tb/conv_1"]["macs"] == layers["ta/conv_1"]["macs"] > 0
    once = json_of(source.replace("reuse @ta as tb\n  reuse @head as hb\n  subtract @head @hb",
                                  "@head"))
    assert data["params"] == once["params"]
    assert data["macs"] == 2 * once["macs"]


def test_tensor_parameters_and_two_previous_cells():
    source = GRAPH_SOURCES["cells"]
    analysis = analysed(source)
    assert_matches(analysis)
    layers = {layer["name"]: layer for layer in json_of(source)["layers"]}
    assert layers["c2/concat_1"]["inputs"] == ["c2/conv_1", "c2/here"]
    assert layers["c2/conv_1"]["inputs"] == ["x1"]
    assert layers["c2/conv_2"]["output_shape"] == [8, 8, 6]  # prev.c reads x1


def test_nasnet_style_cells_read_the_two_previous_cells():
    source = """
block cell(p, pp, filters) {
  @pp
  conv filters 1x1 as squeezed
  @p
  conv filters 1x1
  add { | identity | @squeezed }
}
network nas {
  input 8x8x3 as x0
  conv 6 1x1 as x1
  cell(@x1, @x0, 4) as c1
  cell(@c1, @x1, 4) as c2
  cell(@c2, @c1, 4)
}"""
    analysis = analysed(source)
    assert_matches(analysis)
    layers = {layer["name"]: layer for layer in json_of(source)["layers"]}
    assert layers["c2/squeezed"]["inputs"] == ["x1"] and layers["c2/conv_1"]["inputs"] == [
        "c1/add_1"]


def test_unet_shaped_skips_match_keras():
    assert_matches(analysed(UNET_LIKE))


def test_receptive_field_and_peak_memory_follow_references():
    chain = json_of("network n {\n  input 32x32x1\n  conv 1 5x5 same as a\n"
                    "  conv 1 3x3 same\n  add @a @in\n}")
    layers = {layer["name"]: layer for layer in chain["layers"]}
    assert layers["add_1"]["receptive_field"] == [5, 5]  # the widest path: through `a`
    # `in` (32x32x1) stays alive until the add reads it: input + a + conv_1 at once
    assert chain["memory"]["peak_activation_bytes"] == 3 * 32 * 32 * 4


@pytest.mark.parametrize("source, message", [
    ("network n {\n input 4x4x1\n @nope\n}", "unknown tensor `@nope`"),
    ("network n {\n input 4x4x1\n reuse @in\n}", "`@in` is an input: it has no weights to share"),
    ("network n {\n input 4x4x1 as x\n flatten\n outputs @x\n}",
     "`flatten_1` is computed but never used"),
])
def test_more_graph_diagnostics(source, message):
    result = analyse(source)
    assert message in [d.message for d in result.diagnostics]


# ----------------------------------------------------------------------------- build


@pytest.mark.parametrize("name", sorted(GRAPH_SOURCES))
def test_built_module_equals_check(name, tmp_path):
    from test_build import assert_matches_check, build, load_module

    source = GRAPH_SOURCES[name]
    path = build(tmp_path, source, f"{name}.cnn")
    keras.backend.clear_session()
    assert_matches_check(keras, load_module(path).build_model(), source)
    keras.backend.clear_session()
    code = path.read_text()
    if name == "cells":  # functions with tensor parameters; named tensors are variables
        assert "def cell(inputs, prev, filters, *, name):" in code
        assert "c2 = cell(c1, x1_, 5, name=\"c2\")" in code
        assert "outputs=[main, aux, extra]" in code
    if name == "reuse":  # each shared layer made once, called twice
        assert code.count("layers.Dense(units=8") == 2 and "x13 = layer6_0(x12)" in code
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "--isolated", str(path)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout
    proc = subprocess.run([sys.executable, "-m", "ruff", "format", "--isolated", "--check",
                           str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


# ----------------------------------------------------------------------------- draw


def edges_of(graph: dict) -> set[tuple[str, str]]:
    """(tail, head) node names of `dot -Tjson`'s edges."""
    name = {o["_gvid"]: o["name"] for o in graph["objects"]}
    return {(name[e["tail"]], name[e["head"]]) for e in graph.get("edges", [])}


def test_draw_inputs_on_top_outputs_at_the_bottom_shared_layers_marked(tmp_path):
    """Laid out by the real `dot`: both inputs share the top rank, every output's end node
    the bottom one; a reference is an edge from the named layer; reused layers say whose
    weights they share."""
    from test_draw import draw, layout, nodes

    src = tmp_path / "cells.cnn"
    src.write_text(GRAPH_SOURCES["cells"])
    out = tmp_path / "cells.dot"
    assert draw(src, out) == 0
    graph = layout(out)
    pos = nodes(graph)
    names = {o["name"]: o.get("label", "") for o in graph["objects"] if "pos" in o}
    analysis = analysed(GRAPH_SOURCES["cells"])
    key = {layer.node.name: f"n{layer.node.id}" for layer in analysis.layers}
    ys = [y for _, y in pos.values()]
    assert pos[key["x0"]][1] == pos[key["other"]][1] == max(ys)  # dot's y grows upwards
    ends = [n for n in pos if n.startswith("output_")]
    assert len(ends) == 3 and {pos[n][1] for n in ends} == {min(ys)}
    assert "output 1: main" in names["output_1"]
    assert (key["x1"], key["c2/conv_1"]) in edges_of(graph)  # `cell(@x1, 5)`: prev is x1

    src.write_text(GRAPH_SOURCES["reuse"])
    assert draw(src, out) == 0
    graph = layout(out)
    labels = {o["name"]: o.get("label", "") for o in graph["objects"] if "pos" in o}
    analysis = analysed(GRAPH_SOURCES["reuse"])
    shared = [f"n{layer.node.id}" for layer in analysis.layers if layer.node.shares is not None]
    assert shared and all("shares" in labels[n] for n in shared)


def test_the_graph_section_of_the_language_docs_checks():
    """Every whole program in docs/language.md's graph section checks without a diagnostic
    and builds in Keras with check's numbers."""
    from conftest import ROOT

    text = (ROOT / "docs" / "language.md").read_text()
    section = text.split("## Graphs: named tensors", 1)[1].split("\n## ", 1)[0]
    programs = [b for b in re.findall(r"```\n(.*?)```", section, re.S) if "network " in b]
    assert len(programs) == 3
    for program in programs:
        result = analyse(program)
        assert result.ok and not result.diagnostics, result.diagnostics
        assert_matches(result.analysis)


MISTAKES = [
    ('network n {\n input 4x4x1\n reuse\n}',
     'reuse_none'),
    ('network n {\n input 4x4x1\n reuse 3\n}',
     'reuse_num'),
    ('network n {\n input 4x4x1 as a\n reuse @a @a\n}',
     'reuse_two'),
    ('network n {\n input 4x4x1\n outputs\n}',
     'outputs_empty'),
    ('network n {\n input 4x4x1\n}\ntrain { loss @x }',
     'train_ref'),
    ('block f(p=@x) { @p }\nnetwork n {\n input 4x4x1 as x\n f()\n}',
     'default_ref'),
    ('block f(p) { add @p @in }\nnetwork n {\n input 4x4x1 as x\n relu\n f(@x) as g\n reuse @g\n}',
     'reuse_block_two_inputs'),
    ('block f() { @in }\nnetwork n {\n input 4x4x1\n f() as g\n reuse @g\n}',
     'reuse_empty_block'),
    ('network n {\n input 4x4x1 as x\n repeat @x { relu }\n}',
     'ref_in_repeat_count'),
    ('block f() { outputs @in }\nnetwork n {\n input 4x4x1\n f()\n}',
     'outputs_in_block'),
    ('network n {\n @x\n input 4x4x1 as x\n}',
     'ref_before_input'),
    ('network n {\n reuse @x\n input 4x4x1 as x\n}',
     'reuse_before_input'),
    ('network n {\n input 4x4x1\n conv 9 9x9 as bad\n outputs @bad\n}',
     'outputs_error_tensor'),
    ('network n {\n input 4x4x1 as a\n input 5x5x1 as b\n add @a @b\n}',
     'two_inputs_draw_error'),
    ('network n {\n input 4x4x1 as a\n input @a as b\n}',
     'input_with_ref'),
    ('network n {\n input 4x4x1 as a\n concat @a { | identity | identity }\n}',
     'concat_ref_and_brace'),
]


@pytest.mark.parametrize("source, name", MISTAKES, ids=[m[1] for m in MISTAKES])
def test_graph_mistakes_are_located_errors(source, name):
    from cnndsl.backends.draw import to_digraph

    result = analyse(source)
    assert not result.ok
    assert all(d.span is not None and d.hint for d in result.diagnostics if d.severity == "error"
               and "window" not in d.message and "broadcast" not in d.message), name
    if result.analysis is not None:  # the diagram of a broken graph draws too
        assert to_digraph(result.analysis, result.diagnostics).source
