"""Layer by layer, the model `build` writes and the model `train` builds have the Keras
configuration the .cnn asks for. The expectations come from the language's own rules
(docs/language.md), written out below as a small table independent of `op.to_keras`:
one entry per op, so a new example using known ops is covered without a line here, and a
new op without an entry fails `test_every_op_has_an_expectation_and_is_exercised`."""

from __future__ import annotations

import math
from typing import Any

import keras
import pytest
from conftest import example_params
from keras_models import analysed, module_model, runtime_model
from test_build import ALL_OPS_BLOCK, ALL_OPS_CHAIN

from cnndsl.analysis.graph import Node
from cnndsl.analysis.ops import OPS
from cnndsl.backends.codegen import generate

# Every op the language has beyond those ALL_OPS_CHAIN and ALL_OPS_BLOCK exercise, with
# the graph forms: several inputs and outputs, `@name`, `reuse` of a layer and of a block
# instance, `subtract`, every activation statement and every activation setting.
GRAPH_OPS = """
block tower() {
  conv 4 3x3 same relu
  maxpool 2x2
  local 4 3x3 pad=1 relu
  globalavgpool
  dense 6 sigmoid
}
network every_op {
  input 16x16x3 as img
  input 6 as side
  @img
  rescale (1/58.4, 1/57.1, 1/57.4) offset=(-2.1, -2.0, -1.8)
  normalization
  normalization mean=(0.5, 0.4, 0.3) variance=(0.1, 0.2, 0.3)
  normalization mean=0.5 variance=2 as normed
  tower() as left
  @normed
  spatial_dropout 0.1
  reuse @left as right
  subtract @left @right as diff
  @normed
  conv 8 3x3 same as c1                                # 16x16x8
  convt 8 3x3 stride=2 same output_padding=1 use_bias=false  # 32x32x8
  crop ((1, 0), (0, 1))                                # 31x31x8
  crop 1                                               # 29x29x8
  convt 8 2x2 stride=(2, 1) relu                       # 58x30x8
  convt 8 3x3 same dilation=(1, 2) hard_swish          # 58x30x8
  maxpool 4x2                                          # 14x15x8
  upsample                                             # 28x30x8
  upsample (1, 2) bilinear                             # 28x60x8
  upsample 1 interpolation=bicubic
  upsample 1 interpolation=lanczos3; upsample 1 interpolation=lanczos5
  upsample (1, 1) interpolation=area
  avgpool 4x6                                          # 7x10x8
  layernorm
  layernorm epsilon=0.01 center=false
  groupnorm groups=4
  groupnorm groups=2 epsilon=1e-5 scale=false
  groupnorm groups=8 center=false
  layerscale
  layerscale 0.1
  channel_shuffle groups=2
  permute (2, 1, 3)                                    # 10x7x8
  dropout 0.2 noise_shape=(1, 1, 8)
  dropout 0.1 noise_shape=(10, 1, 1)
  local 8 3x3 stride=2 pad=((0, 1), (1, 0)) use_bias=false tanh   # 5x4x8
  local 8 2x2 stride=(1, 2)                                        # 4x2x8
  conv 8 1x1 as shared
  reuse @shared
  reuse @shared as again
  celu; elu; exponential; gelu; hard_shrink; hard_sigmoid; hard_silu; hard_swish
  hard_tanh; leaky_relu; linear; log_sigmoid; log_softmax; mish; relu; relu6; selu
  sigmoid; silu; soft_shrink; softmax; softplus; softsign; sparse_plus; sparse_sigmoid
  sparsemax; squareplus; swish; tanh; tanh_shrink
  relu max_value=6
  relu negative_slope=0.1 threshold=0.5
  relu max_value=1.5 threshold=0.25
  leaky_relu alpha=0.1
  elu alpha=0.5
  gelu approximate=true
  gelu approximate=false
  activation gelu
  flatten
  dense 6 as trunk
  subtract as head { | @diff | identity }
  concat @head @side @trunk axis=-1
  dense 3 softmax as main
  multiply @head @side as gate
  outputs @main @gate @diff
}
"""

