"""Layer by layer, the model `build` writes and the model `train` builds have the Keras
configuration the .cnn asks for. The expectations come from the language's own rules
(docs/language.md), written out below as a small table independent of `op.to_keras`."""

from __future__ import annotations

import math
from typing import Any

import keras
import pytest
from conftest import EXAMPLES
from keras_models import analysed, inbound, module_model, runtime_model
from test_build import ALL_OPS_BLOCK, ALL_OPS_CHAIN

from cnndsl.graph import Node

SOURCES = {p.stem: p.read_text() for p in sorted(EXAMPLES.glob("*.cnn"))}
SOURCES |= {"all_ops_chain": ALL_OPS_CHAIN, "all_ops_block": ALL_OPS_BLOCK}


def _activation(a: dict) -> str:
    return a.get("activation") or "linear"  # no activation word: Keras's linear


def _window(a: dict, stride: tuple[int, int]) -> dict:
    """Explicit `pad=` becomes a ZeroPadding2D in front and `valid` on the layer itself."""
    return {"strides": stride, "padding": "valid" if a["pad"] else a["padding"]}


def _conv_common(a: dict) -> dict:
    return {"kernel_size": a["kernel"], **_window(a, a["stride"]),
            "dilation_rate": a["dilation"], "activation": _activation(a),
            "use_bias": a["use_bias"]}


def _pool(cls: str):
    def expect(a: dict) -> tuple[str, dict]:
        stride = a["stride"] or a["pool"]  # a pool's stride defaults to its window
        return cls, {"pool_size": a["pool"], **_window(a, stride)}
    return expect


# op -> (Keras class, the configuration entries the .cnn arguments fix)
TABLE: dict[str, Any] = {
    "conv": lambda a: ("Conv2D", {"filters": a["filters"], "groups": a["groups"],
                                  **_conv_common(a)}),
    "dwconv": lambda a: ("DepthwiseConv2D", {"depth_multiplier": a["multiplier"],
                                             **_conv_common(a)}),
    "sepconv": lambda a: ("SeparableConv2D", {"filters": a["filters"],
                                              "depth_multiplier": a["multiplier"],
                                              **_conv_common(a)}),
    "maxpool": _pool("MaxPooling2D"),
    "avgpool": _pool("AveragePooling2D"),
    "globalavgpool": lambda a: ("GlobalAveragePooling2D", {"keepdims": a["keepdims"]}),
    "globalmaxpool": lambda a: ("GlobalMaxPooling2D", {"keepdims": a["keepdims"]}),
    "dense": lambda a: ("Dense", {"units": a["units"], "activation": _activation(a),
                                  "use_bias": a["use_bias"]}),
    "flatten": lambda a: ("Flatten", {}),
    "dropout": lambda a: ("Dropout", {"rate": a["rate"]}),
    "batchnorm": lambda a: ("BatchNormalization", {
        "axis": -1, "momentum": a["momentum"], "epsilon": a["epsilon"],
        "center": a["center"], "scale": a["scale"]}),
    "identity": lambda a: ("Identity", {}),
    "rescale": lambda a: ("Rescaling", {"scale": a["scale"], "offset": a["offset"]}),
    "reshape": lambda a: ("Reshape", {"target_shape": a["shape"]}),
    "zeropad": lambda a: ("ZeroPadding2D", {"padding": a["pad"]}),
    "activation": lambda a: ("Activation", {"activation": a["function"]}),
    "concat": lambda a: ("Concatenate", {"axis": a["axis"]}),
    "add": lambda a: ("Add", {}),
    "multiply": lambda a: ("Multiply", {}),
}


def expected(node: Node) -> list[tuple[str, str, dict]]:
    """(Keras layer name, class, configuration) of every layer the node must become."""
    op, a = node.op.name, node.args
    if op == "input":
        return [(node.keras_name, "InputLayer", {"batch_shape": (None, *a["shape"])})]
    if op in TABLE:
        cls, config = TABLE[op](a)
    else:  # an activation as a statement of its own: `relu`
        cls, config = "Activation", {"activation": op}
    layers = [(node.keras_name, cls, config)]
    if op != "zeropad" and a.get("pad"):  # explicit padding of a window layer
        layers.insert(0, (node.keras_name + "_pad", "ZeroPadding2D", {"padding": a["pad"]}))
    return layers


def _plain(key: str, value: Any) -> Any:
    """Keras writes tuples as lists in some configurations, and some activations under
    another name (`swish` as `silu`): compare tuples, and activations as functions."""
    if key == "activation":
        return keras.activations.get(value)
    return tuple(_plain("", v) for v in value) if isinstance(value, list | tuple) else value


def assert_configured(source: str, model: Any) -> None:
    analysis = analysed(source)
    layers = {layer.name: layer for layer in model.layers}
    source_layer = model.inputs[0]._keras_history.operation  # not in a Sequential's layers
    layers[source_layer.name] = source_layer
    names: list[str] = []
    previous: dict[int, str] = {}  # node id -> the Keras layer giving the node's output
    for node in (layer.node for layer in analysis.layers):
        feeds = [previous[i] for i in node.inputs]
        for name, cls, config in expected(node):
            layer = layers[name]
            got = layer.get_config()
            assert type(layer).__name__ == cls, name
            assert {k: _plain(k, got[k]) for k in config} == \
                {k: _plain(k, v) for k, v in config.items()}, name
            if cls != "InputLayer":
                assert inbound(layer) == feeds, name
            feeds = [name]
            names.append(name)
        previous[node.id] = names[-1]
    assert sorted(layers) == sorted(names)


@pytest.mark.parametrize("name", SOURCES)
def test_built_module_has_the_configuration_asked_for(name):
    assert_configured(SOURCES[name], module_model(SOURCES[name]))


@pytest.mark.parametrize("name", SOURCES)
def test_runtime_model_has_the_configuration_asked_for(name):
    assert_configured(SOURCES[name], runtime_model(SOURCES[name]))


def keras_macs(layer: Any) -> int:
    """Multiply-adds from the Keras layer's own kernels: every kernel value is used once per
    output position (a dense layer's positions are its output's leading axes)."""
    kernels = [w for w in layer.weights if w.path.rsplit("/", 1)[-1].endswith("kernel")]
    positions = math.prod(layer.output.shape[1:-1])
    return sum(math.prod(w.shape) for w in kernels) * positions


@pytest.mark.parametrize("name", SOURCES)
def test_macs_per_layer_from_keras_kernels(name):
    analysis, model = analysed(SOURCES[name]), runtime_model(SOURCES[name])
    for layer in analysis.layers[1:]:
        assert layer.macs == keras_macs(model.get_layer(layer.node.keras_name)), layer.node.name
