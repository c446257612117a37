"""The model zoo equals Keras: every example that mirrors a keras.applications model has
the same totals, output shape, and weight-bearing layers (shape and parameter count)."""

from __future__ import annotations

import os

import numpy as np
import pytest
from conftest import EXAMPLES

from cnndsl.pipeline import analyse

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ZOO = {
    "vgg16.cnn": "VGG16",
    "resnet50.cnn": "ResNet50",
    "inception_v3.cnn": "InceptionV3",
    "densenet121.cnn": "DenseNet121",
    "mobilenet_v2.cnn": "MobileNetV2",
}


def _size(weights) -> int:
    return int(sum(np.prod(w.shape) for w in weights))


def keras_summary(name: str) -> dict:
    import keras

    keras.backend.clear_session()
    model = getattr(keras.applications, name)(weights=None)
    layers = sorted((tuple(layer.output.shape[1:]), layer.count_params())
                    for layer in model.layers if layer.count_params())
    return {"trainable": _size(model.trainable_weights),
            "non_trainable": _size(model.non_trainable_weights),
            "output": tuple(model.output.shape[1:]), "layers": layers}


def cnndsl_summary(path) -> dict:
    result = analyse(path.read_text())
    assert result.ok, result.diagnostics
    a = result.analysis
    layers = sorted((layer.shape, layer.params) for layer in a.layers if layer.params)
    return {"trainable": a.totals.trainable, "non_trainable": a.totals.non_trainable,
            "output": a.output_shape, "layers": layers}


@pytest.mark.parametrize("example", sorted(ZOO), ids=lambda e: e.removesuffix(".cnn"))
def test_zoo_equals_keras_applications(example):
    ours = cnndsl_summary(EXAMPLES / example)
    theirs = keras_summary(ZOO[example])
    assert ours["output"] == theirs["output"]
    assert (ours["trainable"], ours["non_trainable"]) == (
        theirs["trainable"], theirs["non_trainable"])
    assert ours["layers"] == theirs["layers"]


PAPER_TOTALS = {  # the totals each paper-only example states in its header (GoogLeNet's
    "lenet5.cnn": 61_706,  # is checked against a hand-written Keras model instead:
}                          # tests/test_googlenet_oracle.py)


@pytest.mark.parametrize("example", sorted(PAPER_TOTALS))
def test_paper_examples_state_their_totals(example):
    text = (EXAMPLES / example).read_text()
    total = cnndsl_summary(EXAMPLES / example)["trainable"]
    assert total == PAPER_TOTALS[example]
    assert f"{total:,} params" in text


def test_googlenet_modules_match_table_1():
    """Output channels of every Inception module as in the paper's Table 1."""
    a = analyse((EXAMPLES / "googlenet.cnn").read_text()).analysis
    last = {}
    for layer in a.layers:
        if layer.node.scope:
            last[layer.node.scope[0]] = layer.shape
    assert last == {
        "inception_3a": (28, 28, 256), "inception_3b": (28, 28, 480),
        "inception_4a": (14, 14, 512), "inception_4b": (14, 14, 512),
        "inception_4c": (14, 14, 512), "inception_4d": (14, 14, 528),
        "inception_4e": (14, 14, 832), "inception_5a": (7, 7, 832),
        "inception_5b": (7, 7, 1024),
    }


def test_lenet5_layer_sizes_match_the_paper():
    a = analyse((EXAMPLES / "lenet5.cnn").read_text()).analysis
    sizes = {layer.node.name: layer.shape for layer in a.layers}
    assert (sizes["C1"], sizes["S2"], sizes["C3"], sizes["S4"], sizes["C5"]) == (
        (28, 28, 6), (14, 14, 6), (10, 10, 16), (5, 5, 16), (1, 1, 120))
    assert (sizes["F6"], sizes["output"]) == ((84,), (10,))
