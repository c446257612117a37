"""Issue 12 for `train` and `evaluate`: one trainer per run folder (two real processes), runs
killed at their end and finished by `--resume`, early stopping that stops at the same epoch
after a real SIGKILL, run folders that are damaged or point outside themselves, bad data."""

from __future__ import annotations

import gzip
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import zipfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
import pytest
from conftest import ROOT, run_cnndsl
from test_train import TINY, images, write_npz

from cnndsl.training import datasets
from cnndsl.training.commands import evaluate_command, train_command
from cnndsl.training.runlock import LOCK

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
ENV = {"TF_CPP_MIN_LOG_LEVEL": "3"}


def noisy_npz(path: Path, n: int = 900) -> Path:
    """Data whose validation loss wanders, so early stopping has something to decide."""
    x, y = images(n)
    rng = np.random.default_rng(5)
    flip = rng.random(n) < 0.4
    y[flip] = rng.integers(0, 3, flip.sum())
    cut = n * 5 // 6
    np.savez(path, x_train=x[:cut], y_train=y[:cut], x_test=x[cut:], y_test=y[cut:])
    return path


def state(run: Path) -> dict:
    return json.loads((run / "state.json").read_text())


@pytest.fixture
def tiny(tmp_path) -> tuple[Path, Path]:
    net = tmp_path / "tiny.cnn"
    net.write_text(TINY)
    return net, write_npz(tmp_path / "tiny.npz")


