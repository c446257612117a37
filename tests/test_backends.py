"""Every Keras 3 backend for real: JAX and PyTorch run in subprocesses with KERAS_BACKEND set
(this process keeps TensorFlow, which the rest of the suite runs on). One process per
backend builds every example network (tests/backend_models.py); one short epoch of `train`
and an `evaluate` of its run folder per backend. The processes of the two backends run at
the same time: on two cores, the time of the slower one."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import EXAMPLES, ROOT, example_networks, network_id, run_cnndsl

from cnndsl.training.commands import evaluate_command, train_command
from cnndsl.training.errors import EXIT_USAGE

BACKENDS = ("jax", "torch")
MNIST_5K = ROOT / "cnndsl" / "data" / "mnist-5k.npz"
# `cnndsl ARGS` in this process, then one JSON line: the exit code, Keras's backend, and
# whether TensorFlow was ever imported.
PROBE = """
import json, sys
from cnndsl.cli import app
try:
    app(sys.argv[1:])
except SystemExit as stop:
    code = stop.code
keras = sys.modules.get("keras")
print(json.dumps({"exit": code, "backend": keras and keras.backend.backend(),
                  "tensorflow": "tensorflow" in sys.modules}))
"""


def require_backends() -> None:
    """JAX and PyTorch: CI installs them (.ci/run); elsewhere their tests skip."""
    missing = [b for b in BACKENDS if importlib.util.find_spec(b) is None]
    if missing and os.environ.get("CI"):
        pytest.fail(f"{', '.join(missing)} not installed: .ci/run installs them")
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed")


def run_at_once(commands: dict[str, tuple[list[str], dict[str, str]]],
                timeout: float = 900) -> dict[str, subprocess.CompletedProcess]:
    """Each backend's command (argv, extra environment) in a process of its own, all at
    once."""
    procs = {key: (args, subprocess.Popen(
        args, cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "NO_COLOR": "1", "TF_CPP_MIN_LOG_LEVEL": "3", **env}))
        for key, (args, env) in commands.items()}
    done = {}
    for key, (args, proc) in procs.items():
        out, err = proc.communicate(timeout=timeout)
        done[key] = subprocess.CompletedProcess(args, proc.returncode, out, err)
    return done


def probe(*args: str) -> list[str]:
    return [sys.executable, "-c", PROBE, *args]


# ----------------------------------------------------------------------------- every example


@pytest.fixture(scope="session")
def built() -> dict[str, dict]:
    """{backend: {network id: its JSON line, "end": the last line}}."""
    require_backends()
    procs = run_at_once({b: ([sys.executable, str(ROOT / "tests" / "backend_models.py")],
                             {"KERAS_BACKEND": b}) for b in BACKENDS})
    out = {}
    for backend, proc in procs.items():
        assert proc.returncode == 0, proc.stderr[-3000:]
        lines = [json.loads(line) for line in proc.stdout.splitlines()]
        out[backend] = {line.get("network", "end"): line for line in lines}
    return out


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", example_networks(), ids=network_id)
def test_example_builds_as_checked(built, backend, case):
    """The module `build` writes and the model `train` builds: Keras's count_params and
    layer names are check's."""
    line = built[backend][network_id(case)]
    for model in ("module", "runtime"):
        assert line[model]["params"] == line["check"]["params"], model
        assert line[model]["names"] == line["check"]["names"], model


@pytest.mark.parametrize("backend", BACKENDS)
def test_builds_ran_on_the_backend_without_tensorflow(built, backend):
    assert built[backend]["end"] == {"backend": backend, "tensorflow_imported": False}
    first = next(line for key, line in built[backend].items() if key != "end")
    assert first["allocated"] == first["runtime"]["params"]  # the scope changes no count


# ----------------------------------------------------------------------------- train, evaluate


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> tuple[Path, dict[str, subprocess.CompletedProcess]]:
    """One epoch on the bundled MNIST sample per backend. JAX is chosen by --backend over
    KERAS_BACKEND=torch; PyTorch by KERAS_BACKEND alone."""
    require_backends()
    runs = tmp_path_factory.mktemp("backends")
    common = ["train", str(EXAMPLES / "mnist.cnn"), "--epochs", "1", "--data", str(MNIST_5K),
              "--verbose", "2"]
    return runs, run_at_once({
        "jax": (probe(*common, "--backend", "jax", "--out", str(runs / "jax")),
                {"KERAS_BACKEND": "torch"}),
        "torch": (probe(*common, "--out", str(runs / "torch")), {"KERAS_BACKEND": "torch"}),
    })