# The same ops with every argument a block parameter: `build` writes the block as one
# function of its parameters (test_every_op_has_an_expectation_and_is_exercised checks).
GRAPH_OPS_BLOCK = """
block new_ops(f, k, s, opad, cut, up, how, g, eps, init, dims, rate, top, slope, mean, var, \\
              sc, off, act=gelu) {
  rescale sc offset=off
  normalization mean=mean variance=var
  convt f k stride=s same output_padding=opad activation=act use_bias=false
  crop cut
  upsample up interpolation=how
  layernorm epsilon=eps center=false
  groupnorm groups=g epsilon=eps scale=false
  layerscale init
  channel_shuffle groups=g
  permute dims
  spatial_dropout rate
  dropout rate
  local f k stride=s pad=1 activation=act use_bias=false
  relu max_value=top threshold=slope
  leaky_relu alpha=slope
  elu alpha=slope
  gelu approximate=true
  subtract { | identity | conv f 1x1 }
}
network blocky {
  input 12x12x4
  new_ops(8, 3, 2, 1, 1, 2, bilinear, 2, 0.01, 0.1, (2, 1, 3), 0.1, 6, 0.2, 0.1, 1.5, \\
          1/255, -0.5) as a
  new_ops(8, 2, 1, 0, 2, (1, 2), nearest, 4, 1e-4, 1e-6, (1, 2, 3), 0.3, 1.5, 0, 0.5, 2, \\
          1/127.5, -1, act=relu)
  globalavgpool
  dense 4 softmax
}
"""

SOURCES = {"all_ops_chain": ALL_OPS_CHAIN, "all_ops_block": ALL_OPS_BLOCK,
           "graph_ops": GRAPH_OPS, "graph_ops_block": GRAPH_OPS_BLOCK}
CASES = [*(pytest.param((SOURCES[name], None), id=name) for name in SOURCES),
         *(pytest.param((case[0].read_text(), case[1]), id=p.id, marks=p.marks)
           for p in example_params() for case in [p.values[0]])]

# The 30 activation names of docs/language.md: each also a statement, `Activation(name)`.
ACTIVATION_NAMES = (
    "celu", "elu", "exponential", "gelu", "hard_shrink", "hard_sigmoid", "hard_silu",
    "hard_swish", "hard_tanh", "leaky_relu", "linear", "log_sigmoid", "log_softmax", "mish",
    "relu", "relu6", "selu", "sigmoid", "silu", "soft_shrink", "softmax", "softplus",
    "softsign", "sparse_plus", "sparse_sigmoid", "sparsemax", "squareplus", "swish", "tanh",
    "tanh_shrink",
)
# cnndsl's own layers (cnndsl/backends/keras_layers.py), registered for `load_model` under "cnndsl".
CUSTOM = {"LocallyConnected2D", "LayerScale", "ChannelShuffle", "GELU"}


def _activation(a: dict) -> str:
    return a.get("activation") or "linear"  # no activation word: Keras's linear


def _window(a: dict, stride: tuple[int, int]) -> dict:
    """Explicit `pad=` becomes a ZeroPadding2D in front and `valid` on the layer itself."""
    return {"strides": stride, "padding": "valid" if a.get("pad") else a["padding"]}


def _conv_common(a: dict) -> dict:
    return {"kernel_size": a["kernel"], **_window(a, a["stride"]),
            "dilation_rate": a["dilation"], "activation": _activation(a),
            "use_bias": a["use_bias"]}


def _pool(cls: str):
    def expect(a: dict) -> tuple[str, dict]:
        stride = a["stride"] or a["pool"]  # a pool's stride defaults to its window
        return cls, {"pool_size": a["pool"], **_window(a, stride)}
    return expect


def _norm(a: dict) -> dict:
    return {"axis": -1, "epsilon": a["epsilon"], "center": a["center"], "scale": a["scale"]}


def _statement(name: str, layer: str | None = None, settings: dict | None = None):
    """An activation statement: `Activation(name)`; with a setting given (one that differs
    from the plain activation's), the Keras layer `layer` taking the settings, under the
    Keras names `settings` maps them to (docs/language.md, "activation names")."""
    defaults = {"max_value": None, "negative_slope": 0, "threshold": 0, "alpha": None,
                "approximate": False}

    def expect(a: dict) -> tuple[str, dict]:
        given = {k: v for k, v in a.items() if v != defaults[k]}
        if not given:
            return "Activation", {"activation": name}
        return layer, {keras_key: a[key] for key, keras_key in settings.items()}
    return expect


