"""The graph examples against Keras models written by hand from their papers, independently
of cnndsl: params, non-trainable params, every layer (class, params, output shape) and the
outputs' shapes."""

from __future__ import annotations

import math
import os
from collections import Counter
from functools import cache

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
from conftest import EXAMPLES
from keras import layers

from cnndsl.analysis.pipeline import analyse
from cnndsl.backends import report


class Recorder:
    """Calls Keras layers and notes each layer's first output shape (a shared layer has
    several; Keras's `layer.output` refuses to pick one)."""

    def __init__(self) -> None:
        self.shapes: dict[str, tuple] = {}

    def __call__(self, layer, x):
        y = layer(x)
        self.shapes.setdefault(layer.name, tuple(y.shape[1:]))
        return y


@cache
def siamese_oracle() -> tuple[keras.Model, dict]:
    """Koch et al. 2015, Figure 4: one tower, two inputs, L1 distance, one sigmoid unit."""
    keras.backend.clear_session()
    rec = Recorder()
    tower = [layers.Conv2D(64, 10, activation="relu"), layers.MaxPooling2D(),
             layers.Conv2D(128, 7, activation="relu"), layers.MaxPooling2D(),
             layers.Conv2D(128, 4, activation="relu"), layers.MaxPooling2D(),
             layers.Conv2D(256, 4, activation="relu"), layers.Flatten(),
             layers.Dense(4096, activation="sigmoid")]
    left, right = keras.Input((105, 105, 1)), keras.Input((105, 105, 1))
    features = []
    for x in (left, right):
        for layer in tower:
            x = rec(layer, x)
        features.append(x)
    a, b = features
    forward = rec(layers.Activation("relu"), rec(layers.Subtract(), [a, b]))
    backward = rec(layers.Activation("relu"), rec(layers.Subtract(), [b, a]))
    distance = rec(layers.Add(), [forward, backward])
    out = rec(layers.Dense(1, activation="sigmoid"), distance)
    return keras.Model([left, right], out), rec.shapes


def _inception(rec, x, n1, r3, n3, r5, n5, pool):
    conv = lambda f, k, t: rec(layers.Conv2D(f, k, padding="same", activation="relu"), t)  # noqa: E731
    p = rec(layers.MaxPooling2D(3, strides=1, padding="same"), x)
    return rec(layers.Concatenate(), [conv(n1, 1, x), conv(n3, 3, conv(r3, 1, x)),
                                      conv(n5, 5, conv(r5, 1, x)), conv(pool, 1, p)])


def _aux(rec, x):
    """Section 5 of the paper: the auxiliary classifier."""
    x = rec(layers.AveragePooling2D(5, strides=3), x)
    x = rec(layers.Conv2D(128, 1, activation="relu"), x)
    x = rec(layers.Flatten(), x)
    x = rec(layers.Dense(1024, activation="relu"), x)
    x = rec(layers.Dropout(0.7), x)
    return rec(layers.Dense(1000, activation="softmax"), x)


@cache
def googlenet_aux_oracle() -> tuple[keras.Model, dict]:
    """Szegedy et al. 2014, Table 1 and section 5 (no LRN): three outputs."""
    keras.backend.clear_session()
    rec = Recorder()
    inputs = keras.Input((224, 224, 3))
    x = rec(layers.Conv2D(64, 7, strides=2, padding="same", activation="relu"), inputs)
    x = rec(layers.MaxPooling2D(3, strides=2, padding="same"), x)
    x = rec(layers.Conv2D(64, 1, activation="relu"), x)
    x = rec(layers.Conv2D(192, 3, padding="same", activation="relu"), x)
    x = rec(layers.MaxPooling2D(3, strides=2, padding="same"), x)
    x = _inception(rec, x, 64, 96, 128, 16, 32, 32)
    x = _inception(rec, x, 128, 128, 192, 32, 96, 64)
    x = rec(layers.MaxPooling2D(3, strides=2, padding="same"), x)
    x = _inception(rec, x, 192, 96, 208, 16, 48, 64)
    aux1 = _aux(rec, x)
    x = _inception(rec, x, 160, 112, 224, 24, 64, 64)
    x = _inception(rec, x, 128, 128, 256, 24, 64, 64)
    x = _inception(rec, x, 112, 144, 288, 32, 64, 64)
    aux2 = _aux(rec, x)
    x = _inception(rec, x, 256, 160, 320, 32, 128, 128)
    x = rec(layers.MaxPooling2D(3, strides=2, padding="same"), x)
    x = _inception(rec, x, 256, 160, 320, 32, 128, 128)
    x = _inception(rec, x, 384, 192, 384, 48, 128, 128)
    x = rec(layers.AveragePooling2D(7, strides=1), x)
    x = rec(layers.Dropout(0.4), x)
    x = rec(layers.Flatten(), x)
    main = rec(layers.Dense(1000, activation="softmax"), x)
    return keras.Model(inputs, [main, aux1, aux2]), rec.shapes