@pytest.fixture(scope="session")
def evaluated(trained) -> dict[str, subprocess.CompletedProcess]:
    """`evaluate` of each run folder, with KERAS_BACKEND naming TensorFlow: run.json wins."""
    runs, _ = trained
    return run_at_once({b: (probe("evaluate", str(runs / b)), {"KERAS_BACKEND": "tensorflow"})
                        for b in BACKENDS})


def last_json(proc: subprocess.CompletedProcess) -> dict:
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_epoch_trains_on_the_backend_without_tensorflow(trained, backend):
    runs, procs = trained
    proc = procs[backend]
    assert last_json(proc) == {"exit": 0, "backend": backend, "tensorflow": False}, \
        proc.stderr[-3000:]
    metrics = json.loads((runs / backend / "metrics.json").read_text())
    version = importlib.metadata.version(backend)
    assert (metrics["backend"], metrics["backend_version"]) == (backend, version)
    assert metrics["test_accuracy"] > 0.6  # one epoch on 4,000 images; chance is 0.1
    assert f"backend            {backend} {version}" in proc.stdout
    run = json.loads((runs / backend / "run.json").read_text())
    assert run["config"]["backend"] == backend


@pytest.mark.parametrize("backend", BACKENDS)
def test_evaluate_reloads_on_the_backend_that_trained(trained, evaluated, backend):
    runs, _ = trained
    proc = evaluated[backend]
    assert last_json(proc) == {"exit": 0, "backend": backend, "tensorflow": False}, \
        proc.stderr[-3000:]
    accuracy = json.loads((runs / backend / "metrics.json").read_text())["test_accuracy"]
    assert f"test accuracy {accuracy:.2%}" in proc.stdout


def test_another_backend_for_a_run_is_a_one_line_error(trained, capsys):
    runs, _ = trained
    assert evaluate_command(runs / "jax", backend_name="torch") == EXIT_USAGE
    assert train_command(resume=runs / "jax", backend="tensorflow", epochs=2) == EXIT_USAGE
    assert capsys.readouterr().err.splitlines() == [
        f"error: `{runs / 'jax'}` was trained on jax; evaluate it on jax (leave out --backend)",
        f"error: `{runs / 'jax'}` was trained on jax; resume it on jax (leave out --backend)"]


# ----------------------------------------------------------------------------- choosing


def test_tf_distribute_is_refused_on_other_backends(tmp_path, capsys):
    for extra in ({"strategy": "mirrored"}, {"devices": "/cpu:0,/cpu:1"}):
        assert train_command(EXAMPLES / "mnist.cnn", out=tmp_path / "run", backend="jax",
                             **extra) == EXIT_USAGE
    assert not (tmp_path / "run").exists()
    err = capsys.readouterr().err.splitlines()
    assert err[-2:] == [f"error: `--{what}` is TensorFlow's tf.distribute; train with "
                        "`--backend tensorflow` (this run is on jax)"
                        for what in ("strategy mirrored", "devices")]


def test_keras_loaded_with_another_backend_is_a_one_line_error():
    from cnndsl.training import keras_backend
    from cnndsl.training.errors import TrainError

    keras = pytest.importorskip("keras")
    loaded = keras.backend.backend()
    other = next(b for b in BACKENDS if b != loaded)
    with pytest.raises(TrainError, match=f"^Keras is already loaded with the {loaded} "
                                         "backend in this process; it cannot switch to"):
        keras_backend.load(other)


def test_bad_backends_are_refused_with_a_suggestion(tmp_path):
    net = (EXAMPLES / "mnist.cnn").read_text().replace("train {", "train {\n    backend pytorch")
    (tmp_path / "net.cnn").write_text(net)
    proc = run_cnndsl("check", str(tmp_path / "net.cnn"))
    assert proc.returncode == 1
    assert "unknown backend `pytorch`" in proc.stderr and "did you mean `torch`?" in proc.stderr
    proc = run_cnndsl("train", str(EXAMPLES / "mnist.cnn"), "--out", str(tmp_path / "r"),
                      env={"KERAS_BACKEND": "numpy"})
    assert (proc.returncode, proc.stderr) == (2, "error: KERAS_BACKEND is `numpy`; cnndsl "
                                                 "trains on tensorflow, jax or torch\n")
