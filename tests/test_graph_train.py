"""`cnndsl train` and `evaluate` for graph networks, for real: several outputs fed the one
label set, per-output losses and weights, several inputs read from named .npz arrays."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest
from test_train import images, write_npz

from cnndsl.analysis.pipeline import analyse
from cnndsl.training.commands import evaluate_command, train_command

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

TWO_OUTPUTS = """network two_heads {
  input 8x8x1
  conv 4 3x3 relu as features
  flatten
  dense 3 softmax as main
  @features
  globalavgpool
  dense 3 softmax as aux
  outputs @main @aux
}
train {
  optimizer adam lr=0.01
  loss main=categorical_crossentropy aux=mse
  loss_weights main=1 aux=0.5
  metrics accuracy
  epochs 2
  batch 32
  seed 1
}
"""

TWO_INPUTS = """network pair {
  input 8x8x1 as left
  flatten as l
  input 8x8x1 as right
  flatten as r
  concat @l @r
  dense 3 softmax
}
train {
  epochs 1
  batch 32
}
"""


def test_several_outputs_train_on_one_label_set_with_their_own_losses(tmp_path, capsys):
    net = tmp_path / "two.cnn"
    net.write_text(TWO_OUTPUTS)
    run = tmp_path / "run"
    assert train_command(net, out=run, data=write_npz(tmp_path / "d.npz"), verbose=0) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["loss"] == ["sparse_categorical_crossentropy", "mse"]
    for key in ("test_main_loss", "test_main_accuracy", "test_aux_loss", "test_aux_accuracy"):
        assert key in metrics, key
    # the weighted sum Keras minimises: main + 0.5 * aux
    assert metrics["test_loss"] == pytest.approx(
        metrics["test_main_loss"] + 0.5 * metrics["test_aux_loss"], rel=1e-3)
    assert metrics["test_main_accuracy"] > 0.6
    with open(run / "history.csv") as f:
        row = next(csv.DictReader(f))
    assert {"main_loss", "aux_loss", "main_accuracy", "aux_accuracy"} <= set(row)
    capsys.readouterr()
    assert evaluate_command(run) == 0
    assert "test loss" in capsys.readouterr().out


def pair_npz(path: Path, split: bool, drop: str | None = None) -> Path:
    x, y = images(200)
    arrays = {"x_left": x, "x_right": x[:, ::-1], "y": y}
    if split:
        arrays = {f"{k}_{part}" if k.startswith("x_") else f"y_{part}": v[rows]
                  for k, v in arrays.items()
                  for part, rows in (("train", slice(0, 150)), ("test", slice(150, None)))}
    arrays.pop(drop, None)
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize("split", [False, True])
def test_several_inputs_read_arrays_named_after_them(tmp_path, split):
    net = tmp_path / "pair.cnn"
    net.write_text(TWO_INPUTS)
    run = tmp_path / "run"
    assert train_command(net, out=run, data=pair_npz(tmp_path / "p.npz", split), verbose=0) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert (metrics["train_images"], metrics["test_images"]) == ((150, 50) if split
                                                                 else (160, 40))


@pytest.mark.parametrize("drop, data, message", [
    ("x_right", True, "has no array `x_right` for the input `right`"),
    (None, False, "has 2 inputs (left, right): give `--data FILE.npz` with the arrays "
                  "x_left, x_right and y"),
])
def test_several_inputs_without_their_arrays_is_one_line(tmp_path, capsys, drop, data, message):
    net = tmp_path / "pair.cnn"
    net.write_text(TWO_INPUTS)
    npz = pair_npz(tmp_path / "p.npz", False, drop) if data else None
    assert train_command(net, out=tmp_path / "run", data=npz, verbose=0) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_per_output_settings_must_name_outputs():
    result = analyse(TWO_OUTPUTS.replace("aux=0.5", "axu=0.5"))
    assert [(d.message, d.hint) for d in result.diagnostics] == [
        ("`loss_weights` names `axu`, which is not an output", "did you mean `aux`?")]


def test_the_built_module_compiles_each_output_with_its_loss_and_weight(tmp_path):
    import keras
    from test_build import build, load_module

    module = load_module(build(tmp_path, TWO_OUTPUTS, "two.cnn"))
    keras.backend.clear_session()
    model = module.compile_model(module.build_model())
    assert model.loss == ["categorical_crossentropy", "mse"]
    assert model._compile_loss._user_loss_weights == [1.0, 0.5]
    keras.backend.clear_session()
