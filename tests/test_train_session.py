"""`cnndsl.training.session.train`, the function behind `net.train(...)`: the run it returns
is the one on disk and the one Keras evaluates; it trains what `cnndsl train` trains; every
failure is one TrainError line with nothing printed; Ctrl-C (a real SIGINT, and a real
Jupyter kernel's interrupt) leaves a folder `cnndsl train --resume` continues.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
import pytest
from conftest import EXAMPLES, ROOT
from test_train import TINY, history_epochs, wait_for_epoch, write_npz

from cnndsl.training.commands import train_command
from cnndsl.training.datasets import BUNDLED_MNIST
from cnndsl.training.session import Run, TrainError, train

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def test_the_run_is_the_one_on_disk_and_keras_scores_it_the_same(tmp_path, capsys):
    data = write_npz(tmp_path / "tiny.npz")
    run = train(TINY, "<string>", data=data, out=tmp_path / "run", overrides={"epochs": 3},
                verbose=0)
    assert isinstance(run, Run) and run.folder == tmp_path / "run"
    assert capsys.readouterr().out == ""  # verbose 0: silent
    state = json.loads((run.folder / "state.json").read_text())
    assert run.history == state["history"] and [r["epoch"] for r in run.history] == [1, 2, 3]
    assert run.metrics == json.loads((run.folder / "metrics.json").read_text())
    assert json.loads((run.folder / "run.json").read_text())["source"] == TINY
    with np.load(data) as f:  # integer labels: the loss was made sparse for them
        x, y = f["x_test"][..., None] / 255.0, f["y_test"]
    scores = run.model.evaluate(x, y, verbose=0, return_dict=True)
    assert scores["loss"] == pytest.approx(run.metrics["test_loss"], rel=1e-5)
    saved = keras.models.load_model(run.folder / "model.keras")
    np.testing.assert_array_equal(saved.predict(x, verbose=0), run.model.predict(x, verbose=0))
    assert repr(run).startswith(f"Run(folder='{run.folder}', epochs=3, test_accuracy=")


def test_the_function_and_the_command_train_the_same_network(tmp_path):
    net = tmp_path / "mnist.cnn"
    net.write_text((EXAMPLES / "mnist.cnn").read_text())
    settings = {"epochs": 2, "seed": 3}
    assert train_command(net, out=tmp_path / "cli", data=BUNDLED_MNIST, verbose=0,
                         **settings) == 0
    run = train(net.read_text(), str(net), data=BUNDLED_MNIST, out=tmp_path / "api",
                overrides=settings, verbose=0)
    by_command = json.loads((tmp_path / "cli" / "state.json").read_text())["history"]
    for row, expected in zip(run.history, by_command, strict=True):
        assert row["loss"] == pytest.approx(expected["loss"], abs=1e-6)
    assert run.metrics["test_accuracy"] == json.loads(
        (tmp_path / "cli" / "metrics.json").read_text())["test_accuracy"]


@pytest.mark.parametrize("source, kw, message", [
    (TINY.replace("conv 4", "convv 4"), {},
     "<string>:3:3: unknown op `convv` (did you mean `conv`?)"),
    (TINY, {"network": "other"}, "no network named `other`"),
    (TINY, {"overrides": {"epochs": 0}}, "`epochs` must be at least 1"),
    (TINY, {"overrides": {"batch_size": 64}}, "unknown train setting `batch_size` (did you "
                                              "mean `batch`?)"),
    (TINY, {"overrides": {"strategy": "multiworker"}}, "runs from the command line"),
    (TINY, {"overrides": [("epochs", 2)]}, "overrides are train settings by name"),
    (TINY, {"verbose": 3}, "verbose is 0, 1, 2 or None, not 3"),
    (b"network", {}, "source is the text of a .cnn file (a str), not bytes"),
    (TINY, {"data": 3}, "data is a path, not int"),
    ("#" * (1024 * 1024 + 1), {}, "larger than 1 MB"),
    (TINY, {"data": "missing.npz"}, "missing.npz`: no such file"),
    (TINY.replace("input 8x8x1", "input 9x9x1"), {"data": "tiny.npz"},
     "the training images are 8x8x1 but the network's input is 9x9x1"),
], ids=["source", "network", "epochs", "batch_size", "multiworker", "overrides", "verbose",
        "bytes", "data-type", "size", "no-data", "wrong-data"])
def test_every_failure_is_one_train_error_line_and_nothing_printed(tmp_path, capsys, monkeypatch,
                                                                   source, kw, message):
    monkeypatch.chdir(tmp_path)
    write_npz(tmp_path / "tiny.npz")
    with pytest.raises(TrainError) as err:
        train(source, "<string>", out=tmp_path / "run", **kw)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert capsys.readouterr().err == ""
    assert not (tmp_path / "run" / "run.json").exists()


def test_a_run_already_in_the_folder_is_not_overwritten(tmp_path):
    data = write_npz(tmp_path / "tiny.npz")
    train(TINY, "tiny.cnn", data=data, out=tmp_path / "run", overrides={"epochs": 1},
          verbose=0)
    before = (tmp_path / "run" / "model.keras").read_bytes()
    with pytest.raises(TrainError, match="already holds a run; continue it with `--resume"):
        train(TINY, "tiny.cnn", data=data, out=tmp_path / "run", verbose=0)
    assert (tmp_path / "run" / "model.keras").read_bytes() == before


# ----------------------------------------------------------------------------- Ctrl-C

RUNNER = """import sys
from pathlib import Path
from cnndsl.training.session import train
try:
    train(Path(sys.argv[1]).read_text(), sys.argv[1], out=Path(sys.argv[2]),
          data=Path(sys.argv[3]), overrides={"epochs": 25}, verbose=0)