# op -> a function of the node's arguments giving (Keras class, the configuration entries
# the .cnn arguments fix).
TABLE: dict[str, Any] = {
    "input": lambda a: ("InputLayer", {"batch_shape": (None, *a["shape"])}),
    "conv": lambda a: ("Conv2D", {"filters": a["filters"], "groups": a["groups"],
                                  **_conv_common(a)}),
    "dwconv": lambda a: ("DepthwiseConv2D", {"depth_multiplier": a["multiplier"],
                                             **_conv_common(a)}),
    "sepconv": lambda a: ("SeparableConv2D", {"filters": a["filters"],
                                              "depth_multiplier": a["multiplier"],
                                              **_conv_common(a)}),
    "convt": lambda a: ("Conv2DTranspose", {"filters": a["filters"],
                                            "output_padding": a["output_padding"],
                                            **_conv_common(a)}),
    "local": lambda a: ("LocallyConnected2D", {
        "filters": a["filters"], "kernel_size": a["kernel"], **_window(a, a["stride"]),
        "activation": _activation(a), "use_bias": a["use_bias"]}),
    "upsample": lambda a: ("UpSampling2D", {"size": a["size"],
                                            "interpolation": a["interpolation"]}),
    "crop": lambda a: ("Cropping2D", {"cropping": a["crop"]}),
    "maxpool": _pool("MaxPooling2D"),
    "avgpool": _pool("AveragePooling2D"),
    "globalavgpool": lambda a: ("GlobalAveragePooling2D", {"keepdims": a["keepdims"]}),
    "globalmaxpool": lambda a: ("GlobalMaxPooling2D", {"keepdims": a["keepdims"]}),
    "dense": lambda a: ("Dense", {"units": a["units"], "activation": _activation(a),
                                  "use_bias": a["use_bias"]}),
    "flatten": lambda a: ("Flatten", {}),
    "reshape": lambda a: ("Reshape", {"target_shape": a["shape"]}),
    "zeropad": lambda a: ("ZeroPadding2D", {"padding": a["pad"]}),
    "dropout": lambda a: ("Dropout", {"rate": a["rate"], "noise_shape": (
        None if a["noise_shape"] is None else (None, *a["noise_shape"]))}),
    "spatial_dropout": lambda a: ("SpatialDropout2D", {"rate": a["rate"]}),
    "batchnorm": lambda a: ("BatchNormalization", {"momentum": a["momentum"], **_norm(a)}),
    "layernorm": lambda a: ("LayerNormalization", _norm(a)),
    "groupnorm": lambda a: ("GroupNormalization", {"groups": a["groups"], **_norm(a)}),
    "layerscale": lambda a: ("LayerScale", {"init_values": a["init"]}),
    "normalization": lambda a: ("Normalization", {"axis": -1, "invert": False,
                                                  "mean": a["mean"],
                                                  "variance": a["variance"]}),
    "permute": lambda a: ("Permute", {"dims": a["dims"]}),
    "channel_shuffle": lambda a: ("ChannelShuffle", {"groups": a["groups"]}),
    "identity": lambda a: ("Identity", {}),
    "rescale": lambda a: ("Rescaling", {"scale": a["scale"], "offset": a["offset"]}),
    "activation": lambda a: ("Activation", {"activation": a["function"]}),
    **{name: _statement(name) for name in ACTIVATION_NAMES},
    "relu": _statement("relu", "ReLU", {"max_value": "max_value",
                                        "negative_slope": "negative_slope",
                                        "threshold": "threshold"}),
    "leaky_relu": _statement("leaky_relu", "LeakyReLU", {"alpha": "negative_slope"}),
    "elu": _statement("elu", "ELU", {"alpha": "alpha"}),
    "gelu": _statement("gelu", "GELU", {"approximate": "approximate"}),
    "concat": lambda a: ("Concatenate", {"axis": a["axis"]}),
    "add": lambda a: ("Add", {}),
    "multiply": lambda a: ("Multiply", {}),
    "subtract": lambda a: ("Subtract", {}),
}


def expected(node: Node, keras_name: str) -> list[tuple[str, str, dict]]:
    """(Keras layer name, class, configuration) of every layer the node must become."""
    cls, config = TABLE[node.op.name](node.args)
    layers = [(keras_name, cls, config)]
    if node.op.name != "zeropad" and node.args.get("pad"):  # a window layer's explicit pad
        layers.insert(0, (keras_name + "-pad", "ZeroPadding2D", {"padding": node.args["pad"]}))
    return layers


def _plain(key: str, value: Any) -> Any:
    """Keras writes tuples as lists in some configurations, and some activations under
    another name (`swish` as `silu`), and a normalisation's `axis` as a tuple once built:
    compare tuples, activations as functions, and an axis as a tuple of axes."""
    if key == "activation":
        return keras.activations.get(value)
    if key == "axis" and isinstance(value, int):
        return (value,)
    return tuple(_plain("", v) for v in value) if isinstance(value, list | tuple) else value


def _made_by(tensor: Any) -> tuple[str, int]:
    """The layer that made a tensor, and which of its applications (a shared layer has one
    per use)."""
    operation, application, _ = tensor._keras_history
    return operation.name, application


def _as_list(tensors: Any) -> list:
    return list(tensors) if isinstance(tensors, list | tuple) else [tensors]


