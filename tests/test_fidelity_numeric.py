"""With the same deterministic weights, the model `build` writes, the model `train` builds
and a Keras twin written here by hand (from the seed notebook and the papers) compute the
same outputs on the same input, to 1e-5. Weights are keyed by layer name (keras_models.
set_weights): the twins name their weight-bearing layers as `check` reports them."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import keras
import numpy as np
import pytest
from conftest import EXAMPLES, ROOT
from keras import layers as L
from keras_models import module_model, runtime_model, set_weights

# ----------------------------------------------------------------------------- the twins


def mnist_twin() -> keras.Model:
    """The seed notebook's MNIST network."""
    inp = keras.Input((28, 28, 1))
    x = L.Conv2D(8, 3, activation="relu", name="conv_1")(inp)
    x = L.Conv2D(16, 3, strides=2, padding="same", activation="relu", name="conv_2")(x)
    x = L.MaxPooling2D(2, padding="same")(x)
    x = L.Dropout(0.25)(L.Flatten()(x))
    x = L.Dropout(0.5)(L.Dense(64, activation="relu", name="FC1")(x))
    return keras.Model(inp, L.Dense(10, activation="softmax", name="output")(x))


def cifar10_twin() -> keras.Model:
    """The seed notebook's CIFAR-10 network: three conv + max-pool pairs, two dense layers."""
    inp = x = keras.Input((32, 32, 3))
    for i, filters in enumerate((16, 32, 64), 1):
        x = L.Conv2D(filters, 2, padding="same", activation="relu", name=f"conv_{i}")(x)
        x = L.MaxPooling2D(2)(x)
    x = L.Flatten()(L.Dropout(0.3)(x))
    x = L.Dropout(0.4)(L.Dense(500, activation="relu", name="dense_1")(x))
    return keras.Model(inp, L.Dense(10, activation="softmax", name="dense_2")(x))


def inception(x: Any, name: str, c1: int, c3r: int, c3: int, c5r: int, c5: int,
              pool: int) -> Any:
    """GoogLeNet's Inception module (Szegedy et al. 2014, figure 2b)."""
    def conv(y: Any, filters: int, size: int, i: int) -> Any:
        return L.Conv2D(filters, size, padding="same", activation="relu",
                        name=f"{name}-conv_{i}")(y)
    branch1 = conv(x, c1, 1, 1)
    branch3 = conv(conv(x, c3r, 1, 2), c3, 3, 3)
    branch5 = conv(conv(x, c5r, 1, 4), c5, 5, 5)
    branch_pool = conv(L.MaxPooling2D(3, strides=1, padding="same")(x), pool, 1, 6)
    return L.Concatenate()([branch1, branch3, branch5, branch_pool])


def inception_twin() -> keras.Model:
    inp = keras.Input((28, 28, 192))
    x = inception(inp, "inception_3a", 64, 96, 128, 16, 32, 32)
    x = inception(x, "inception_3b", 128, 128, 192, 32, 96, 64)
    x = L.GlobalAveragePooling2D()(L.MaxPooling2D(3, strides=2, padding="same")(x))
    return keras.Model(inp, L.Dense(10, activation="softmax", name="dense_1")(x))


# The README's residual block.
RESIDUAL = re.search(r"^block residual\(filters\) \{.*?^\}\n", (ROOT / "README.md").read_text(),
                     re.M | re.S).group(0) + """
network residual_net {
  input 12x12x16
  conv 16 3x3 same relu as stem
  repeat 2 { residual(16) }
  globalavgpool
  dense 10 softmax as out
}
"""


def residual_twin() -> keras.Model:
    """He et al. 2015's basic residual block, twice, after a stem convolution."""
    inp = keras.Input((12, 12, 16))
    x = L.Conv2D(16, 3, padding="same", activation="relu", name="stem")(inp)
    for i in (1, 2):
        scope = f"residual_{i}"
        y = L.Conv2D(16, 3, padding="same", name=f"{scope}-conv_1")(x)
        y = L.ReLU()(L.BatchNormalization(name=f"{scope}-batchnorm_1")(y))
        y = L.Conv2D(16, 3, padding="same", name=f"{scope}-conv_2")(y)
        y = L.BatchNormalization(name=f"{scope}-batchnorm_2")(y)
        x = L.ReLU()(L.Add()([x, y]))
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inp, L.Dense(10, activation="softmax", name="out")(x))


DENSENET = (EXAMPLES / "densenet121.cnn").read_text().split("network densenet121")[0] + """
network dense_blocks {
  input 16x16x24
  dense_block(3) as conv2
  transition() as pool2
  batchnorm epsilon=1.001e-5; relu
  globalavgpool
  dense 10 softmax
}
"""


def densenet_twin() -> keras.Model:
    """Huang et al. 2017: a dense block of three BN-ReLU-Conv1x1-BN-ReLU-Conv3x3 layers
    (growth 32, bottleneck 4) and a transition halving channels, height and width."""
    def bn_relu(y: Any, name: str) -> Any:
        return L.Activation("relu")(L.BatchNormalization(epsilon=1.001e-5, name=name)(y))

    inp = x = keras.Input((16, 16, 24))
    for i in (1, 2, 3):
        scope = f"conv2-dense_layer_{i}"
        y = L.Conv2D(128, 1, use_bias=False, name=f"{scope}-conv_1")(
            bn_relu(x, f"{scope}-batchnorm_1"))
        y = L.Conv2D(32, 3, padding="same", use_bias=False, name=f"{scope}-conv_2")(
            bn_relu(y, f"{scope}-batchnorm_2"))
        x = L.Concatenate()([x, y])
    x = bn_relu(x, "pool2-batchnorm_1")
    x = L.Conv2D(x.shape[-1] // 2, 1, use_bias=False, name="pool2-conv_1")(x)
    x = L.AveragePooling2D(2, strides=2)(x)
    x = L.GlobalAveragePooling2D()(bn_relu(x, "batchnorm_1"))
    return keras.Model(inp, L.Dense(10, activation="softmax", name="dense_1")(x))


CASES: dict[str, tuple[str, Callable[[], keras.Model]]] = {
    "mnist": ((EXAMPLES / "mnist.cnn").read_text(), mnist_twin),
    "cifar10": ((EXAMPLES / "cifar10.cnn").read_text(), cifar10_twin),
    "inception_module": ((EXAMPLES / "inception_module.cnn").read_text(), inception_twin),
    "residual": (RESIDUAL, residual_twin),
    "densenet_block": (DENSENET, densenet_twin),
}


def weighted(model: keras.Model) -> set[str]:
    return {layer.name for layer in model.layers if layer.weights}


def outputs(model: keras.Model, x: np.ndarray) -> np.ndarray:
    set_weights(model)
    return keras.ops.convert_to_numpy(model(x, training=False))


@pytest.mark.parametrize("name", CASES)
def test_built_runtime_and_twin_compute_the_same(name):
    source, twin = CASES[name]
    built, runtime, reference = module_model(source), runtime_model(source), twin()
    assert weighted(built) == weighted(runtime) == weighted(reference)
    shape = (2, *reference.inputs[0].shape[1:])
    x = np.random.default_rng(0).uniform(0, 1, shape).astype(np.float32)
    expected = outputs(reference, x)
    # The check is sharp: the twin's outputs are not all alike (a constant would pass).
    assert np.ptp(expected) > 1e-3
    np.testing.assert_allclose(outputs(built, x), expected, rtol=0, atol=1e-5)
    np.testing.assert_allclose(outputs(runtime, x), expected, rtol=0, atol=1e-5)
