"""GoogLeNet's totals against an oracle: the network written by hand in Keras from the
paper's Table 1 (Szegedy et al. 2014; no auxiliary classifiers, no local response
normalisation, ReLU after every convolution, as examples/googlenet.cnn states)."""

from __future__ import annotations

import keras
from conftest import EXAMPLES
from keras import layers as L
from keras_models import analysed

TABLE_1 = {  # module: #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj
    "inception_3a": (64, 96, 128, 16, 32, 32), "inception_3b": (128, 128, 192, 32, 96, 64),
    "inception_4a": (192, 96, 208, 16, 48, 64), "inception_4b": (160, 112, 224, 24, 64, 64),
    "inception_4c": (128, 128, 256, 24, 64, 64), "inception_4d": (112, 144, 288, 32, 64, 64),
    "inception_4e": (256, 160, 320, 32, 128, 128),
    "inception_5a": (256, 160, 320, 32, 128, 128), "inception_5b": (384, 192, 384, 48, 128, 128),
}


def conv(x, filters: int, size: int, strides: int = 1):
    return L.Conv2D(filters, size, strides=strides, padding="same", activation="relu")(x)


def googlenet() -> tuple[keras.Model, dict[str, tuple[int, ...]]]:
    """The model and each Inception module's output shape."""
    inp = keras.Input((224, 224, 3))
    x = L.MaxPooling2D(3, strides=2, padding="same")(conv(inp, 64, 7, 2))
    x = L.MaxPooling2D(3, strides=2, padding="same")(conv(conv(x, 64, 1), 192, 3))
    shapes = {}
    for name, (c1, c3r, c3, c5r, c5, pool) in TABLE_1.items():
        if name in ("inception_4a", "inception_5a"):
            x = L.MaxPooling2D(3, strides=2, padding="same")(x)
        x = L.Concatenate()([conv(x, c1, 1), conv(conv(x, c3r, 1), c3, 3),
                             conv(conv(x, c5r, 1), c5, 5),
                             conv(L.MaxPooling2D(3, strides=1, padding="same")(x), pool, 1)])
        shapes[name] = tuple(x.shape[1:])
    x = L.Dropout(0.4)(L.GlobalAveragePooling2D()(x))
    return keras.Model(inp, L.Dense(1000, activation="softmax")(x)), shapes


def test_googlenet_totals_and_modules_equal_a_hand_written_keras_model():
    model, shapes = googlenet()
    analysis = analysed((EXAMPLES / "googlenet.cnn").read_text())
    assert analysis.totals.params == model.count_params()
    assert analysis.output_shape == tuple(model.outputs[0].shape[1:])
    outputs = {name: analysis.scope_output(scope) for scope in analysis.graph.scopes
               if (name := scope.path[-1]) in TABLE_1}
    assert outputs == shapes