def applications(analysis: Any, model: Any) -> dict[int, list[tuple[Any, int]]]:
    """Checks every layer's class, configuration and wiring against the table, and gives
    for each node the Keras layers it applies with the index of that application.

    A `reuse` node must apply the very layer objects of the node it shares (named after
    it), once more, to its own input; every other node layers of its own, applied once."""
    layers = {layer.name: layer for layer in model.layers}
    for tensor in _as_list(model.inputs):  # a Sequential's input is not in its layers
        layers.setdefault(tensor._keras_history.operation.name,
                          tensor._keras_history.operation)
    nodes = {layer.node.id: layer.node for layer in analysis.layers}
    uses: dict[str, set[int]] = {}
    made: dict[int, tuple[str, int]] = {}  # node id -> the application giving its output
    applied: dict[int, list[tuple[Any, int]]] = {}
    for node in nodes.values():
        owner = nodes[node.shares] if node.shares is not None else node
        assert owner.shares is None and owner.op is node.op and owner.args == node.args, \
            node.name
        feeds = [made[i] for i in node.inputs]
        applied[node.id] = []
        for name, cls, config in expected(owner, owner.keras_name):
            layer = layers[name]
            got = layer.get_config()
            assert type(layer).__name__ == cls, name
            assert {k: _plain(k, got[k]) for k in config} == \
                {k: _plain(k, v) for k, v in config.items()}, name
            if cls in CUSTOM:  # so that a saved model.keras loads again
                assert keras.saving.get_registered_name(type(layer)) == f"cnndsl>{cls}"
            if cls == "InputLayer":
                index = 0
            else:
                index = next((k for k, n in enumerate(layer._inbound_nodes)
                              if [_made_by(t) for t in n.input_tensors] == feeds), None)
                assert index is not None, f"{name} is not applied to {feeds}"
            assert index not in uses.setdefault(name, set()), f"{name} applied once too few"
            uses[name].add(index)
            applied[node.id].append((layer, index))
            feeds = [(name, index)]
        made[node.id] = feeds[0]
    assert sorted(layers) == sorted(uses)
    assert {n: len(layers[n]._inbound_nodes) for n in uses
            if type(layers[n]).__name__ != "InputLayer"} == \
        {n: len(i) for n, i in uses.items() if type(layers[n]).__name__ != "InputLayer"}
    graph = analysis.graph
    assert [_made_by(t) for t in _as_list(model.inputs)] == [made[p.node] for p in graph.inputs]
    assert [_made_by(t) for t in _as_list(model.outputs)] == \
        [made[p.node] for p in graph.outputs]
    return applied


@pytest.mark.parametrize("case", CASES)
def test_built_module_has_the_configuration_asked_for(case):
    applications(analysed(*case), module_model(*case))


@pytest.mark.parametrize("case", CASES)
def test_runtime_model_has_the_configuration_asked_for(case):
    applications(analysed(*case), runtime_model(*case))


def keras_macs(layer: Any, application: int) -> int:
    """Multiply-adds from the Keras layer's own kernels in one application: every kernel
    value is used once per output position (a dense layer's positions are its output's
    leading axes); a transposed convolution's once per input position (each input value is
    spread over a window of the output); a locally connected layer's kernel holds a slice
    per output position, each value used once."""
    kernels = [w for w in layer.weights if w.path.rsplit("/", 1)[-1].endswith("kernel")]
    call = layer._inbound_nodes[application]
    if type(layer).__name__ == "LocallyConnected2D":
        positions = 1
    elif type(layer).__name__ == "Conv2DTranspose":
        positions = math.prod(call.input_tensors[0].shape[1:-1])
    else:
        positions = math.prod(call.output_tensors[0].shape[1:-1])
    return sum(math.prod(w.shape) for w in kernels) * positions


@pytest.mark.parametrize("case", CASES)
def test_macs_per_layer_from_keras_kernels(case):
    analysis, model = analysed(*case), runtime_model(*case)
    applied = applications(analysis, model)
    for layer in analysis.layers:
        assert layer.macs == sum(keras_macs(*a) for a in applied[layer.node.id]), \
            layer.node.name


def test_every_op_has_an_expectation_and_is_exercised():
    """A new op needs its row in TABLE (from docs/language.md) and a use in a program
    above; the activation statements with settings need each setting given."""
    assert set(TABLE) == set(OPS)
    nodes = [layer.node for source in SOURCES.values() for layer in analysed(source).layers]
    assert set(OPS) <= {node.op.name for node in nodes}
    for op in ("relu", "leaky_relu", "elu", "gelu"):
        plain = TABLE[op]({s.name: s.default for s in OPS[op].args})
        assert plain == ("Activation", {"activation": op})
        for setting in OPS[op].args:
            assert any(n.op.name == op and n.args[setting.name] != setting.default
                       for n in nodes), f"`{op} {setting.name}=` is not exercised"
    assert {node.shares is not None for node in nodes} == {True, False}
    code, _ = generate(GRAPH_OPS_BLOCK, "net.cnn")  # arguments as Python parameters
    assert "def new_ops(" in code and "Expanded" not in code