def trainer(net: Path, run: Path, data: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "cnndsl", "train", str(net), "--out",
                             str(run), "--data", str(data), *extra], cwd=ROOT,
                            env={**os.environ, **ENV, "NO_COLOR": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(proc: subprocess.Popen, ready, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    proc.kill()
    pytest.fail(f"timed out waiting for {what}")


# ----------------------------------------------------------------------------- 3. run folders


def test_two_trainers_started_at_once_one_is_refused(tiny, tmp_path):
    net, data = tiny
    run = tmp_path / "run"
    both = [trainer(net, run, data, "--epochs", "2") for _ in range(2)]
    results = [(p.wait(300), p.communicate()[1]) for p in both]
    codes = sorted(code for code, _ in results)
    assert codes[0] == 0 and codes[1] in (1, 2), results
    refused = next(err for code, err in results if code != 0)
    assert refused.splitlines()[-1].startswith("error: ") and str(run) in refused
    assert [r["epoch"] for r in state(run)["history"]] == [1, 2]  # one run, not two merged
    assert json.loads((run / "metrics.json").read_text())["epochs"] == 2


def test_a_running_trainer_keeps_others_out_until_it_dies(tiny, tmp_path, capsys):
    net, _ = tiny
    data = write_npz(tmp_path / "big.npz", n_train=3000, n_test=100)
    run = tmp_path / "run"
    first = trainer(net, run, data, "--epochs", "30")
    try:
        wait_for(first, lambda: (run / "state.json").exists(), "the first epoch")
        proc = run_cnndsl("train", "--resume", str(run), env=ENV)
        assert proc.returncode == 1
        assert f"is in use by another training process (pid {first.pid} on " in proc.stderr
        assert first.poll() is None  # the first one is untouched and still training
    finally:
        first.kill()
        first.wait(30)
    # its lock died with it: --resume takes the stale lock over and says so
    assert train_command(resume=run, epochs=state(run)["epoch"] + 1, verbose=0) == 0
    assert f"took over the lock of `{run}` from pid {first.pid}" in capsys.readouterr().err


def test_a_stale_lock_is_taken_over_and_said_so(tiny, tmp_path, capsys):
    net, data = tiny
    run = tmp_path / "run"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    run.mkdir()
    (run / LOCK).write_text(json.dumps({"pid": int(dead), "host": socket.gethostname()}))
    assert train_command(net, out=run, data=data, verbose=0, epochs=1) == 0
    assert f"took over the lock of `{run}` from pid {dead}" in capsys.readouterr().err
    assert (run / LOCK).read_text() == ""  # released at the end


def test_a_lock_from_another_host_is_not_taken_over(tiny, tmp_path, capsys):
    net, data = tiny
    run = tmp_path / "run"
    run.mkdir()
    (run / LOCK).write_text(json.dumps({"pid": 1234, "host": "elsewhere"}))
    assert train_command(net, out=run, data=data, verbose=0, epochs=1) == 1
    err = capsys.readouterr().err
    assert "locked by pid 1234 on host elsewhere" in err and f"delete `{run / LOCK}`" in err
    assert not (run / "run.json").exists()


def test_out_that_is_a_file_is_refused(tiny, tmp_path, capsys):
    net, data = tiny
    out = tmp_path / "taken"
    out.write_text("mine")
    assert train_command(net, out=out, data=data, verbose=0) == 2
    assert "is an existing file" in capsys.readouterr().err
    assert out.read_text() == "mine"


def test_a_kill_after_the_last_epoch_is_finished_by_resume(tiny, tmp_path, capsys):
    """Killed after its last epoch's commit, before model.keras: --resume writes the end."""
    net, data = tiny
    run = tmp_path / "run"
    proc = trainer(net, run, data, "--epochs", "3")
    # the moment the last epoch is committed, before the final files: a real SIGSTOP
    # would race the writer, so the run is killed as soon as state.json says 3
    wait_for(proc, lambda: run.joinpath("state.json").exists() and state(run)["epoch"] == 3,
             "the last epoch")
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    for name in ("model.keras", "metrics.json"):  # as a kill mid-write leaves them, or worse
        (run / name).unlink(missing_ok=True)
    (run / "model.keras").write_bytes(b"PK\x03\x04 cut short")
    assert train_command(resume=run, verbose=0) == 0
    out = capsys.readouterr()
    assert "finished its 3 epochs but not its final files" in out.err
    assert json.loads((run / "metrics.json").read_text())["epochs"] == 3
    assert keras.models.load_model(run / "model.keras").count_params() > 0
    assert state(run)["done"]
    assert train_command(resume=run, verbose=0) == 0
    assert "nothing to resume" in capsys.readouterr().out


def test_early_stopping_after_a_real_kill_stops_where_an_unbroken_run_stops(tmp_path):
    net = tmp_path / "tiny.cnn"
    net.write_text(TINY)
    data = noisy_npz(tmp_path / "noisy.npz")
    es = ["--epochs", "20", "--early-stopping", "monitor=val_loss,patience=2,restore_best=true",
          "--lr", "0.01"]
    whole = trainer(net, tmp_path / "whole", data, *es)
    assert whole.wait(300) == 0, whole.communicate()
    broken = trainer(net, tmp_path / "broken", data, *es)
    run = tmp_path / "broken"
    wait_for(broken, lambda: run.joinpath("state.json").exists() and state(run)["epoch"] >= 2,
             "epoch 2")
    broken.send_signal(signal.SIGKILL)
    broken.wait(30)
    killed_at = state(run)["epoch"]
    assert not (run / "model.keras").exists(), "the kill must land mid-run"
    assert train_command(resume=run, verbose=0) == 0
    a, b = state(tmp_path / "whole"), state(run)
    assert 2 <= killed_at < b["epoch"] < 20, "early stopping must end both runs"
    assert b["epoch"] == a["epoch"] and b["stopped_early"] and a["stopped_early"]
    assert [r["val_loss"] for r in b["history"]] == pytest.approx(
        [r["val_loss"] for r in a["history"]], rel=1e-4)


# ----------------------------------------------------------------------------- 6, 7. damage


def finished_run(tiny, tmp_path) -> Path:
    net, data = tiny
    run = tmp_path / "run"
    assert train_command(net, out=run, data=data, verbose=0, epochs=1) == 0
    return run


@pytest.mark.parametrize("damage, message", [
    (lambda run: (run / "model.keras").write_bytes(b""), "is damaged (empty or cut short"),
    (lambda run: (run / "model.keras").write_bytes((run / "model.keras").read_bytes()[:500]),
     "is damaged (empty or cut short"),
])
def test_a_damaged_model_is_named(tiny, tmp_path, capsys, damage, message):
    run = finished_run(tiny, tmp_path)
    damage(run)
    capsys.readouterr()
    assert evaluate_command(run) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: `") and "model.keras" in err and message in err
    assert err.count("\n") == 1


def test_a_model_keras_refuses_for_safety_is_named(tiny, tmp_path, capsys):
    run = finished_run(tiny, tmp_path)
    inputs = keras.Input((8, 8, 1))
    outputs = keras.layers.Lambda(lambda t: t * 2)(inputs)
    keras.Model(inputs, outputs).save(run / "model.keras")
    capsys.readouterr()
    assert evaluate_command(run) == 1
    err = capsys.readouterr().err
    assert "refuses to load for safety" in err and "safe_mode=False" not in err


@pytest.mark.parametrize("edit, message", [
    ({"epoch": "three"}, "`epoch` is not a whole number"),
    ({"history": "lots"}, "`history` is not a list of rows"),
    ({"early_stopping": {"wait": "x"}}, "`early_stopping` is not"),
    ({"checkpoint": "/etc/passwd.keras"}, "outside the run folder"),
    ({"checkpoint": "../other/checkpoint-1.keras"}, "outside the run folder"),
    ({"early_stopping": {"wait": 0, "best_epoch": 0, "best": 1.0,
                         "best_weights": "/tmp/x.weights.h5"}}, "outside the run folder"),
])
def test_state_json_is_checked_and_confined(tiny, tmp_path, capsys, edit, message):
    net, data = tiny
    run = tmp_path / "run"
    assert train_command(net, out=run, data=data, verbose=0, epochs=1) == 0
    other = tmp_path / "other"
    other.mkdir()
    (other / "checkpoint-1.keras").write_bytes((run / "model.keras").read_bytes())
    (run / "model.keras").unlink()
    (run / "state.json").write_text(json.dumps({**state(run), **edit}))
    capsys.readouterr()
    assert train_command(resume=run, verbose=0, epochs=2) == 1
    assert evaluate_command(run) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and all(message in line and "state.json" in line for line in err)


def test_a_missing_checkpoint_is_named(tiny, tmp_path, capsys):
    run = finished_run(tiny, tmp_path)
    (run / "model.keras").unlink()
    (run / state(run)["checkpoint"]).unlink()
    capsys.readouterr()
    assert train_command(resume=run, verbose=0, epochs=2) == 1
    assert "checkpoint-1.keras` is missing" in capsys.readouterr().err


def read_only(folder: Path) -> bool:
    """Make `folder` refuse new files even to root (chattr +i); False if it cannot be."""
    if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0:
        return True
    folder.chmod(0o555)
    return not os.access(folder, os.W_OK)


def test_a_read_only_run_folder_names_the_file_and_keeps_the_commit(tiny, tmp_path, capsys):
    run = finished_run(tiny, tmp_path)
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.name != LOCK}
    if not read_only(run):
        pytest.fail("cannot make a read-only folder here (no chattr, and running as root)")
    try:
        capsys.readouterr()
        assert train_command(resume=run, verbose=0, epochs=2) == 1
    finally:
        subprocess.run(["chattr", "-i", str(run)], capture_output=True)
        run.chmod(0o755)
    err = capsys.readouterr().err
    assert err.startswith("error: cannot write `") and "history.csv" in err, err
    assert err.count("\n") == 1
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.name != LOCK} == before


