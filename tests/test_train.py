"""`cnndsl train` and `cnndsl evaluate`, for real: tiny networks, real Keras, real files.

A training process is killed (SIGKILL) and interrupted (SIGINT) mid-run and resumed; data
that does not fit the network stops with one line before anything trains; offline, MNIST
falls back to the bundled sample (the failed download is simulated, the network untouched).
"""

from __future__ import annotations

import csv
import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
import pytest
from conftest import EXAMPLES, ROOT

from cnndsl.training import datasets
from cnndsl.training.commands import evaluate_command, train_command

TINY = """network tiny {
  input 8x8x1
  conv 4 3x3 relu
  flatten
  dense 3 softmax as out
}
train {
  optimizer adam lr=0.01
  loss categorical_crossentropy
  metrics accuracy
  epochs 2
  batch 32
  validation_split 0.2
  seed 1
}
"""
# Keras's own tensor-to-numpy conversion, not ours; numpy 2 warns about it on every call.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
DOWNLOAD_ERROR = ("URL fetch failure on https://storage.googleapis.com/tensorflow/"
                  "tf-keras-datasets/mnist.npz: None -- [Errno -2] Name or service not known")


def images(n: int, seed: int = 0, shape=(8, 8), classes: int = 3):
    """Learnable images: class k lights up band k; uint8 like MNIST."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n).astype(np.uint8)
    x = rng.integers(0, 60, (n, *shape)).astype(np.uint8)
    band = shape[0] // classes
    for k in range(classes):
        x[y == k, k * band:(k + 1) * band] += 150
    return x, y


def write_npz(path: Path, n_train=300, n_test=90, **kw) -> Path:
    x, y = images(n_train + n_test, **kw)
    np.savez(path, x_train=x[:n_train], y_train=y[:n_train], x_test=x[n_train:],
             y_test=y[n_train:])
    return path


@pytest.fixture
def tiny(tmp_path) -> tuple[Path, Path]:
    net = tmp_path / "tiny.cnn"
    net.write_text(TINY)
    return net, write_npz(tmp_path / "tiny.npz")


def history_epochs(run: Path) -> list[int]:
    with open(run / "history.csv") as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


# ----------------------------------------------------------------------------- a whole run


def test_a_run_writes_every_file_and_evaluates_again(tiny, tmp_path, capsys):
    net, data = tiny
    run = tmp_path / "run"
    assert train_command(net, out=run, data=data, verbose=0) == 0
    out = capsys.readouterr().out
    assert "device: CPU" in out and "test accuracy" in out and "seconds per epoch" in out
    for name in ("model.keras", "history.csv", "metrics.json", "curves.png", "filters.png",
                 "run.json", "state.json"):
        assert (run / name).exists(), name
    assert not list(run.glob(".*tmp*")), "a temporary file was left behind"
    for png in ("curves.png", "filters.png"):
        assert (run / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs"] == 2 and metrics["params"] == 4 * 10 + 6 * 6 * 4 * 3 + 3
    assert metrics["dataset"] == "tiny.npz" and metrics["device"].startswith("CPU")
    assert metrics["test_accuracy"] > 0.6 and metrics["seconds_per_epoch"] > 0
    assert (metrics["backend"], metrics["backend_version"]) == (  # the default backend
        "tensorflow", sys.modules["tensorflow"].__version__)
    assert json.loads((run / "run.json").read_text())["config"]["backend"] == "tensorflow"
    assert history_epochs(run) == [1, 2]
    with open(run / "history.csv") as f:
        assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(next(csv.DictReader(f)))
    model = keras.models.load_model(run / "model.keras")
    assert [layer.name for layer in model.layers] == ["input", "conv_1", "flatten_1", "out"]

    assert evaluate_command(run) == 0
    assert f"test accuracy {metrics['test_accuracy']:.2%}" in capsys.readouterr().out


def test_overrides_from_the_command_line(tiny, tmp_path):
    net, data = tiny
    run = tmp_path / "run"
    assert train_command(net, out=run, data=data, verbose=0, epochs=1, batch=64, lr=1e-3,
                         early_stopping="monitor=val_loss,patience=3") == 0
    config = json.loads((run / "run.json").read_text())["config"]
    assert (config["epochs"], config["batch"]) == (1, 64)
    assert config["optimizer_options"] == {"learning_rate": 1e-3}
    assert config["early_stopping"]["patience"] == 3
    assert history_epochs(run) == [1]


def test_usage_errors(tiny, tmp_path, capsys):
    net, data = tiny
    assert train_command(net, out=tmp_path / "r", data=data, epochs=0) == 2
    assert capsys.readouterr().err == "error: `epochs` must be at least 1, not 0\n"
    assert train_command(None) == 2
    assert train_command(tmp_path / "missing.cnn") == 2
    assert "no such file" in capsys.readouterr().err
    assert evaluate_command(tmp_path) == 2
    assert "is not a run folder" in capsys.readouterr().err


def test_an_existing_run_is_not_overwritten(tiny, tmp_path, capsys):
    net, data = tiny
    run = tmp_path / "run"
    assert train_command(net, out=run, data=data, verbose=0, epochs=1) == 0
    assert train_command(net, out=run, data=data, verbose=0) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert train_command(resume=run) == 0  # one epoch asked, one done
    assert "is complete after 1 epochs" in capsys.readouterr().out


def test_train_section_errors_are_rendered_and_stop(tmp_path, capsys):
    net = tmp_path / "bad.cnn"
    net.write_text(TINY.replace("epochs 2", "epoch 2"))
    assert train_command(net, out=tmp_path / "run") == 1
    err = capsys.readouterr().err
    assert "error: unknown train setting `epoch`" in err
    assert f"{net}:11:3" in err and "did you mean `epochs`?" in err
    assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------- data


@pytest.mark.parametrize(("kw", "message"), [
    ({"shape": (32, 32, 3)}, "error: the training images are 32x32x3 but the network's "
                             "input is 8x8x1\n"),
    ({"classes": 5}, "error: the data has 5 classes but the network's output is 3; make the "
                     "last layer `dense 5 softmax`\n"),
])
def test_data_that_does_not_fit_stops_before_training(tiny, tmp_path, capsys, kw, message):
    net, _ = tiny
    data = write_npz(tmp_path / "other.npz", **kw)
    assert train_command(net, out=tmp_path / "run", data=data) == 1
    assert capsys.readouterr().err == message
    assert not (tmp_path / "run").exists()


def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        d.to_bytes(4, "big") for d in array.shape)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_an_idx_folder_gzipped_or_not(tiny, tmp_path):
    net, _ = tiny
    x, y = images(200)
    folder = tmp_path / "idx"
    folder.mkdir()
    write_idx(folder / "train-images-idx3-ubyte.gz", x[:150])
    write_idx(folder / "train-labels-idx1-ubyte", y[:150])
    write_idx(folder / "t10k-images-idx3-ubyte", x[150:])
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", y[150:])
    data = datasets.load_path(folder)
    assert np.array_equal(data.x_train, x[:150]) and np.array_equal(data.y_test, y[150:])
    assert train_command(net, out=tmp_path / "run", data=folder, verbose=0, epochs=1) == 0

    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(datasets.DataError, match=r"no `t10k-labels-idx\.\.\.` file"):
        datasets.load_path(folder)
    (folder / "broken-idx").write_bytes(b"\x00\x00\x08\x03" + (9).to_bytes(4, "big") * 3)
    with pytest.raises(datasets.DataError, match="truncated"):
        datasets.read_idx(folder / "broken-idx")


def test_an_npz_of_x_and_y_splits_80_20_the_same_way_every_time(tmp_path):
    x, y = images(100)
    np.savez(tmp_path / "xy.npz", x=x, y=y)
    a, b = datasets.load_path(tmp_path / "xy.npz"), datasets.load_path(tmp_path / "xy.npz")
    assert (len(a.x_train), len(a.x_test)) == (80, 20)
    assert np.array_equal(a.x_train, b.x_train) and np.array_equal(a.y_test, b.y_test)
    np.savez(tmp_path / "bad.npz", images=x)
    with pytest.raises(datasets.DataError, match="expected x_train"):
        datasets.load_path(tmp_path / "bad.npz")


def test_labels_are_matched_to_the_loss():
    x, y = images(40)
    one_hot = np.eye(3, dtype=np.float32)[y]
    sparse = datasets.Data(x, y, x, y, "s")
    hot = datasets.Data(x, one_hot, x, one_hot, "h")
    shape = ((8, 8, 1), (3,))
    assert datasets.prepare(sparse, *shape, "categorical_crossentropy").loss == \
        "sparse_categorical_crossentropy"
    p = datasets.prepare(hot, *shape, "categorical_crossentropy")
    assert (p.loss, p.y_train.shape) == ("categorical_crossentropy", (40, 3))
    p = datasets.prepare(hot, *shape, "sparse_categorical_crossentropy")
    assert np.array_equal(p.y_train, y)
    p = datasets.prepare(sparse, *shape, "mse")
    assert p.y_train.shape == (40, 3)
    assert p.x_train.dtype == np.float32 and p.x_train.max() <= 1.0


def test_offline_mnist_falls_back_to_the_bundled_sample(monkeypatch, tmp_path, capsys):
    def no_network(*args, **kwargs):
        raise Exception(DOWNLOAD_ERROR)  # what keras.utils.get_file raises offline

    monkeypatch.setattr(keras.datasets.mnist, "load_data", no_network)
    notices: list[str] = []
    data = datasets.load_named("mnist", notices.append)
    again = datasets.load_named("mnist", notices.append)
    assert data.name == "mnist-5k" and (len(data.x_train), len(data.x_test)) == (4000, 1000)
    assert np.array_equal(data.y_train, again.y_train)  # the same split every time
    with np.load(datasets.BUNDLED_MNIST) as raw:  # a shuffled split: no slice of the file
        y = raw["y"]
    assert not any(np.array_equal(data.y_test, y[i:i + 1000]) for i in (0, 4000))
    assert np.array_equal(np.bincount(data.y_train) + np.bincount(data.y_test), np.bincount(y))
    assert notices[0].startswith("`mnist` could not be downloaded; using the bundled")
    assert (datasets.BUNDLED_MNIST.parent / "README.md").read_text().count("CC BY-SA 3.0")

    # The example trains out of the box (one epoch here, to stay quick).
    run = tmp_path / "run"
    assert train_command(EXAMPLES / "mnist.cnn", out=run, epochs=1, verbose=0) == 0
    assert "using the bundled 5,000-image MNIST sample" in capsys.readouterr().err
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["dataset"] == "mnist-5k" and metrics["test_accuracy"] > 0.5

    monkeypatch.setattr(keras.datasets.cifar10, "load_data", no_network)
    with pytest.raises(datasets.DataError, match="cannot load the `cifar10` dataset"):
        datasets.load_named("cifar10")


# ----------------------------------------------------------------------------- interruptions

RUNNER = """import sys
from pathlib import Path
from cnndsl.training.commands import train_command
sys.exit(train_command(Path(sys.argv[1]), out=Path(sys.argv[2]), data=Path(sys.argv[3]),
                       epochs=int(sys.argv[4]), verbose=0,
                       early_stopping="patience=100,restore_best=true"))
