"""The model zoo equals Keras: every example network that mirrors a keras.applications
constructor has the same total, trainable and non-trainable parameters, output shape and
MACs, and the same weight-bearing layers (output shape, trainable and non-trainable
parameters, MACs), as the Keras model built with `weights=None`.

Which network mirrors which constructor is written in the examples themselves, on the line
above the network: `# = keras.applications.ResNet101(weights=None)`, with
`input_shape=(224, 224, 3)` added where Keras leaves the input's height and width unknown
(MobileNetV3; the default model must then have the same weights). Each Keras model is
built once per session; Keras MACs come from the Keras layers' own kernel shapes and output
shapes, by the formulas of tests/test_ops_keras.py.
"""

from __future__ import annotations

import functools
import math
import os
import re
from typing import NamedTuple

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest
from conftest import EXAMPLES
from test_ops_keras import Step, keras_macs

from cnndsl.analysis.pipeline import analyse
from cnndsl.backends.report import human

TWIN = re.compile(r"^# = keras\.applications\.(\w+)\(weights=None"
                  r"(?:, input_shape=\((\d+), (\d+), (\d+)\))?\)\nnetwork (\w+) \{", re.M)


class Twin(NamedTuple):
    constructor: str
    example: str
    network: str
    input_shape: tuple[int, ...] | None  # None: the constructor's default input


def keras_twins() -> list[Twin]:
    """Every network marked as a Keras twin, with the Keras call it mirrors."""
    twins = []
    for path in sorted(EXAMPLES.glob("*.cnn")):
        for constructor, h, w, c, network in TWIN.findall(path.read_text()):
            shape = (int(h), int(w), int(c)) if h else None
            twins.append(Twin(constructor, path.name, network, shape))
    return twins


TWINS = keras_twins()

# The constructors this branch proves; a family file that loses its marker fails here.
PROVED = {
    "VGG16", "VGG19", "ResNet50", "ResNet101", "ResNet152", "ResNet50V2", "ResNet101V2",
    "ResNet152V2", "DenseNet121", "DenseNet169", "DenseNet201", "InceptionV3",
    "InceptionResNetV2", "Xception", "MobileNet", "MobileNetV2", "MobileNetV3Small",
    "MobileNetV3Large", "NASNetMobile", "NASNetLarge",
    "ConvNeXtTiny", "ConvNeXtSmall", "ConvNeXtBase", "ConvNeXtLarge", "ConvNeXtXLarge",
    *(f"EfficientNetB{i}" for i in range(8)),
    *(f"EfficientNetV2{v}" for v in ("B0", "B1", "B2", "B3", "S", "M", "L")),
}
# Keras models that take the longest to build (several seconds each on 2 cores).
SLOW = {"DenseNet169", "DenseNet201", "InceptionResNetV2", "ResNet152", "ResNet152V2",
        "NASNetMobile", "NASNetLarge", "ConvNeXtLarge", "ConvNeXtXLarge", "EfficientNetB6",
        "EfficientNetB7", "EfficientNetV2M", "EfficientNetV2L"}


def _count(weights) -> int:
    return sum(math.prod(w.shape) for w in weights)


def _leaf_layers(model) -> list:
    """The model's layers, with nested models (ConvNeXt's Sequential stems) opened up."""
    return [leaf for layer in model.layers
            for leaf in (_leaf_layers(layer) if hasattr(layer, "layers") else [layer])]


def _sort_key(layer: tuple) -> tuple:
    """Sorts as tuples do, with the unknown sizes of a default MobileNetV3 as -1."""
    shape, trainable, frozen, macs = layer
    return tuple(-1 if d is None else d for d in shape), trainable, frozen, macs or 0


@functools.cache
def keras_summary(constructor: str, input_shape: tuple[int, ...] | None = None) -> dict:
    """The Keras model's figures; the model itself is dropped once they are read."""
    import keras

    keras.backend.clear_session()
    extra = {} if input_shape is None else {"input_shape": input_shape}
    model = getattr(keras.applications, constructor)(weights=None, **extra)
    layers = []
    for layer in _leaf_layers(model):
        if not layer.weights:
            continue
        output = tuple(layer.output.shape)
        known = None not in output[1:]  # MobileNetV3's default input has no height, width
        layers.append((output[1:], _count(layer.trainable_weights),
                       _count(layer.non_trainable_weights),
                       keras_macs(Step(layer, None, output)) if known else None))
    summary = {"trainable": _count(model.trainable_weights),
               "non_trainable": _count(model.non_trainable_weights),
               "input": tuple(model.inputs[0].shape[1:]),
               "output": tuple(model.outputs[0].shape[1:]),
               "macs": sum(layer[3] or 0 for layer in layers),
               "layers": sorted(layers, key=_sort_key)}
    del model
    keras.backend.clear_session()
    return summary


def cnndsl_summary(example: str, network: str | None = None) -> dict:
    result = analyse((EXAMPLES / example).read_text(), network)
    assert result.ok, result.diagnostics
    a = result.analysis
    layers = sorted((layer.shape, layer.trainable, layer.non_trainable, layer.macs)
                    for layer in a.layers if layer.params)
    return {"trainable": a.totals.trainable, "non_trainable": a.totals.non_trainable,
            "input": a.input_shape, "output": a.output_shape, "macs": a.totals.macs,
            "layers": layers}