# ----------------------------------------------------------------------------- 6, 8. data


def test_bad_data_stops_before_training_with_one_line(tiny, tmp_path, capsys):
    net, _ = tiny
    x, y = images(100)
    cases = {
        "nan.npz": dict(x_train=np.full((80, 8, 8), np.nan), y_train=y[:80], x_test=x[80:],
                        y_test=y[80:]),
        "nan_labels.npz": dict(x_train=x[:80], y_train=np.full(80, np.nan), x_test=x[80:],
                               y_test=y[80:]),
        "dates.npz": dict(x_train=x[:80], y_train=np.array(["2020-01-01"] * 80, "M8[D]"),
                          x_test=x[80:], y_test=y[80:]),
        "text.npz": dict(x=np.array(["a"] * 100), y=y),
        "scalar.npz": dict(x=np.array(3.0), y=y),
        "labels_out_of_range.npz": dict(x_train=x[:80], y_train=y[:80] + 7, x_test=x[80:],
                                        y_test=y[80:]),
    }
    for name, arrays in cases.items():
        np.savez(tmp_path / name, **arrays)
    good = (tmp_path / "text.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(good[:len(good) // 2])
    (tmp_path / "empty.npz").write_bytes(b"")
    np.save(tmp_path / "one.npy", x)
    os.replace(tmp_path / "one.npy", tmp_path / "renamed.npz")
    for name in [*cases, "cut.npz", "empty.npz", "renamed.npz"]:
        run = tmp_path / f"run-{name}"
        assert train_command(net, out=run, data=tmp_path / name, verbose=0) == 1, name
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1, (name, err)
        assert not run.exists(), name


def idx(path: Path, header: bytes, body: bytes = b"") -> Path:
    (gzip.open if path.suffix == ".gz" else open)(path, "wb").write(header + body)
    return path


@pytest.mark.parametrize("header, body, message", [
    (b"\0\0\x08", b"", "is not an IDX file"),
    (b"\0\0\x08\x03\0\0", b"", "header is cut short"),
    (b"\0\0\x08\xff", b"", "declares 255 dimensions"),
    (b"\0\0\x08\x01" + struct.pack(">I", 10), b"\0" * 9, "is truncated"),
    (b"\0\0\x08\x01" + struct.pack(">I", 10), b"\0" * 11, "longer than its header"),
    (b"\0\0\x08\x03" + struct.pack(">III", 60000, 60000, 60000), b"", "over the 8 GB limit"),
])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_headers_are_checked_before_the_payload_is_read(tmp_path, header, body, message,
                                                            suffix):
    path = idx(tmp_path / f"train-images-idx3-ubyte{suffix}", header, body)
    with pytest.raises(datasets.DataError, match=message):
        datasets.read_idx(path)


def test_a_gzip_bomb_is_inflated_no_further_than_its_header_declares(tmp_path):
    # 200 MB of zeros compress to 200 KB; the header declares 10 bytes
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    with gzip.open(path, "wb") as f:
        f.write(b"\0\0\x08\x01" + struct.pack(">I", 10))
        for _ in range(200):
            f.write(bytes(1024 * 1024))
    started = time.perf_counter()
    with pytest.raises(datasets.DataError, match="longer than its header declares"):
        datasets.read_idx(path)
    assert time.perf_counter() - started < 0.5  # stopped after one chunk, not 200 MB


def test_npz_member_sizes_are_checked_before_reading(tmp_path):
    path = tmp_path / "liar.npz"
    np.savez(path, x=np.zeros(4), y=np.zeros(4))
    with zipfile.ZipFile(path) as z:
        members = {n: z.read(n) for n in z.namelist()}
    header = members["x.npy"]
    members["x.npy"] = header.replace(b"(4,)", b"(400000000000,)".ljust(4))[:len(header) + 20]
    with zipfile.ZipFile(path, "w") as z:
        for n, b in members.items():
            z.writestr(n, b)
    with pytest.raises(datasets.DataError, match="over the 8 GB limit"):
        datasets.load_npz(path)


def test_a_nan_loss_stops_the_run_with_a_clear_message(tiny, tmp_path, capsys):
    net, data = tiny
    run = tmp_path / "run"
    assert train_command(net, out=run, data=data, verbose=0, epochs=3, lr=1e30) == 1
    err = capsys.readouterr().err
    assert "training diverged: loss became" in err and "in epoch 1" in err
    assert not (run / "state.json").exists() and not (run / "model.keras").exists()


def test_a_missing_device_is_an_error(tiny, tmp_path):
    net, data = tiny
    proc = run_cnndsl("train", str(net), "--data", str(data), "--out", str(tmp_path / "r"),
                      "--devices", "/gpu:7", env=ENV)
    assert proc.returncode == 2 and "error: no device /gpu:7 on this machine" in proc.stderr


def test_a_network_too_big_for_memory_is_refused_before_building(tmp_path, tiny):
    _, data = tiny
    net = tmp_path / "huge.cnn"
    net.write_text("network huge {\n  input 8x8x1\n  flatten\n  dense 1000000000000\n}\n")
    proc = run_cnndsl("train", str(net), "--data", str(data), "--out", str(tmp_path / "r"),
                      env=ENV)
    assert proc.returncode == 1, proc.stderr
    assert "has 65,000,000,000,000 parameters: training needs at least" in proc.stderr
    assert proc.stderr.count("\n") == 1


def test_a_kill_after_early_stopping_decided_is_not_trained_further(tmp_path, capsys):
    """Killed after the epoch where early stopping decided, before the final files: the
    resumed run ends at that epoch, as the unbroken one did (not one epoch later)."""
    net = tmp_path / "tiny.cnn"
    net.write_text(TINY)
    data = noisy_npz(tmp_path / "noisy.npz")
    es = "monitor=val_loss,patience=2,restore_best=true"
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    assert train_command(net, out=whole, data=data, verbose=0, epochs=20, early_stopping=es,
                         lr=0.01) == 0
    stop = state(whole)["epoch"]
    assert stop < 20
    proc = trainer(net, broken, data, "--epochs", "20", "--early-stopping", es, "--lr", "0.01")
    wait_for(proc, lambda: broken.joinpath("state.json").exists()
             and state(broken)["epoch"] == stop, "the stopping epoch")
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    # wherever the kill landed, make it the worst moment: no final file written yet
    (broken / "model.keras").unlink(missing_ok=True)
    (broken / "metrics.json").unlink(missing_ok=True)
    (broken / "state.json").write_text(json.dumps({**state(broken), "done": False}))
    capsys.readouterr()
    assert train_command(resume=broken, verbose=0) == 0
    assert state(broken)["epoch"] == stop and state(broken)["stopped_early"]
    restored = keras.models.load_model(broken / "model.keras").get_weights()
    expected = keras.models.load_model(whole / "model.keras").get_weights()
    for a, b in zip(restored, expected, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)  # the best epoch's weights


@pytest.mark.parametrize("edit", [
    {"source": 5}, {"config": {"epochs": "ten"}}, {"config": {"optimizer": "evil"}},
    {"config": {"batch": -1}}, {"config": {"early_stopping": {"monitor": 3}}},
])
def test_run_json_is_checked_before_it_is_trusted(tiny, tmp_path, capsys, edit):
    run = finished_run(tiny, tmp_path)
    spec = json.loads((run / "run.json").read_text())
    spec = {**spec, **{k: ({**spec[k], **v} if k == "config" else v) for k, v in edit.items()}}
    (run / "run.json").write_text(json.dumps(spec))
    capsys.readouterr()
    assert train_command(resume=run, verbose=0, epochs=2) == 1
    assert evaluate_command(run) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and all("run.json` is damaged" in line for line in err), err


def test_train_never_writes_into_its_inputs(tiny, tmp_path):
    net, data = tiny
    for out in (net, data):
        before = out.read_bytes()
        proc = run_cnndsl("train", str(net), "--data", str(data), "--out", str(out), env=ENV)
        assert proc.returncode == 2 and "is the input" in proc.stderr, proc.stderr
        assert out.read_bytes() == before


def test_an_empty_npz_is_an_error_not_an_interruption(tiny, tmp_path):
    net, _ = tiny
    (tmp_path / "empty.npz").write_bytes(b"")
    proc = run_cnndsl("train", str(net), "--data", str(tmp_path / "empty.npz"), "--out",
                      str(tmp_path / "r"), env=ENV)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.splitlines()[-1].startswith("error: `") and "is empty" in proc.stderr
    assert "interrupted" not in proc.stderr


def test_dataset_paths_and_run_folders_are_escaped_on_the_terminal(tiny, tmp_path):
    net, data = tiny
    evil = tmp_path / "evil\x1b[2J.npz"
    os.link(data, evil)
    run = tmp_path / "run\x1b]0;pwned\x07"
    proc = run_cnndsl("train", str(net), "--data", str(evil), "--out", str(run), "--epochs",
                      "1", env=ENV)
    assert proc.returncode == 0, proc.stderr
    assert "\\x1b[2J.npz" in proc.stdout and "run\\x1b]0;pwned\\x07" in proc.stdout
    again = run_cnndsl("evaluate", str(run), "--data", str(evil / "missing"), env=ENV)
    assert again.returncode == 1 and "\\x1b[2J" in again.stderr
    for text in (proc.stdout, proc.stderr, again.stdout, again.stderr):
        assert "\x1b" not in text and "\x07" not in text


def test_data_that_is_not_a_regular_file_is_refused(tmp_path):
    fifo = tmp_path / "pipe.npz"
    os.mkfifo(fifo)  # opening it would block until a writer came
    with pytest.raises(datasets.DataError, match="is not a regular file"):
        datasets.load_path(fifo)
    folder = tmp_path / "idx"
    folder.mkdir()
    os.mkfifo(folder / "train-images-idx3-ubyte")
    with pytest.raises(datasets.DataError, match="is not a regular file"):
        datasets.read_idx(folder / "train-images-idx3-ubyte")


def test_symlinks_planted_in_a_run_folder_are_replaced_not_written_through(tiny, tmp_path):
    run = finished_run(tiny, tmp_path)
    victims = {}
    for name in ("history.csv", "metrics.json", "curves.png", "model.keras", "run.json"):
        victim = tmp_path / f"victim-{name}"
        victim.write_bytes((run / name).read_bytes())
        (run / name).unlink()
        (run / name).symlink_to(victim)
        victims[victim] = victim.read_bytes()
    assert train_command(resume=run, verbose=0, epochs=2) == 0
    assert all(victim.read_bytes() == data for victim, data in victims.items())
    assert not any(p.is_symlink() for p in run.iterdir())
    assert state(run)["epoch"] == 2


def test_a_symlinked_lock_file_is_refused(tiny, tmp_path, capsys):
    run = finished_run(tiny, tmp_path)
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (run / LOCK).unlink()
    (run / LOCK).symlink_to(victim)
    capsys.readouterr()
    assert train_command(resume=run, verbose=0, epochs=2) == 1
    assert f"cannot lock `{run}`" in capsys.readouterr().err
    assert victim.read_text() == "precious"
