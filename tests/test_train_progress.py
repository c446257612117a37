"""What `cnndsl train` shows while it trains, from real runs on the bundled MNIST sample:
off a terminal a line comes every interval during an epoch (0.5 s here, 10 s by default);
on a terminal (a real pty) the bar is redrawn in place and never passes its total, though
Keras counts 32 steps for the epoch's last, shorter run of steps; `--verbose 2` prints one
line an epoch and `--verbose 0` none. (A notebook's bar: test_train_session.py.)
"""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest
from conftest import EXAMPLES, ROOT
from test_train import TINY, write_npz

from cnndsl.training.commands import train_command
from cnndsl.training.datasets import BUNDLED_MNIST
from cnndsl.training.progress import line_seconds

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "NO_COLOR": "1", "PYTHONPATH": str(ROOT)}
# 4,000 training images, 20% held out: 3,200 to train on
MNIST = (str(EXAMPLES / "mnist.cnn"), "--data", str(BUNDLED_MNIST), "--validation-split", "0.2")
INTERVAL = 0.2


def test_off_a_terminal_a_line_comes_every_interval_during_an_epoch(tmp_path):
    # batch 8: 400 steps an epoch, a second or more
    proc = subprocess.Popen(
        [sys.executable, "-m", "cnndsl", "train", *MNIST, "--epochs", "2", "--batch", "8",
         "--out", str(tmp_path / "run")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, cwd=ROOT, env={**ENV, "CNNDSL_PROGRESS_SECONDS": str(INTERVAL)})
    lines = [(time.monotonic(), line.rstrip("\n")) for line in proc.stdout]
    assert proc.wait(timeout=120) == 0, proc.stderr.read()
    texts = [text for _, text in lines]
    assert not any("\r" in t or "\x1b" in t for t in texts)
    first = next(i for i, t in enumerate(texts) if t.startswith("epoch 1/2"))
    last = next(i for i, t in enumerate(texts) if t.startswith("epoch 2/2: 400 steps in "))
    counts: dict[int, list[int]] = {1: [], 2: []}
    for text in texts[first:last]:
        progress = re.match(r"epoch (\d)/2: (\d+)/400 steps, ", text)
        if progress:
            counts[int(progress[1])].append(int(progress[2]))
        else:
            assert re.match(r"epoch 1/2: 400 steps in \d+s, accuracy", text), text
    assert len(counts[1]) >= 2, texts  # the first epoch waits for TensorFlow's tracing too
    for seen in counts.values():
        assert seen == sorted(seen) and all(n <= 400 for n in seen), seen
    # a line at least every interval, with room for a loaded machine
    gaps = [b[0] - a[0] for a, b in zip(lines[first:last], lines[first + 1:last + 1],
                                        strict=True)]
    assert max(gaps) < INTERVAL + 1, gaps
    mid = [re.match(r"epoch \d/2: (\d+)/400 steps, \d+s left at [\d.]+ (steps/s|s/step), "
                    r".*loss \d\.\d{4}", t) for t in texts]
    assert any(m and 0 < int(m[1]) < 400 for m in mid), texts


def test_the_interval_is_ten_seconds_unless_set(monkeypatch):
    monkeypatch.delenv("CNNDSL_PROGRESS_SECONDS", raising=False)
    assert line_seconds() == 10
    for wrong in ("soon", "0", "-1", "nan", "inf"):
        monkeypatch.setenv("CNNDSL_PROGRESS_SECONDS", wrong)
        assert line_seconds() == 10
    monkeypatch.setenv("CNNDSL_PROGRESS_SECONDS", "2.5")
    assert line_seconds() == 2.5


def on_a_terminal(*args: str) -> str:
    """Everything `cnndsl train ARGS` writes to a terminal (a pty), as the terminal gets it."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "cnndsl", "train", *args], cwd=ROOT,
                            env=ENV, stdin=follower, stdout=follower, stderr=follower)
    os.close(follower)
    out = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the process ended and closed the terminal
            break
        if not chunk:
            break
        out += chunk
    os.close(leader)
    assert proc.wait(timeout=60) == 0, out.decode(errors="replace")
    return out.decode()


def test_on_a_terminal_the_bar_is_redrawn_in_place_and_never_passes_its_total(tmp_path):
    # batch 64: 50 steps an epoch, run 32 at a time: Keras's count reaches 64 at the end,
    # and the bar is drawn again while the epoch's validation runs
    out = on_a_terminal(*MNIST, "--epochs", "2", "--out", str(tmp_path / "run"))
    rows = out.replace("\r\n", "\n").split("\n")  # the terminal's line ends
    counts = []
    for epoch in (1, 2):
        row = next(r for r in rows if f"epoch {epoch}/2" in r)
        frames = [f.removesuffix("\x1b[K") for f in row.split("\r") if f]
        bars = [re.match(rf"epoch {epoch}/2 \[([= >]{{20}})\] (\d+)/50, ", f)
                for f in frames[:-1]]
        assert all(bars), frames  # redrawn in place on one row, then the epoch's line
        assert re.match(rf"epoch {epoch}/2: 50 steps in \d+s, accuracy [\d.]+, loss [\d.]+, "
                        r"val_accuracy [\d.]+, val_loss [\d.]+$", frames[-1]), frames[-1]
        seen = [int(b[2]) for b in bars]
        assert seen == sorted(seen) and all(n <= 50 for n in seen), frames
        assert all(b[1] == "=" * 20 for b in bars if b[2] == "50")
        counts += seen
    assert counts.count(0) >= 2  # the first epoch's bar, drawn while TensorFlow traces
    assert 50 in counts  # drawn after the epoch's last, shorter run of steps
    assert "test accuracy" in out


def test_verbose_2_is_a_line_an_epoch_and_0_none(tmp_path, capsys, monkeypatch):
    proc = subprocess.run(
        [sys.executable, "-m", "cnndsl", "train", *MNIST, "--epochs", "2", "--verbose", "2",
         "--out", str(tmp_path / "two")], capture_output=True, text=True, cwd=ROOT,
        env={**ENV, "CNNDSL_PROGRESS_SECONDS": "0.1"}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    epochs = [t for t in proc.stdout.splitlines() if re.match(r"epoch \d", t)]
    assert [t[:len("epoch 1/2: 50 steps in ")] for t in epochs] == [
        "epoch 1/2: 50 steps in ", "epoch 2/2: 50 steps in "], proc.stdout

    monkeypatch.setenv("CNNDSL_PROGRESS_SECONDS", "0.1")
    net = tmp_path / "tiny.cnn"
    net.write_text(TINY)
    data = write_npz(tmp_path / "big.npz", n_train=3000, n_test=100)
    assert train_command(net, out=tmp_path / "zero", data=data, verbose=0) == 0
    out = capsys.readouterr().out
    assert "device: CPU" in out and "test accuracy" in out  # the command's own lines stay
    assert not re.search(r"^epoch \d", out, re.MULTILINE), out


def test_output_closed_mid_run_the_run_goes_on_unseen(tmp_path):
    """`cnndsl train ... | head -5`: the reader goes away; the run still ends whole."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "cnndsl", "train", *MNIST, "--epochs", "2",
         "--out", str(tmp_path / "run")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        cwd=ROOT, env={**ENV, "CNNDSL_PROGRESS_SECONDS": "0.1"})
    first = [proc.stdout.readline() for _ in range(5)]  # backend, device, strategy, data
    assert first[-1].startswith(b"epoch 1/2: ")
    proc.stdout.close()
    assert proc.wait(timeout=120) == 0
    assert b"Traceback" not in proc.stderr.read()
    assert (tmp_path / "run" / "model.keras").is_file()
