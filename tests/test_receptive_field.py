"""Receptive fields and peak activation memory against Keras itself.

The receptive-field oracle: clone the Keras model with every pointwise activation made
linear (a saturating one, relu6 or sigmoid, would zero gradients without changing which
inputs a unit reads) and every max pooling made average pooling (a max passes its gradient
to one element only), set every kernel positive (1 / fan-in, so that no path overflows or
underflows) and every bias and batch-norm shift to zero, feed ones, and take the gradient
of the central output position (all its channels: a merge's field is its widest
path's) with respect to the input. Every input that the unit reads has
a positive gradient and no other has one: the extent of the non-zero region (first to last
non-zero row and column, holes of dilation included) is the receptive field. A region
touching the input's border is clipped, and such a layer is not compared."""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import EXAMPLES
from keras_models import analysed, inbound, runtime_model

POOLS = {"MaxPooling2D": keras.layers.AveragePooling2D,
         "GlobalMaxPooling2D": keras.layers.GlobalAveragePooling2D}


def _linear_copy(layer: Any) -> Any:
    config = layer.get_config()
    if "activation" in config:
        config["activation"] = "linear"
    return POOLS.get(type(layer).__name__, type(layer)).from_config(config)


def oracle_model(source: str, names: list[str]) -> keras.Model:
    """The model of `source` made linear and positive, with the outputs of layers `names`."""
    clone = keras.models.clone_model(runtime_model(source), clone_function=_linear_copy)
    for layer in clone.layers:
        values = []
        for w in layer.weights:
            shape, kind = tuple(w.shape), w.path.rsplit("/", 1)[-1]
            if kind in ("kernel", "pointwise_kernel", "depthwise_kernel"):
                fan_in = math.prod(shape[:2] if kind == "depthwise_kernel" else shape[:-1])
                values.append(np.full(shape, 1 / fan_in, np.float32))
            else:
                values.append(np.full(shape, kind in ("gamma", "moving_variance"), np.float32))
        if values:
            layer.set_weights(values)
    return keras.Model(clone.inputs, [clone.get_layer(n).output for n in names])


