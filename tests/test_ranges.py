"""Argument ranges (issue 17): declared once in the op's ArgSpec, read by check and shown in
docs/language.md; where Keras refuses a value, check refuses it too."""

from __future__ import annotations

import pytest
from conftest import ROOT

from cnndsl.analysis.ops import OPS
from cnndsl.analysis.pipeline import analyse


def errors(line: str) -> list[str]:
    return [d.message for d in analyse(f"network n {{ input 8x8x4; {line} }}").diagnostics]


RANGED = [(op, spec) for op in OPS.values() for spec in op.args if spec.bounds()]


def test_some_arguments_declare_ranges():
    assert {(op.name, spec.name) for op, spec in RANGED} >= {
        ("batchnorm", "momentum"), ("batchnorm", "epsilon"), ("dropout", "rate")}


@pytest.mark.parametrize("op, spec", RANGED, ids=lambda x: getattr(x, "name", ""))
def test_docs_show_each_range(op, spec):
    docs = (ROOT / "docs" / "language.md").read_text()
    section = next(part for part in docs.split("\n### ")[1:]
                   if part.split("\n")[0].count(f"`{op.name}`"))
    assert (f"| `{spec.name}` | {spec.kind}, {spec.bounds()} |" in section
            or (f"({'positional, ' if spec.positional else ''}{spec.kind}" in section
            and spec.bounds() in section.replace("\n", " ")))


@pytest.mark.parametrize("line, message", [
    ("batchnorm momentum=1.5", "`momentum` must be a number from 0 to 1, not `1.5`"),
    ("batchnorm momentum=-0.1", "`momentum` must be a number from 0 to 1, not `-0.1`"),
    ("batchnorm epsilon=0", "`epsilon` must be a number above 0, not `0`"),
    ("batchnorm epsilon=-1e-3", "`epsilon` must be a number above 0, not `-0.001`"),
])
def test_out_of_range_is_refused(line, message):
    assert errors(line) == [message]


@pytest.mark.parametrize("line", ["batchnorm momentum=0", "batchnorm momentum=1",
                                  "batchnorm epsilon=1e-9", "dropout 0", "conv 4 1 groups=4"])
def test_bounds_are_accepted(line):
    assert errors(line) == []


@pytest.fixture(scope="module")
def keras():
    return pytest.importorskip("keras")


@pytest.mark.parametrize("line, layer", [
    ("dense 0", lambda k: k.layers.Dense(0)),
    ("conv 0 3x3", lambda k: k.layers.Conv2D(0, 3)),
    ("conv 4 3x3 groups=0", lambda k: k.layers.Conv2D(4, 3, groups=0)),
    ("dropout 1.5", lambda k: k.layers.Dropout(1.5)),
    ("dropout -0.5", lambda k: k.layers.Dropout(-0.5)),
])
def test_where_keras_refuses_check_refuses(line, layer, keras):
    with pytest.raises(ValueError):
        layer(keras)
    assert errors(line)


def test_keras_accepts_a_rate_of_one_which_drops_everything(keras):
    """Dropout(1.0) builds, and zeroes every value while training (Keras scales the kept
    values by 1 / (1 - rate)): not a layer anyone means, so check stops below 1."""
    layer = keras.layers.Dropout(1.0)
    out = layer(keras.ops.ones((1, 4)), training=True)
    assert float(keras.ops.max(keras.ops.abs(out))) == 0.0
    assert errors("dropout 1") == ["`rate` must be a number from 0 up to (not including) 1, "
                                   "not `1`"]


@pytest.mark.parametrize("kwargs", [{"momentum": 1.5}, {"momentum": -0.1}, {"epsilon": 0.0},
                                    {"epsilon": -1e-3}])
def test_keras_accepts_what_the_layer_does_not_mean(kwargs, keras):
    """BatchNormalization takes any number: the ranges are the maths' (an exponential moving
    average needs a momentum from 0 to 1; a zero variance divides by a zero epsilon)."""
    layer = keras.layers.BatchNormalization(**kwargs)
    layer.build((None, 4))
    key, value = next(iter(kwargs.items()))
    assert getattr(layer, key) == value
    assert errors("batchnorm " + " ".join(f"{k}={v}" for k, v in kwargs.items()))
