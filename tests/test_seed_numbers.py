"""The numbers the seed notebooks teach, reproduced exactly by `analyse`.

Every value here is copied from the language reference's table "Numbers from the seeds that
the checker reproduces" and from its seed CIFAR-10 and MNIST networks.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cnndsl.analysis.pipeline import analyse
from cnndsl.backends import report
from cnndsl.common.diagnostics import WARNING

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def one_layer(input_shape: str, layer: str):
    result = analyse(f"network seed {{\n  input {input_shape}\n  {layer}\n}}\n")
    assert result.ok, result.diagnostics
    return result, result.analysis.layers[-1]


def shape(text: str) -> tuple[int, ...]:
    return tuple(int(d) for d in text.split("x"))


# (input, layer, output, params) -- the table, row by row.
SEED_TABLE = [
    ("32x32x3", "conv 20 8x8 stride=2 pad=1", "14x14x20", 3_860),
    ("32x32x3", "conv 20 8x8 stride=2 same", "16x16x20", 3_860),
    ("32x32x3", "conv 20 8x8 stride=2 valid", "13x13x20", 3_860),
    ("200x200x1", "conv 16 2x2 stride=2", "100x100x16", 80),
    ("200x200x1", "conv 16 4x4 stride=2", "99x99x16", 272),
    ("200x200x1", "conv 32 2x2 stride=2", "100x100x32", 160),
    ("480x480x3", "conv 16 2x2 stride=2", "240x240x16", 208),
    ("128x128x3", "conv 32 3x3 stride=2 same", "64x64x32", 896),
    ("100x100x15", "maxpool 2x2", "50x50x15", 0),
    ("4x4x1", "conv 3 4x4 stride=2 same", "2x2x3", 51),
    ("28x28x192", "conv 32 14x14 same", "28x28x32", 1_204_256),
]


@pytest.mark.parametrize(("input_shape", "layer", "output", "params"), SEED_TABLE)
def test_seed_table_row(input_shape, layer, output, params):
    result, last = one_layer(input_shape, layer)
    assert last.shape == shape(output)
    assert last.params == params
    assert last.trainable == params and last.non_trainable == 0
    # Every row's window tiles its input exactly: (input + 2 pad - kernel) divides by the
    # stride, or the padding is `same` -- so none of them warns.
    assert [d for d in result.diagnostics if d.severity == WARNING] == []


def test_seed_parameter_sharing_lesson():
    """The seed's lesson: the same layer without parameter sharing, a `local` layer, has
    its 8x8x3 weights and its bias for each of the 14x14x20 output neurons."""
    _, shared = one_layer("32x32x3", "conv 20 8x8 stride=2 pad=1")
    _, unshared = one_layer("32x32x3", "local 20 8x8 stride=2 pad=1")
    assert (shared.params, unshared.params) == (3_860, 756_560)
    assert shared.shape == unshared.shape == (14, 14, 20)
    assert shared.macs == unshared.macs
    data = report.to_json(analyse("network seed {\n  input 32x32x3\n"
                                  "  conv 20 8x8 stride=2 pad=1\n}\n"), "seed.cnn")
    assert data["layers"][1]["unshared_params"] == 756_560


def test_seed_table_macs():
    result, last = one_layer("28x28x192", "conv 32 14x14 same")
    assert last.macs == 944_111_616
    assert result.analysis.totals.macs == 944_111_616


def test_explicit_pad_row_tiles_exactly():
    """(32 + 2*1 - 8) = 26 divides by the stride 2: the explicit-pad row covers every row."""
    result, last = one_layer("32x32x3", "conv 20 8x8 stride=2 pad=1")
    assert not any("uncovered" in d.message for d in result.diagnostics)
    assert last.shape == (14, 14, 20)


def test_explicit_pad_that_does_not_tile_warns():
    """One row more, (33 + 2 - 8) = 27 is odd: the last row and column are never covered."""
    result, last = one_layer("33x33x3", "conv 20 8x8 stride=2 pad=1")
    assert last.shape == (14, 14, 20)
    warnings = [d.message for d in result.diagnostics if d.severity == WARNING]
    assert len(warnings) == 1 and "uncovered" in warnings[0]


CIFAR10 = """
network cifar10 {
    input 32x32x3
    conv 16 2x2 same relu
    maxpool 2x2
    conv 32 2x2 same relu
    maxpool 2x2
    conv 64 2x2 same relu
    maxpool 2x2
    flatten
    dense 500 relu
    dense 10 softmax
}
"""

MNIST = """
network mnist {
    input 28x28x1                     # height x width x channels (channels-last, as Keras)

    conv 8 3x3 relu                   # 26x26x8      80 params
    conv 16 3x3 stride=2 same relu    # 13x13x16   1168
    maxpool 2x2 same                  # 7x7x16        0
    flatten                           # 784
    dropout 0.25
    dense 64 relu as FC1              # 64        50240
    dropout 0.5
    dense 10 softmax as output        # 10          650   -> total 52,138
}

train {
    dataset mnist
    optimizer adam
    loss categorical_crossentropy
    metrics accuracy
    epochs 20
    batch 64
    validation_split 0.05
    early_stopping monitor=val_loss patience=2
}
"""


def layer_params(text: str) -> tuple[list[int], int]:
    result = analyse(text)
    assert result.ok, result.diagnostics
    analysis = result.analysis
    return [lay.params for lay in analysis.layers if lay.params], analysis.totals.params


@pytest.mark.parametrize("source", ["language.md", "examples/cifar10.cnn"])
def test_seed_cifar10_network(source):
    text = CIFAR10 if source == "language.md" else (EXAMPLES / "cifar10.cnn").read_text()
    per_layer, total = layer_params(text)
    assert per_layer == [208, 2_080, 8_256, 512_500, 5_010]
    assert total == 528_054


@pytest.mark.parametrize("source", ["language.md", "examples/mnist.cnn"])
def test_mnist_network(source):
    text = MNIST if source == "language.md" else (EXAMPLES / "mnist.cnn").read_text()
    result = analyse(text)
    assert result.ok, result.diagnostics
    analysis = result.analysis
    assert analysis.totals.params == 52_138
    shapes = [lay.shape for lay in analysis.layers]
    assert shapes == [(28, 28, 1), (26, 26, 8), (13, 13, 16), (7, 7, 16), (784,), (784,),
                      (64,), (64,), (10,)]
    assert [lay.params for lay in analysis.layers] == [0, 80, 1_168, 0, 0, 0, 50_240, 0, 650]