def measured_fields(source: str, names: list[str]) -> dict[str, tuple[int, int] | None]:
    """Per layer: the extent of the input region its central unit reads, None if clipped."""
    model = oracle_model(source, names)
    x = tf.ones((1, *model.inputs[0].shape[1:]))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        outs = model(x, training=False)
        outs = outs if isinstance(outs, list) else [outs]
        units = [tf.reduce_sum(out[0, out.shape[1] // 2, out.shape[2] // 2]) for out in outs]
    fields: dict[str, tuple[int, int] | None] = {}
    for name, unit in zip(names, units, strict=True):
        grad = np.abs(tape.gradient(unit, x).numpy()[0]).sum(axis=-1)
        rows, cols = np.nonzero(grad.sum(axis=1))[0], np.nonzero(grad.sum(axis=0))[0]
        clipped = rows[0] == 0 or cols[0] == 0 or rows[-1] == grad.shape[0] - 1 or \
            cols[-1] == grad.shape[1] - 1
        fields[name] = None if clipped else (rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1)
    return fields


def spatial_layers(source: str) -> list[Any]:
    return [layer for layer in analysed(source).layers[1:] if len(layer.shape) == 3]


def assert_fields(source: str, names: list[str] | None = None) -> int:
    """check's receptive field (and shape) of every layer named (every spatial layer by
    default) is the measured one; returns how many fields were compared (unclipped)."""
    layers = {layer.node.keras_name: layer for layer in spatial_layers(source)}
    names = names or list(layers)
    fields = measured_fields(source, names)
    model = runtime_model(source)
    for name in names:
        assert tuple(model.get_layer(name).output.shape[1:]) == layers[name].shape, name
        if fields[name] is not None:
            assert fields[name] == layers[name].field.size, name
    return sum(f is not None for f in fields.values())


# The Inception block of examples/inception_module.cnn, and a residual block with a
# projection shortcut.
BLOCKS = (EXAMPLES / "inception_module.cnn").read_text().split("network ")[0] + """
block residual(f, stride=1) {
  add {
    | conv f 1x1 stride=stride
    | conv f 3x3 stride=stride same; batchnorm; relu6; conv f 3x3 same; batchnorm
  }
  relu
}
"""

NETWORKS = {
    "chain": "network n { input 48x48x2; conv 4 3x3 relu; conv 4 3x3 stride=2 relu; "
             "maxpool 2; conv 4 5x5 sigmoid; avgpool 3 stride=1; conv 4 1x1 }",
    "dilation": "network n { input 48x48x1; conv 2 3x3 dilation=2; conv 2 3x3 dilation=3 "
                "same; dwconv 3x3 dilation=(1, 2); sepconv 2 3x3 dilation=2 same }",
    "strides": "network n { input 64x64x1; conv 2 (1, 5) stride=(2, 1); conv 2 3x3 stride=2 "
               "same; maxpool (3, 2) stride=(1, 2); conv 2 2x2 stride=2 }",
    "explicit_padding": "network n { input 48x48x2; conv 4 5x5 stride=2 pad=(1, 2); "
                        "maxpool 3 stride=2 pad=1; zeropad ((1, 0), (0, 2)); "
                        "avgpool 3 stride=1 pad=1; conv 4 3x3 pad=1 groups=2 }",
    "inception": BLOCKS + "network n { input 40x40x8; conv 8 3x3 stride=2 same; "
                          "inception(4, 4, 4, 2, 2, 2); maxpool 3 stride=2 same; "
                          "inception(4, 4, 4, 2, 2, 2) }",
    "residual": BLOCKS + "network n { input 64x64x4; residual(8); residual(8, stride=2); "
                         "concat { | identity | conv 8 7x7 same }; residual(8); "
                         "multiply { | identity | dwconv 5x5 same } }",
}


@pytest.mark.parametrize("name", NETWORKS)
def test_receptive_fields_are_measured_ones(name):
    source = NETWORKS[name]
    assert assert_fields(source) == len(spatial_layers(source))  # none clipped: all compared


ZOO = ["lenet5", "vgg16", "resnet50", "inception_v3", "densenet121", "mobilenet_v2",
       "googlenet", "inception_module"]


@pytest.mark.parametrize("name", ZOO)
def test_zoo_deepest_measurable_field(name):
    """The deepest layer whose field fits well inside the network's own input (a quarter
    of it, to keep the gradient cheap)."""
    source = (EXAMPLES / f"{name}.cnn").read_text()
    size = min(analysed(source).input_shape[:2])
    fits = [layer for layer in spatial_layers(source) if max(layer.field.size) < size // 4]
    assert assert_fields(source, [fits[-1].node.keras_name]) == 1


# ----------------------------------------------------------------------------- peak memory


def keras_peak_bytes(source: str) -> int:
    """The most float32 activation values alive at once, from the Keras model's own tensors
    and wiring: each layer's output lives from the layer that makes it to the last layer
    that reads it (the model's output to the end), layers run in the .cnn's order."""
    model = runtime_model(source)
    order = [layer.node.keras_name for layer in analysed(source).layers]
    layers = {layer.name: layer for layer in model.layers}
    readers = {name: [layers[r] for r in order if r in layers and name in inbound(layers[r])]
               for name in order}
    last = {name: (order.index(rs[-1].name) if rs else len(order)) for name, rs in
            readers.items()}
    size = {name: math.prod(layers[name].output.shape[1:]) for name in order}
    return 4 * max(sum(size[n] for n in order[:step + 1] if last[n] >= step)
                   for step in range(len(order)))


PEAK_CASES = {"mnist": (EXAMPLES / "mnist.cnn").read_text(),
              "inception_module": (EXAMPLES / "inception_module.cnn").read_text(),
              "resnet50": (EXAMPLES / "resnet50.cnn").read_text(),
              "densenet121": (EXAMPLES / "densenet121.cnn").read_text(),
              "residual": NETWORKS["residual"], "inception": NETWORKS["inception"],
              # the peak is while the wide input waits for its last reader
              "wide_input": "network n { input 8x8x64; add { | conv 16 1x1 | conv 16 1x1 "
                            "| conv 16 3x3 same } }"}


@pytest.mark.parametrize("name", PEAK_CASES)
def test_peak_activation_memory_from_keras_tensors(name):
    source = PEAK_CASES[name]
    assert analysed(source).peak_activation_bytes == keras_peak_bytes(source)


DEEP_AFTER_UPSAMPLING = """\
block res() {
    add {
        | conv 4 3x3 same
        | identity
    }
}
network deep {
    input 16x16x4
    conv 4 3x3 stride=2 same
    upsample 2
    repeat 1500 { res() }
    globalavgpool
    dense 2
}
"""


def test_deep_network_after_upsampling_has_a_field_and_no_recursion_error(tmp_path):
    """1500 merges after an upsample: the field is walked without recursion, in
    reasonable time (a RecursionError once), through the real CLI."""
    import subprocess
    import sys

    path = tmp_path / "deep.cnn"
    path.write_text(DEEP_AFTER_UPSAMPLING)
    done = subprocess.run([sys.executable, "-m", "cnndsl", "check", str(path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "error" not in (done.stdout + done.stderr).lower()
    fields = [layer.field.size for layer in analysed(DEEP_AFTER_UPSAMPLING).layers]
    # conv 3x3 stride 2: 3 rows, jump 2; upsample 2 then 1500 residual 3x3 convs: 3000
    # neighbouring upsampled positions, 1500 apart in the strided grid: 3 + 2 * 1500 rows
    assert fields[-3] == (3 + 2 * 1500, 3 + 2 * 1500)
