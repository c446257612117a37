"""Keras layer names: one mapping from `check`'s names, one-to-one, accepted by every Keras
backend (docs/build.md, "Layer names"). Pure: no Keras here; tests/test_backends.py builds
the models on JAX and PyTorch with these names."""

from __future__ import annotations

import json

import pytest
from conftest import example_networks, network_id, run_cnndsl
from hypothesis import given
from hypothesis import strategies as st

from cnndsl.analysis.ops.base import KERAS_SEP, PAD_SUFFIX, keras_name
from cnndsl.analysis.pipeline import analyse

NAME = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,6}", fullmatch=True)  # the grammar's NAME
PATH = st.lists(NAME, min_size=1, max_size=4).map("/".join)


@given(st.lists(PATH, min_size=2, max_size=8, unique=True))
def test_different_check_names_never_share_a_keras_name(names):
    assert len({keras_name(n) for n in names}) == len(names)


@given(PATH)
def test_a_keras_name_reads_back_as_the_check_name(name):
    mapped = keras_name(name)
    assert "/" not in mapped and "." not in mapped  # Keras's and PyTorch's forbidden characters
    assert mapped.replace(KERAS_SEP, "/") == name


def keras_layer_names(source: str, network: str | None = None) -> list[str]:
    """Every Keras layer name a network makes: a node's, and its extra layers'
    (`pad=`'s ZeroPadding2D); a `reuse` makes none of its own."""
    result = analyse(source, network)
    assert result.ok, [d.message for d in result.diagnostics]
    return [layer.node.keras_name + spec.suffix for layer in result.analysis.layers
            if layer.node.shares is None
            for spec in layer.node.op.to_keras(layer.node.args)]


@pytest.mark.parametrize("case", example_networks(), ids=network_id)
def test_every_example_has_distinct_keras_names(case):
    path, network = case
    names = keras_layer_names(path.read_text(), network)
    assert len(set(names)) == len(names)


def test_a_layer_named_like_a_padding_layer_keeps_its_own_name():
    """`conv_1_pad` beside a padded `conv_1`, and a block instance `c` holding a layer
    `pad` beside a padded layer: each a Keras name of its own (with `_pad` and `.`, the
    first pair clashed)."""
    source = ("block b() { zeropad 1 as pad }\n"
              "network n {\n  input 8x8x1\n  conv 4 3x3 pad=1\n  zeropad 1 as conv_1_pad\n"
              "  b() as c\n  conv 4 3x3 pad=1 as d\n  flatten\n  dense 2\n}\n")
    names = keras_layer_names(source)
    assert names[:5] == ["input", "conv_1" + PAD_SUFFIX, "conv_1", "conv_1_pad", "c-pad"]
    assert "d-pad" in names and len(set(names)) == len(names)


def test_check_json_gives_the_keras_name():
    data = json.loads(run_cnndsl("check", "--json", "examples/inception_module.cnn").stdout)
    layers = {layer["name"]: layer["keras_name"] for layer in data["layers"]}
    assert layers["inception_3a/conv_1"] == "inception_3a-conv_1"
    assert layers["input"] == "input"
