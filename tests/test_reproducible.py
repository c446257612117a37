"""A seed reproduces a run: the same seed gives the same loss every epoch (to 1e-6 on CPU)
and the same test accuracy; another seed gives another run; and on the bundled MNIST
sample the README's per-seed accuracies are what `train` gets."""

from __future__ import annotations

import csv
import json
import re
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from conftest import EXAMPLES, ROOT

from cnndsl.training import datasets
from cnndsl.training.commands import train_command

EPOCHS = 3


@cache
def run(seed: int, attempt: int, out: Path) -> tuple[np.ndarray, float]:
    """Loss per epoch and test accuracy of the seed MNIST network, 3 epochs, seed `seed`."""
    folder = out / f"seed{seed}-{attempt}"
    assert train_command(EXAMPLES / "mnist.cnn", out=folder, data=datasets.BUNDLED_MNIST,
                         epochs=EPOCHS, seed=seed, verbose=0) == 0
    with (folder / "history.csv").open() as f:
        loss = np.array([float(row["loss"]) for row in csv.DictReader(f)])
    return loss, json.loads((folder / "metrics.json").read_text())["test_accuracy"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    return lambda seed, attempt=0: run(seed, attempt, out)


def test_same_seed_same_history_other_seed_other(runs):
    loss, accuracy = runs(42)
    again, accuracy_again = runs(42, 1)
    assert len(loss) == EPOCHS
    np.testing.assert_allclose(again, loss, rtol=0, atol=1e-6)
    assert accuracy_again == accuracy
    other, _ = runs(1)
    assert np.abs(other - loss).max() > 1e-3


def test_readme_accuracies_per_seed(runs):
    row = next(line for line in (ROOT / "README.md").read_text().splitlines()
               if line.startswith("| offline, bundled sample, 3 epochs, seed 42 / 1 / 2"))
    stated = [float(p) for p in re.findall(r"(\d+\.\d)%", row)[:3]]
    measured = [round(100 * runs(seed)[1], 1) for seed in (42, 1, 2)]
    assert measured == stated