def _param(twin: Twin):
    marks = [pytest.mark.slow] if twin.constructor in SLOW else []
    return pytest.param(twin, marks=marks,
                        id=f"{twin.constructor}-{twin.example}:{twin.network}")


def test_every_proved_constructor_has_a_twin():
    import keras

    constructors = [twin.constructor for twin in TWINS]
    assert set(constructors) >= PROVED, sorted(PROVED - set(constructors))
    assert set(constructors) <= set(dir(keras.applications)), constructors
    assert len(constructors) == len(set(constructors))


@pytest.mark.parametrize("twin", [_param(t) for t in TWINS])
def test_zoo_equals_keras_applications(twin):
    ours = cnndsl_summary(twin.example, twin.network)
    theirs = keras_summary(twin.constructor, twin.input_shape)
    if twin.input_shape is not None:  # the default model has the very same weights
        default = keras_summary(twin.constructor)
        assert (default["trainable"], default["non_trainable"]) == (
            theirs["trainable"], theirs["non_trainable"])
        assert sorted(lay[1:3] for lay in default["layers"]) == sorted(
            lay[1:3] for lay in theirs["layers"])
    assert (ours["input"], ours["output"]) == (theirs["input"], theirs["output"])
    assert (ours["trainable"], ours["non_trainable"]) == (
        theirs["trainable"], theirs["non_trainable"])
    assert len(ours["layers"]) == len(theirs["layers"])
    for mine, keras_layer in zip(ours["layers"], theirs["layers"], strict=True):
        assert mine == keras_layer  # (output shape, trainable, non-trainable, MACs)
    assert ours["macs"] == theirs["macs"]


@pytest.mark.parametrize("constructor, example, network", [
    ("EfficientNetB1", "efficientnet.cnn", "efficientnet_b1"),
    ("EfficientNetV2B1", "efficientnet_v2.cnn", "efficientnet_v2_b1"),
])
def test_efficientnet_drop_rates_are_keras_exactly(constructor, example, network):
    """Every per-block stochastic-depth rate, 0.2 * b / blocks with `b` from `repeat`'s
    index, equals the Keras Dropout's configured rate (as floats, exactly), in order; so
    do the noise shape and the classifier's dropout."""
    import keras

    keras.backend.clear_session()
    model = getattr(keras.applications, constructor)(weights=None)
    theirs = [(layer.get_config()["rate"], layer.get_config()["noise_shape"])
              for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    del model
    keras.backend.clear_session()
    a = analyse((EXAMPLES / example).read_text(), network).analysis
    ours = [(layer.node.args["rate"], None if layer.node.args["noise_shape"] is None
             else (None, *layer.node.args["noise_shape"]))
            for layer in a.layers if layer.node.op.name == "dropout"]
    assert len(ours) > 10 and ours == [(rate, None if shape is None else tuple(shape))
                                       for rate, shape in theirs]


@pytest.mark.parametrize("twin", TWINS, ids=lambda t: f"{t.example}:{t.network}")
def test_zoo_headers_state_check_totals(twin):
    """Each family file's header states each network's totals as `check` prints them."""
    example, network = twin.example, twin.network
    text = (EXAMPLES / example).read_text()
    header = text[:text.index("\nblock ") if "\nblock " in text else text.index("\nnetwork ")]
    ours = cnndsl_summary(example, network)
    total = ours["trainable"] + ours["non_trainable"]
    lines = [line for line in header.splitlines() if f"{total:,} params" in line]
    assert len(lines) == 1, (network, f"{total:,} params")
    if ours["non_trainable"]:
        assert f"({ours['trainable']:,} trainable, {ours['non_trainable']:,} non-trainable)" \
            in lines[0]
    else:
        assert "all trainable" in lines[0]
    assert f"; {human(ours['macs'])} MACs." in lines[0]


@pytest.mark.parametrize("single, family, network", [
    ("vgg16.cnn", "vgg.cnn", "vgg16"),
    ("resnet50.cnn", "resnet.cnn", "resnet50"),
    ("densenet121.cnn", "densenet.cnn", "densenet121"),
])
def test_single_network_files_equal_their_family(single, family, network):
    """vgg16.cnn, resnet50.cnn, densenet121.cnn stay (the docs and tests cite them) and
    build the same layers as their network in the family file."""
    assert cnndsl_summary(single) == cnndsl_summary(family, network)


PAPER_TOTALS = {  # the totals each paper-only example states in its header (GoogLeNet's
    "lenet5.cnn": 61_706,  # is checked against a hand-written Keras model instead:
}                          # tests/test_googlenet_oracle.py)


@pytest.mark.parametrize("example", sorted(PAPER_TOTALS))
def test_paper_examples_state_their_totals(example):
    text = (EXAMPLES / example).read_text()
    total = cnndsl_summary(example)["trainable"]
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
