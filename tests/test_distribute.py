"""`cnndsl train --strategy`: settings, MirroredStrategy over two logical CPUs, and
MultiWorkerMirroredStrategy with two real worker processes on 127.0.0.1 — one of them
killed mid-run and restarted.

Every training runs in its own process: logical devices and TF_CONFIG must be set before
TensorFlow initialises, and a worker is a process. Tiny network, a few hundred images.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, run_cnndsl

from cnndsl.analysis.graph import TrainEntry
from cnndsl.analysis.train_section import TrainConfig, apply_overrides, validate_train
from cnndsl.analysis.values import Word
from cnndsl.training.distribute import chief_task, is_chief, where_the_chief_writes

TINY = """network tiny {
  input 8x8x1
  conv 4 3x3 relu
  flatten
  dense 3 softmax as out
}
train {
  optimizer adam lr=0.01
  epochs 3
  batch 16
  validation_split 0.2
  seed 1
}
"""
WORKER_TIMEOUT = 150  # seconds: a hung collective must fail the test, not hang it


def write_data(path: Path, n_train: int, n_test: int = 90) -> Path:
    """Learnable 8x8 images: class k lights up band k."""
    rng = np.random.default_rng(0)
    n = n_train + n_test
    y = rng.integers(0, 3, n).astype(np.uint8)
    x = rng.integers(0, 60, (n, 8, 8)).astype(np.uint8)
    for k in range(3):
        x[y == k, 2 * k:2 * k + 2] += 150
    np.savez(path, x_train=x[:n_train], y_train=y[:n_train], x_test=x[n_train:],
             y_test=y[n_train:])
    return path


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    net = tmp_path / "tiny.cnn"
    net.write_text(TINY)
    return net


def metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


# ----------------------------------------------------------------------------- settings


def test_strategy_is_a_checked_train_setting():
    config, diagnostics = validate_train([TrainEntry("strategy", (Word("mirrored"),), {}, None)])
    assert config.strategy == "mirrored" and not diagnostics
    _, diagnostics = validate_train([TrainEntry("strategy", (Word("mirored"),), {}, None)])
    assert diagnostics[0].message == "unknown strategy `mirored`"
    assert "mirrored" in diagnostics[0].hint
    assert TrainConfig().strategy == "auto"
    assert apply_overrides(TrainConfig(), {"strategy": "multiworker"}).strategy == "multiworker"
    # `check` validates the setting without TensorFlow; distribute imports it lazily too.
    code = ("import sys, cnndsl.analysis.train_section, cnndsl.training.distribute; "
            "sys.exit('tensorflow' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT, timeout=60).returncode == 0


def test_the_chief_is_the_chief_task_or_worker_0():
    cluster = {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}
    assert is_chief({"cluster": cluster, "task": {"type": "worker", "index": 0}})
    assert not is_chief({"cluster": cluster, "task": {"type": "worker", "index": 1}})
    with_chief = {**cluster, "chief": ["127.0.0.1:3"]}
    assert is_chief({"cluster": with_chief, "task": {"type": "chief", "index": 0}})
    assert not is_chief({"cluster": with_chief, "task": {"type": "worker", "index": 0}})
    assert chief_task({"cluster": cluster}) == "worker 0 at 127.0.0.1:1"
    assert chief_task({"cluster": with_chief}) == "chief 0 at 127.0.0.1:3"


def test_a_worker_without_the_chiefs_folder_says_so(tmp_path):
    """A worker's --out is the chief's run folder only when it holds the epochs this worker
    trained (the shared case is in the two-process tests)."""
    config = {"cluster": {"worker": ["10.0.0.1:5000", "10.0.0.2:5000"]},
              "task": {"type": "worker", "index": 1}}
    trained = [{"epoch": 1, "loss": 0.5}]
    elsewhere = ("the chief (worker 0 at 10.0.0.1:5000) writes the run folder at its own "
                 "--out; `{}` here is not that folder")
    missing = tmp_path / "run"
    assert where_the_chief_writes(config, missing, trained).startswith(
        elsewhere.format(missing))
    missing.mkdir()  # a folder of another run, or of an older copy of this one
    (missing / "state.json").write_text(json.dumps(
        {"epoch": 1, "checkpoint": "checkpoints/ckpt-1", "history": [{"epoch": 1, "loss": 0.7}]}))
    assert where_the_chief_writes(config, missing, trained).startswith(
        elsewhere.format(missing))
    assert where_the_chief_writes(config, missing, [{"epoch": 1, "loss": 0.7}]) == (
        f"the chief (worker 0 at 10.0.0.1:5000) writes the run folder, `{missing.resolve()}` "
        "here")


def test_usage_errors_before_training(tiny, tmp_path):
    data = write_data(tmp_path / "d.npz", 60)
    result = run_cnndsl("train", str(tiny), "--data", str(data), "--strategy", "one",
                        "--devices", "/cpu:0,/cpu:1", "--out", str(tmp_path / "r"))
    assert result.returncode == 2 and "--devices goes with `--strategy mirrored`" in result.stderr
    result = run_cnndsl("train", str(tiny), "--data", str(data), "--strategy", "multiworker")
    assert result.returncode == 2 and "needs `--out DIR`" in result.stderr
    result = run_cnndsl("train", str(tiny), "--data", str(data), "--strategy", "multiworker",
                        "--out", str(tmp_path / "r2"), env={"TF_CONFIG": ""})
    assert result.returncode == 2 and "needs TF_CONFIG" in result.stderr
    one_worker = json.dumps({"cluster": {"worker": [f"127.0.0.1:{free_ports(1)[0]}"]},
                             "task": {"type": "worker", "index": 0}})
    result = run_cnndsl("train", str(tiny), "--data", str(data), "--strategy", "multiworker",
                        "--out", str(tmp_path / "r3"), "--mixed-precision",
                        env={"TF_CONFIG": one_worker})
    assert result.returncode == 2 and "--mixed-precision is not available" in result.stderr


# ----------------------------------------------------------------------------- mirrored


def test_mirrored_over_two_cpus_learns_as_one_device_does(tiny, tmp_path):
    """Two replicas of 16 see the same 32-image batches as one device with batch 32."""
    data = write_data(tmp_path / "d.npz", 300)
    mirrored, one = tmp_path / "mirrored", tmp_path / "one"
    result = run_cnndsl("train", str(tiny), "--data", str(data), "--out", str(mirrored),
                        "--strategy", "mirrored", "--devices", "/cpu:0,/cpu:1")
    assert result.returncode == 0, result.stderr
    assert "strategy: mirrored, 2 replicas; batch 16 per replica, 32 global" in result.stdout
    assert "32 global = 16 per replica x 2" in result.stdout
    result = run_cnndsl("train", str(tiny), "--data", str(data), "--out", str(one),
                        "--strategy", "one", "--batch", "32")
    assert result.returncode == 0, result.stderr
    m, o = metrics(mirrored), metrics(one)
    assert (m["strategy"], m["replicas"], m["global_batch"]) == ("mirrored", 2, 32)
    assert (o["strategy"], o["replicas"], o["global_batch"]) == ("one", 1, 32)
    assert m["test_accuracy"] > 0.9
    assert abs(m["test_accuracy"] - o["test_accuracy"]) <= 0.05
    assert abs(m["test_loss"] - o["test_loss"]) <= 0.05

    # --resume keeps the strategy and devices of the run.
    result = run_cnndsl("train", "--resume", str(mirrored), "--epochs", "4")
    assert result.returncode == 0, result.stderr
    assert "after epoch 3 of 4" in result.stdout and metrics(mirrored)["replicas"] == 2


# ----------------------------------------------------------------------------- multiworker


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class Cluster:
    """Two workers on 127.0.0.1, each in its own working and temporary folder."""

    def __init__(self, tmp_path: Path, net: Path, data: Path, epochs: int, *extra: str) -> None:
        self.tmp_path = tmp_path
        self.run = tmp_path / "run"
        self.addresses = [f"127.0.0.1:{p}" for p in free_ports(2)]
        self.args = ["-m", "cnndsl", "train", str(net), "--data", str(data), "--out",
                     str(self.run), "--strategy", "multiworker", "--epochs", str(epochs),
                     "--batch", "16", *extra]
        self.procs: dict[int, subprocess.Popen] = {}
        self.logs: dict[int, list[Path]] = {0: [], 1: []}

    def folder(self, index: int, kind: str) -> Path:
        path = self.tmp_path / f"worker{index}-{kind}"
        path.mkdir(exist_ok=True)
        return path

    def start(self, index: int) -> None:
        tf_config = {"cluster": {"worker": self.addresses},
                     "task": {"type": "worker", "index": index}}
        env = {**os.environ, "TF_CONFIG": json.dumps(tf_config), "NO_COLOR": "1",
               "TF_CPP_MIN_LOG_LEVEL": "3", "TMPDIR": str(self.folder(index, "tmp")),
               "PYTHONPATH": str(ROOT)}
        log = self.tmp_path / f"worker{index}-{len(self.logs[index])}.log"
        self.logs[index].append(log)
        with open(log, "w") as out:
            self.procs[index] = subprocess.Popen([sys.executable, *self.args],
                                                 cwd=self.folder(index, "cwd"), env=env,
                                                 stdout=out, stderr=subprocess.STDOUT)

    def log(self, index: int) -> str:
        return "\n".join(p.read_text() for p in self.logs[index])

    def wait(self) -> None:
        deadline = time.monotonic() + WORKER_TIMEOUT
        try:
            for index, proc in self.procs.items():
                code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
                assert code == 0, self.log(index)
        finally:
            self.stop()

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    def wait_for_epoch(self, epoch: int) -> int:
        deadline = time.monotonic() + WORKER_TIMEOUT
        while time.monotonic() < deadline:
            for index, proc in self.procs.items():
                if proc.poll() is not None:
                    self.stop()
                    pytest.fail(f"worker {index} ended early:\n{self.log(index)}")
            try:
                done = json.loads((self.run / "state.json").read_text())["epoch"]
                if done >= epoch:
                    return done
            except (FileNotFoundError, ValueError):
                pass
            time.sleep(0.05)
        self.stop()
        pytest.fail("training did not reach the epoch in time")


def history(run: Path) -> list[int]:
    return [row["epoch"] for row in json.loads((run / "state.json").read_text())["history"]]


def assert_only_the_chief_wrote(cluster: Cluster, *extra: str) -> None:
    for index in (0, 1):  # nothing in either working folder; the scratch folder removed
        assert not list(cluster.folder(index, "cwd").iterdir())
        assert not list(cluster.folder(index, "tmp").glob("cnndsl-worker-*"))
    names = {p.name for p in cluster.run.iterdir()}
    assert names == {"run.json", "state.json", "history.csv", "checkpoints", "model.keras",
                     "metrics.json", "curves.png", "filters.png", "run.lock", *extra}
    checkpoints = {p.name for p in (cluster.run / "checkpoints").iterdir()}
    assert checkpoints <= {"checkpoint", *(f"ckpt-{n}.{ext}" for n in range(1, 99)
                                           for ext in ("index", "data-00000-of-00001"))}


def test_multiworker_two_processes(tiny, tmp_path):
    data = write_data(tmp_path / "d.npz", 300)
    cluster = Cluster(tmp_path, tiny, data, epochs=2)
    cluster.start(0)
    cluster.start(1)
    cluster.wait()
    m = metrics(cluster.run)
    assert "test accuracy" in cluster.log(0) and "32 global = 16 per replica x 2" in cluster.log(0)
    assert (f"worker done: test accuracy {m['test_accuracy']:.2%}; the chief (worker 0 at "
            f"{cluster.addresses[0]}) writes the run folder, `{cluster.run}` here"
            in cluster.log(1))
    assert (m["strategy"], m["replicas"], m["workers"], m["global_batch"]) == (
        "multiworker", 2, 2, 32)
    assert m["epochs"] == 2 and m["test_accuracy"] > 0.8
    assert history(cluster.run) == [1, 2]
    assert_only_the_chief_wrote(cluster)
    result = run_cnndsl("evaluate", str(cluster.run))
    assert result.returncode == 0 and "test accuracy" in result.stdout, result.stderr


def epoch_lines(log: str) -> list[tuple[str, str]]:
    """The line that ends each epoch (not the timed progress lines), without its duration:
    each worker times its own epochs, but their numbers are the same all-reduced ones."""
    return re.findall(r"^(epoch \d+/\d+): \S+, (loss .*)$", log, re.M)


def saved_model_loss(run: Path, *args: str) -> float:
    result = run_cnndsl("evaluate", str(run), *args)
    assert result.returncode == 0, result.stderr
    return float(re.search(r"test loss (\d+\.\d+)", result.stdout).group(1))


def test_multiworker_early_stopping(tiny, tmp_path):
    """min_delta 10 makes no epoch after the first an improvement: with patience 1 both
    workers stop after epoch 2 of 3 and restore epoch 1's weights; resuming behaves as
    after a single-worker stop."""
    data = write_data(tmp_path / "d.npz", 300)
    cluster = Cluster(tmp_path, tiny, data, 3, "--early-stopping",
                      "monitor=val_loss,patience=1,min_delta=10,restore_best=true")
    cluster.start(0)
    cluster.start(1)
    cluster.wait()
    logs = [cluster.log(0), cluster.log(1)]
    for log in logs:  # the same decision, from the same all-reduced numbers
        assert ("early stopping: val_loss has not improved by 10 for 1 epoch; stopping after "
                "epoch 2") in log
        assert "early stopping: restored the weights of epoch 1, the best val_loss" in log
    assert len(epoch_lines(logs[0])) == 2 and epoch_lines(logs[0]) == epoch_lines(logs[1])
    state = json.loads((cluster.run / "state.json").read_text())
    first, second = state["history"]
    assert state["done"] and state["stopped_early"] and history(cluster.run) == [1, 2]
    assert state["early_stopping"] == {"wait": 1, "best_epoch": 0, "best": first["val_loss"],
                                       "best_weights": "best-1.weights.h5"}
    m = metrics(cluster.run)
    assert m["epochs"] == 2
    assert_only_the_chief_wrote(cluster, "best-1.weights.h5")
    # The saved model holds epoch 1's weights: its loss on the validation rows (the last
    # 20% of the training rows) is epoch 1's val_loss, not epoch 2's.
    arrays = dict(np.load(data))
    validation = tmp_path / "validation.npz"
    np.savez(validation, **{**arrays, "x_test": arrays["x_train"][240:],
                            "y_test": arrays["y_train"][240:]})
    val_loss = saved_model_loss(cluster.run, "--data", str(validation))
    assert abs(val_loss - first["val_loss"]) < 2e-4 and abs(val_loss - second["val_loss"]) > 0.01
    # Both workers restored them: the test loss they reduced together is the saved model's.
    assert abs(saved_model_loss(cluster.run) - m["test_loss"]) < 2e-4

    result = run_cnndsl("train", "--resume", str(cluster.run), "--epochs", "5")
    assert result.returncode == 0, result.stderr
    assert "complete after 2 epochs; nothing to resume (early stopping ended it)" in result.stdout

    # Killed after committing the stop, before the final files: the same command on both
    # workers writes them, each worker restoring the best weights from the chief's file.
    (cluster.run / "model.keras").unlink()
    (cluster.run / "metrics.json").unlink()
    (cluster.run / "state.json").write_text(json.dumps({**state, "done": False}))
    cluster.start(0)
    cluster.start(1)
    cluster.wait()
    for index in (0, 1):
        log = cluster.logs[index][-1].read_text()
        assert "finished its 2 epochs but not its final files" in log and not epoch_lines(log)
        assert "early stopping: restored the weights of epoch 1" in log
    again = metrics(cluster.run)
    assert again["epochs"] == 2 and abs(again["test_loss"] - m["test_loss"]) < 1e-6


@pytest.mark.parametrize("killed", [1, 0], ids=["worker", "chief"])
def test_a_killed_worker_restarts_and_the_job_continues(tiny, tmp_path, killed):
    data = write_data(tmp_path / "d.npz", 600)
    epochs = 6
    cluster = Cluster(tmp_path, tiny, data, epochs=epochs)
    cluster.start(0)
    cluster.start(1)
    done = cluster.wait_for_epoch(2)
    cluster.procs[killed].send_signal(signal.SIGKILL)
    cluster.procs[killed].wait(timeout=30)
    assert done < epochs, "the worker must die mid-run"
    if killed == 1:  # an unfinished multiworker run evaluates its tf.train checkpoint
        result = run_cnndsl("evaluate", str(cluster.run))
        assert result.returncode == 0 and "last checkpoint" in result.stderr, result.stderr
    cluster.start(killed)  # the same command: it rejoins, and the survivor restarts too
    cluster.wait()
    survivor = 1 - killed
    assert "restarting this worker to rejoin the cluster" in cluster.log(survivor)
    resumed = json.loads((cluster.run / "state.json").read_text())
    assert resumed["done"] and history(cluster.run) == list(range(1, epochs + 1))
    assert "resuming" in cluster.log(killed) and metrics(cluster.run)["epochs"] == epochs
    assert_only_the_chief_wrote(cluster)