"""


def start_training(tiny, tmp_path, epochs: int) -> tuple[subprocess.Popen, Path]:
    net, _ = tiny
    data = write_npz(tmp_path / "big.npz", n_train=3000, n_test=100)
    run = tmp_path / "run"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.Popen([sys.executable, "-c", RUNNER, str(net), str(run), str(data),
                             str(epochs)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    return proc, run


def wait_for_epoch(proc: subprocess.Popen, run: Path, epoch: int) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            if json.loads((run / "state.json").read_text())["epoch"] >= epoch:
                return
        except (FileNotFoundError, ValueError):
            pass
        time.sleep(0.02)
    proc.kill()
    pytest.fail("training did not reach the epoch in time")


def test_sigkill_mid_run_then_resume_loses_and_repeats_no_epoch(tiny, tmp_path, capsys):
    proc, run = start_training(tiny, tmp_path, epochs=25)
    wait_for_epoch(proc, run, 3)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    done = json.loads((run / "state.json").read_text())["epoch"]
    assert 3 <= done < 25, "the process must die mid-run"
    # state.json is the commit point; the kill may land before history.csv follows it
    assert history_epochs(run) in (list(range(1, done)), list(range(1, done + 1)))
    assert not (run / "model.keras").exists()

    assert evaluate_command(run) == 0  # an unfinished run evaluates its last checkpoint
    assert "last checkpoint" in capsys.readouterr().err

    assert train_command(resume=run, verbose=0) == 0
    assert f"after epoch {done} of 25" in capsys.readouterr().out
    assert history_epochs(run) == list(range(1, 26))
    assert json.loads((run / "metrics.json").read_text())["epochs"] == 25
    assert [p.name for p in run.glob("checkpoint-*.keras")] == ["checkpoint-25.keras"]
    # Early stopping carried its state across the kill: the best weights stay on disk.
    state = json.loads((run / "state.json").read_text())
    assert (run / state["early_stopping"]["best_weights"]).is_file()
    assert len(list(run.glob("best-*.weights.h5"))) == 1


def test_early_stopping_restores_the_best_weights_and_ends_the_run(tiny, tmp_path, capsys):
    net, data = tiny
    run = tmp_path / "run"
    assert train_command(net, out=run, data=data, verbose=0, epochs=40, lr=0.5,
                         early_stopping="monitor=loss,patience=1,restore_best=true") == 0
    state = json.loads((run / "state.json").read_text())
    assert state["stopped_early"] and state["epoch"] < 40
    best = state["early_stopping"]
    model = keras.models.load_model(run / "model.keras")
    saved = keras.models.load_model(run / "model.keras")
    saved.load_weights(run / best["best_weights"])
    for a, b in zip(model.get_weights(), saved.get_weights(), strict=True):
        assert np.array_equal(a, b)
    capsys.readouterr()
    assert train_command(resume=run) == 0
    assert "nothing to resume (early stopping ended it)" in capsys.readouterr().out


def test_ctrl_c_exits_cleanly_with_the_run_saved(tiny, tmp_path):
    proc, run = start_training(tiny, tmp_path, epochs=25)
    wait_for_epoch(proc, run, 2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted:" in err and f"--resume {run}" in err and "Traceback" not in err
    done = json.loads((run / "state.json").read_text())["epoch"]
    assert history_epochs(run) == list(range(1, done + 1))
    assert (run / "curves.png").exists()
    assert train_command(resume=run, verbose=0, epochs=done + 1) == 0
    assert history_epochs(run) == list(range(1, done + 2))
