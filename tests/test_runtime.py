"""The in-process Keras model agrees with `check`: every layer's output shape and parameter
count, for every example network, and the layer names the code generator uses too."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import pytest
from conftest import EXAMPLES, example_params
from keras_models import runtime_model

from cnndsl.analysis.pipeline import analyse
from cnndsl.backends.runtime import build_model, node_layers


def analysed(source: str, network: str | None = None):
    result = analyse(source, network)
    assert result.ok, result.diagnostics
    return result.analysis


def assert_matches(analysis, model=None) -> None:
    """Per node: the last Keras layer's output shape, and the params of all its layers
    (of `model`, or of a model built here)."""
    model = build_model(analysis) if model is None else model
    layers = node_layers(analysis, model)
    for layer in analysis.layers:
        if layer.node.shares is not None:
            continue  # `reuse`: the Keras layers of the node it shares, counted there
        keras_layers = layers[layer.node.id]
        shape = tuple(keras_layers[-1].output.shape[1:])
        trainable = sum(keras.src.utils.summary_utils.count_params(k.trainable_weights)
                        for k in keras_layers)
        non_trainable = sum(keras.src.utils.summary_utils.count_params(k.non_trainable_weights)
                            for k in keras_layers)
        assert (layer.node.name, shape, trainable, non_trainable) == (
            layer.node.name, layer.shape, layer.trainable, layer.non_trainable)
    assert model.count_params() == analysis.totals.params
    keras.backend.clear_session()


@pytest.mark.parametrize("case", example_params())
def test_every_example_builds_exactly_as_checked(case):
    path, network = case
    source = path.read_text()
    assert_matches(analysed(source, network), runtime_model(source, network))


def test_explicit_padding_merges_and_blocks():
    analysis = analysed("""
block res(c) {
  add {
    | identity
    | conv c 3x3 pad=1; batchnorm; relu
  }
}
network t {
  input 16x16x4
  conv 8 5x5 stride=2 pad=(1, 2) relu
  maxpool 3x3 stride=2 pad=1
  res(8) as r1
  concat {
    | conv 4 1x1
    | dwconv 3x3 same multiplier=2
  }
  globalavgpool
  dense 3 softmax as out
}""")
    assert_matches(analysis)
    model = build_model(analysis)
    names = [layer.name for layer in model.layers]
    # A node that maps to several Keras layers chains them, named by their suffix.
    assert names[:3] == ["input", "conv_1-pad", "conv_1"]
    assert "r1-conv_1-pad" in names and "r1-add_1" in names
    assert names[-1] == "out"


def test_the_seed_mnist_network_matches_the_notebook_summary():
    model = build_model(analysed((EXAMPLES / "mnist.cnn").read_text()))
    rows = [(layer.name, type(layer).__name__, layer.count_params())
            for layer in model.layers]
    assert rows == [
        ("input", "InputLayer", 0), ("conv_1", "Conv2D", 80), ("conv_2", "Conv2D", 1168),
        ("maxpool_1", "MaxPooling2D", 0), ("flatten_1", "Flatten", 0),
        ("dropout_1", "Dropout", 0), ("FC1", "Dense", 50240), ("dropout_2", "Dropout", 0),
        ("output", "Dense", 650)]


def test_output_dtype_for_mixed_precision():
    model = build_model(analysed((EXAMPLES / "mnist.cnn").read_text()), "float32")
    assert model.get_layer("output").dtype_policy.name == "float32"


def test_a_network_with_errors_is_refused():
    result = analyse("network t { input 4x4x1; conv 8 5x5 }")
    with pytest.raises(ValueError, match="has errors"):
        build_model(result.analysis)