@cache
def unet_oracle() -> tuple[keras.Model, dict]:
    """Ronneberger et al. 2015, Figure 1: valid 3x3 convolutions, 2x2 max pools, 2x2
    up-convolutions halving the channels, cropped skips, a 1x1 two-class head."""
    keras.backend.clear_session()
    rec = Recorder()

    def double_conv(x, filters):
        for _ in range(2):
            x = rec(layers.Conv2D(filters, 3, activation="relu"), x)
        return x

    inputs = keras.Input((572, 572, 1))
    x, skips = inputs, []
    for filters in (64, 128, 256, 512):
        x = double_conv(x, filters)
        skips.append(x)
        x = rec(layers.MaxPooling2D(2), x)
    x = double_conv(x, 1024)
    for filters, skip in zip((512, 256, 128, 64), reversed(skips), strict=True):
        x = rec(layers.Conv2DTranspose(filters, 2, strides=2), x)
        margin = (skip.shape[1] - x.shape[1]) // 2
        skip = rec(layers.Cropping2D(margin), skip)
        x = double_conv(rec(layers.Concatenate(), [skip, x]), filters)
    out = rec(layers.Conv2D(2, 1, activation="softmax"), x)
    return keras.Model(inputs, out), rec.shapes


def _weights(ws) -> int:
    return sum(math.prod(w.shape) for w in ws)


def assert_equals_oracle(example: str, model: keras.Model, shapes: dict) -> None:
    result = analyse((EXAMPLES / example).read_text())
    assert result.ok and not result.diagnostics, result.diagnostics
    data = report.to_json(result, example)
    assert (model.count_params(), _weights(model.non_trainable_weights)) == (
        data["params"]["total"], data["params"]["non_trainable"])
    assert [list(t.shape[1:]) for t in model.outputs] == [p["shape"] for p in data["outputs"]]
    assert [list(t.shape[1:]) for t in model.inputs] == [p["shape"] for p in data["inputs"]]
    # Layer by layer: the same multiset of (Keras class, params, output shape); a layer
    # that `reuse` applies again is the same Keras layer, not another one.
    mine = Counter((entry["keras"], entry["params"], tuple(entry["output_shape"]))
                   for entry in data["layers"] if entry["op"] != "input" and
                   "shares" not in entry)
    theirs = Counter((type(layer).__name__, layer.count_params(), shapes[layer.name])
                     for layer in model.layers if not isinstance(layer, keras.layers.InputLayer))
    assert mine == theirs


def test_siamese_equals_the_papers_network():
    model, shapes = siamese_oracle()
    assert_equals_oracle("siamese.cnn", model, shapes)
    assert model.count_params() == 38_951_745  # as the example's header says


def test_googlenet_aux_equals_the_papers_network():
    model, shapes = googlenet_aux_oracle()
    assert_equals_oracle("googlenet_aux.cnn", model, shapes)


def test_unet_equals_the_papers_network():
    model, shapes = unet_oracle()
    assert_equals_oracle("unet.cnn", model, shapes)
    assert [tuple(t.shape[1:]) for t in model.outputs] == [(388, 388, 2)]
    # The header states the oracle's total, and check's MACs.
    result = analyse((EXAMPLES / "unet.cnn").read_text())
    macs = report.human(result.analysis.totals.macs)
    assert f"{model.count_params():,} params (all trainable); {macs} MACs." in \
        (EXAMPLES / "unet.cnn").read_text()