except KeyboardInterrupt as stop:  # whatever stops on Ctrl-C still stops
    print(type(stop).__name__, stop, sep=": ", file=sys.stderr)
    sys.exit(130)
"""


def test_ctrl_c_raises_a_keyboard_interrupt_that_says_how_to_resume(tmp_path):
    net = tmp_path / "tiny.cnn"
    net.write_text(TINY)
    data = write_npz(tmp_path / "big.npz", n_train=3000, n_test=100)
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", RUNNER, str(net), str(run), str(data)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    wait_for_epoch(proc, run, 2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    done = json.loads((run / "state.json").read_text())["epoch"]
    assert f"TrainInterrupted: interrupted: {done} epochs saved in `{run}`; continue with " \
           f"`cnndsl train --resume {run}`" in err
    assert history_epochs(run) == list(range(1, done + 1)) and (run / "curves.png").exists()
    # the lock was released, and the command continues the run
    assert train_command(resume=run, verbose=0, epochs=done + 1) == 0
    assert history_epochs(run) == list(range(1, done + 2))


def test_in_a_jupyter_kernel_a_live_bar_a_run_and_an_interrupt_that_resumes(tmp_path):
    """A real kernel: the bar is a display updated in place, the cell's value is the Run;
    the kernel's interrupt (SIGINT) raises TrainInterrupted and the folder resumes."""
    manager = pytest.importorskip("jupyter_client.manager")
    pytest.importorskip("ipykernel")
    km, kc = manager.start_new_kernel(
        kernel_name="python3", cwd=str(tmp_path),
        env={**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"})
    try:
        short = kc.execute(
            "from cnndsl.training.session import train\n"
            f"source = open({str(EXAMPLES / 'mnist.cnn')!r}).read()\n"
            f"train(source, 'mnist.cnn', data={str(BUNDLED_MNIST)!r}, out='short', "
            "overrides={'epochs': 2})")
        messages = _until_idle(kc, short)
        shown = [(m["msg_type"], m["content"]["transient"]["display_id"],
                  m["content"]["data"]) for m in messages
                 if m["msg_type"] in ("display_data", "update_display_data")]
        ids = list(dict.fromkeys(i for _, i, _ in shown))
        assert len(ids) == 2  # a display an epoch, each updated in place
        for epoch, display in enumerate(ids, 1):
            updates = [d for kind, i, d in shown if i == display]
            assert '<progress value="0" max="60"' in updates[0]["text/html"]
            assert updates[-1]["text/plain"].startswith(f"epoch {epoch}/2: 60 steps in ")
        assert any("/60 steps" in d["text/plain"] for _, _, d in shown[1:-1])
        value = next(m["content"]["data"]["text/plain"] for m in messages
                     if m["msg_type"] == "execute_result")
        assert value.startswith("Run(folder='short', epochs=2, test_accuracy=")

        long = kc.execute(f"train(source, 'mnist.cnn', data={str(BUNDLED_MNIST)!r}, "
                          "out='long', overrides={'epochs': 50}, verbose=2)")
        deadline = time.monotonic() + 120
        while not (tmp_path / "long" / "state.json").exists():
            assert time.monotonic() < deadline, "no epoch finished"
            time.sleep(0.05)
        km.interrupt_kernel()
        error = next(m["content"] for m in _until_idle(kc, long) if m["msg_type"] == "error")
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    assert error["ename"] == "TrainInterrupted"
    assert "continue with `cnndsl train --resume long`" in error["evalue"]
    done = json.loads((tmp_path / "long" / "state.json").read_text())["epoch"]
    assert train_command(resume=tmp_path / "long", verbose=0, epochs=done + 1) == 0


def _until_idle(kc, msg_id: str) -> list[dict]:
    """The iopub messages of one execution, until the kernel is idle again."""
    messages = []
    while True:
        message = kc.get_iopub_msg(timeout=180)
        if message["parent_header"].get("msg_id") != msg_id:
            continue
        if message["msg_type"] == "status":
            if message["content"]["execution_state"] == "idle":
                return messages
            continue
        messages.append(message)
