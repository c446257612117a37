"""Receptive fields against Keras: the input rows and columns an output value depends on,
read off the real Keras model fed one input pixel at a time (all kernels ones, biases
zeros, no activation, so no dependence cancels out), the most over every output position.

Through strides of whole pixels `check`'s field is exact; once a layer upsamples
(`upsample`, `convt`), one output step is a fraction of an input step and the field is
an upper bound, exact for the usual decoder steps listed below.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cnndsl.analysis.pipeline import analyse
from cnndsl.backends.runtime import build_model

SIDE = 14  # the input is SIDE x SIDE x 1: fields up to SIDE // 2 are seen whole


def fields(lines: list[str]) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """(Keras's field, check's field) of the last layer; None if the network is refused."""
    body = "\n  ".join(lines)
    text = f"network t {{\n  input {SIDE}x{SIDE}x1\n  {body}\n}}\n"
    result = analyse(text)
    if not result.ok:
        return None
    analysis = result.analysis
    keras.backend.clear_session()
    model = build_model(analysis)
    for layer in model.layers:
        layer.set_weights([np.ones(w.shape) if "kernel" in w.path else np.zeros(w.shape)
                           for w in layer.weights])
    # One image per input pixel, that pixel 1 and the rest 0: with positive weights, an
    # output value is non-zero exactly when it depends on that pixel.
    x = np.eye(SIDE * SIDE, dtype="float32").reshape(SIDE * SIDE, SIDE, SIDE, 1)
    y = np.asarray(model(x)).reshape(SIDE, SIDE, *analysis.output_shape)
    depends = (y != 0).any(axis=-1).transpose(2, 3, 0, 1)  # output h, w; input h, w
    spans = []  # per axis: the widest run, first to last input row (column) depended on
    for hit in (depends.any(axis=3), depends.any(axis=2)):
        first = hit.argmax(axis=-1)
        last = hit.shape[-1] - 1 - hit[..., ::-1].argmax(axis=-1)
        spans.append(int(np.where(hit.any(axis=-1), last - first + 1, 0).max()))
    return tuple(spans), analysis.layers[-1].field.size  # type: ignore[return-value]


DECODER_STEPS = [
    ["upsample 2", "conv 1 3x3"],
    ["upsample 2", "conv 1 2x2", "conv 1 2x2"],
    ["upsample 2 bilinear", "conv 1 3x3"],
    ["upsample 2 interpolation=bicubic"],
    ["upsample 2", "upsample 2", "conv 1 3x3"],
    ["convt 1 3x3 stride=2"],
    ["convt 1 4x4 stride=2 same", "conv 1 3x3"],
    ["convt 1 2x2 stride=2", "conv 1 2x2"],
    ["conv 1 3x3 stride=2", "convt 1 3x3 stride=2"],
    ["convt 1 3x3 stride=2", "convt 1 3x3 stride=2"],
    ["local 1 3x3 stride=2", "upsample 2", "conv 1 3x3"],
    ["crop 1", "conv 1 3x3", "local 1 2x2"],
]


@pytest.mark.parametrize("lines", DECODER_STEPS, ids=" ; ".join)
def test_field_is_exact_for_decoder_steps(lines):
    keras_field, field = fields(lines)
    assert keras_field == field


@pytest.mark.parametrize("lines", [["upsample 2", "conv 1 2x2 stride=2"],
                                   ["upsample 2", "conv 1 4x4 stride=2"]], ids=" ; ".join)
def test_field_after_upsampling_can_be_an_upper_bound(lines):
    """Strides that meet an upsampled grid at a fixed phase see fewer input rows."""
    keras_field, field = fields(lines)
    assert all(k < f for k, f in zip(keras_field, field, strict=True))


# Upsampling after a stride repeats (or blends) positions a whole stride apart:
# neighbouring outputs read input rows 0 or a stride apart, and a window over them reaches
# further than the average step (1/size of the stride) says. Once too small; exact now.
STRIDE_THEN_UPSAMPLE = [
    ["conv 1 1x1 stride=2", "upsample 2", "upsample 2 bilinear"],
    ["conv 1 1x1 stride=2", "upsample 2", "conv 1 2x2"],
    ["conv 1 1x1 stride=3", "upsample 3", "conv 1 3x3"],
    ["conv 1 1x1 stride=2", "upsample 2 bilinear", "conv 1 2x2"],
    ["conv 1 1x1 stride=3", "convt 1 2x2 stride=2", "conv 1 2x2"],
    ["conv 1 1x1 stride=2", "convt 1 4x4 stride=2", "convt 1 3x3 stride=2"],
]


@pytest.mark.parametrize("lines", STRIDE_THEN_UPSAMPLE, ids=" ; ".join)
def test_field_after_a_stride_then_upsampling(lines):
    keras_field, field = fields(lines)
    assert keras_field == field


LAYERS = ["upsample {s}", "upsample {s} bilinear", "convt 1 {k}x{k} stride={s}",
          "convt 1 {k}x{k} stride={s} same", "conv 1 {k}x{k} stride={s}",
          "conv 1 {k}x{k} stride={s} same", "local 1 {k}x{k} stride={s}", "crop 1"]


# derandomize: the same chains on every run, so CI is reproducible. Known limit of this
# measurement: when a last stride keeps only outputs at `same` padding's edges (`conv 1x1
# stride=2; conv 3x3 stride=2 same; conv 1x1 stride=3`), no output shows the whole field.
@settings(max_examples=12, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(chain=st.lists(st.tuples(st.sampled_from(LAYERS), st.integers(1, 4),
                                st.integers(1, 3)), min_size=1, max_size=3))
def test_field_bounds_keras_and_is_exact_without_upsampling(chain):
    lines = [layer.format(k=k, s=s) for layer, k, s in chain]
    result = fields(lines)
    if result is None or max(result[1]) > SIDE // 2:
        return  # refused, or a field the input is too small to show whole
    keras_field, field = result
    upsamples = any(line.startswith(("upsample", "convt")) and s > 1
                    for line, (_, _, s) in zip(lines, chain, strict=True))
    if upsamples:
        assert all(k <= f for k, f in zip(keras_field, field, strict=True)), lines
    else:
        assert keras_field == field, lines
