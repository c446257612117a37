"""The run folder: what `train` writes, in an order that survives Ctrl-C and SIGKILL.

    run.json      what to train: the .cnn source, network, data, settings (written first)
    state.json    the commit point, rewritten after every epoch: epochs done, history,
                  early-stopping state, the checkpoint that holds those epochs' weights
    checkpoint-N.keras  model and optimizer after epoch N (only the latest is kept)
    checkpoints/ckpt-N  the same as tf.train checkpoints, under `--strategy multiworker`
    best-N.weights.h5   the best weights so far, with `early_stopping restore_best=true`
    history.csv, and at the end model.keras, metrics.json, curves.png, filters.png
    run.lock      the pid and host of the one process training in the folder (runlock.py)
Every file is written to a temporary name and renamed into place, and state.json is
written after the checkpoint it names: whatever moment a run dies, state.json describes
a complete epoch, and `--resume` continues from it without losing or repeating one (or,
when every epoch is done, writes the final files). state.json and run.json are read as
untrusted input (runstate.py): checked types, no path outside the folder.
"""

from __future__ import annotations

import concurrent.futures
import csv
import io
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnndsl.analysis.train_section import TrainConfig
from cnndsl.common.files import replacing, write_atomic
from cnndsl.training.datasets import examples
from cnndsl.training.errors import EXIT_USAGE, TrainError
from cnndsl.training.progress import note
from cnndsl.training.runstate import config_problem, read_state

if TYPE_CHECKING:
    from cnndsl.training.keras_backend import Backend

RUN, STATE, HISTORY, MODEL, METRICS = (
    "run.json", "state.json", "history.csv", "model.keras", "metrics.json")


def write_json(path: Path, data: Any) -> None:
    write_atomic(path, json.dumps(data, indent=2) + "\n")


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        raise TrainError(f"cannot read `{path}`: {err}") from err


def save_model(model: Any, path: Path) -> None:
    with replacing(path) as tmp:
        model.save(tmp)


def load_keras(path: Path, keras: Any) -> Any:
    """A saved model, or TrainError naming the file: missing, damaged, or refused for safety."""
    import zipfile

    if not path.is_file():
        raise TrainError(f"`{path}` is missing; the run folder is incomplete")
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
    except (OSError, zipfile.BadZipFile, EOFError):
        damaged = path.name
    if damaged is not None:
        raise TrainError(f"`{path}` is damaged (empty or cut short: not a whole .keras file)")
    try:
        return keras.models.load_model(path)  # safe_mode: no code from the file runs
    except Exception as err:  # Keras raises ValueError, TypeError, KeyError... for bad files
        if "safe_mode" in str(err):
            raise TrainError(f"`{path}` holds Python code (such as a Lambda layer) that Keras "
                             "refuses to load for safety; cnndsl never saves one") from err
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise TrainError(f"`{path}` cannot be loaded as a Keras model ({first})") from err


def save_weights(model: Any, path: Path) -> None:
    with replacing(path) as tmp:
        model.save_weights(tmp)


def history_csv(rows: list[Mapping[str, Any]]) -> str:
    keys = list(dict.fromkeys(k for row in rows for k in row))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=keys, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


# ----------------------------------------------------------------------------- the run spec


@dataclass
class RunSpec:
    """Everything `--resume` needs to carry on, as stored in run.json."""

    folder: Path
    source: str
    file: str
    network: str | None
    data: str | None  # --data PATH, else None for the dataset by name
    config: TrainConfig
    mixed_precision: bool = False
    state: dict[str, Any] = field(default_factory=dict)
    devices: tuple[str, ...] = ()  # --devices for `mirrored`
    writes: bool = True  # False on a multiworker worker that is not the chief

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "network": self.network, "data": self.data,
                "mixed_precision": self.mixed_precision, "config": self.config.to_json(),
                "devices": list(self.devices), "source": self.source}

    @staticmethod
    def load(folder: Path) -> RunSpec:
        spec = read_json(folder / RUN)
        if spec is None:
            raise TrainError(f"`{folder}` is not a run folder (it has no {RUN})", EXIT_USAGE)
        try:
            run = RunSpec(folder, spec["source"], spec["file"], spec["network"], spec["data"],
                          TrainConfig.from_json(spec["config"]),
                          spec.get("mixed_precision", False), read_state(folder),
                          tuple(spec.get("devices", ())))
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise TrainError(f"`{folder / RUN}` is damaged ({err})") from err
        # run.json may come from someone else: every field has its type, every setting
        # is one the `train` section accepts.
        texts = (run.source, run.file, *run.devices)
        optional = (run.network, run.data)
        if not all(isinstance(t, str) for t in texts) or not all(
                t is None or isinstance(t, str) for t in optional) or not isinstance(
                    run.mixed_precision, bool):
            raise TrainError(f"`{folder / RUN}` is damaged: a field has the wrong type")
        problem = config_problem(run.config)
        if problem:
            raise TrainError(f"`{folder / RUN}` is damaged: {problem}")
        return run


def new_folder(out: Path | None, network: str) -> Path:
    if out is None:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        out = Path("runs") / f"{network}-{stamp}"
        n = 1
        while out.exists():
            n += 1
            out = Path("runs") / f"{network}-{stamp}-{n}"
    if out.exists() and not out.is_dir():
        raise TrainError(f"--out `{out}` is an existing file, not a run folder; choose another "
                         "--out", EXIT_USAGE)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise TrainError(f"cannot make the run folder `{out}`: {err.strerror or err}") from err
    return out


_HELD: list[Callable[[], None]] = []  # the run-folder locks this process holds


def lock(folder: Path) -> None:
    """Own the run folder until the command ends (runlock.py); a second trainer is refused."""
    from cnndsl.training.runlock import LockError, acquire

    try:
        _HELD.append(acquire(folder, note))
    except LockError as err:
        raise TrainError(str(err)) from err


def unlock_all() -> None:
    while _HELD:
        _HELD.pop()()


def clear_stale(folder: Path) -> None:
    """The temporary files a killed run left behind."""
    for stale in [*folder.glob(".tmp-*"), *folder.glob(".*.tmp")]:
        stale.unlink(missing_ok=True)


def epochs_done(run: RunSpec) -> bool:
    """Every epoch trained (or early stopping ended the run): only the final files remain."""
    return run.state.get("epoch", 0) >= run.config.epochs or bool(
        run.state.get("stopped_early"))


def final_files(folder: Path) -> bool:
    """model.keras and metrics.json both whole: state.json says so once they are written."""
    return bool(read_state(folder).get("done")) and all(
        (folder / name).is_file() for name in (MODEL, METRICS))


# ----------------------------------------------------------------------------- commits


def commit(model: Any, folder: Path, history: list[dict[str, Any]], seconds: list[float],
           early: Any) -> None:
    """Checkpoint one finished epoch: weights first, then state.json, which names them."""
    epoch = len(history)
    checkpoint = f"checkpoint-{epoch}.keras"
    save_model(model, folder / checkpoint)
    keep = {checkpoint}
    es_state = None
    if early is not None:
        best = early.best
        # The best weights so far (for restore_best), named by their epoch like checkpoints.
        best_weights = f"best-{early.best_epoch + 1}.weights.h5"
        es_state = {"wait": early.wait, "best_epoch": early.best_epoch,
                    "best": float(best) if best is not None else None,
                    "best_weights": best_weights if early.restore_best_weights else None}
        if early.restore_best_weights:
            keep.add(best_weights)
            if early.best_epoch == epoch - 1:
                save_weights(model, folder / best_weights)
    # Early stopping's decision is committed with the epoch that made it: a run killed
    # before its final files is finished by `--resume`, not trained one epoch further.
    commit_state(folder, history, seconds, checkpoint, es_state, bool(model.stop_training))
    for old in [*folder.glob("checkpoint-*.keras"), *folder.glob("best-*.weights.h5")]:
        if old.name not in keep:
            old.unlink(missing_ok=True)


def commit_state(folder: Path, history: list[dict[str, Any]], seconds: list[float],
                 checkpoint: str, es_state: dict[str, Any] | None = None,
                 stopped_early: bool = False) -> None:
    """state.json, the commit point, names a checkpoint already on disk; then history.csv."""
    write_json(folder / STATE, {"epoch": len(history), "checkpoint": checkpoint,
                                "history": history, "seconds": seconds,
                                "early_stopping": es_state, "done": False,
                                "stopped_early": stopped_early})
    write_atomic(folder / HISTORY, history_csv(history))


def sync_history(folder: Path) -> list[dict[str, Any]]:
    """history.csv written again from state.json, the commit point: a kill or Ctrl-C can
    land between the two writes, leaving history.csv one epoch behind."""
    committed = read_state(folder).get("history", [])
    write_atomic(folder / HISTORY, history_csv(committed))
    return committed


# ----------------------------------------------------------------------------- the end of a run


def _first_conv_kernel(model: Any) -> tuple[Any, str] | None:
    for layer in model.layers:
        if type(layer).__name__ in ("Conv2D", "DepthwiseConv2D") and layer.weights:
            return layer.get_weights()[0], layer.name
    return None


def plot_curves(folder: Path, history: list[dict[str, Any]]) -> None:
    from cnndsl.training import plots

    if history:
        plots.curves(history, folder / "curves.png")


def _draw(folder: Path, history: list[dict[str, Any]], kernel: tuple[Any, str] | None) -> None:
    from cnndsl.training import plots

    plot_curves(folder, history)
    if kernel is not None:
        weights, name = kernel
        plots.filters(weights, folder / "filters.png",
                      f"{name}: {weights.shape[-1]} learned {weights.shape[0]}x"
                      f"{weights.shape[1]} kernels (input channel 0)")


def finish(model: Any, run: RunSpec, prepared: Any, data: Any, history: list[dict[str, Any]],
           seconds: list[float], device: str, plan: Any,
           evaluate: Callable[[], dict[str, float]], backend: Backend) -> dict[str, Any]:
    """The final files: model.keras, metrics.json (returned), the plots; then state.json
    says the run is done."""
    # The plots are drawn while TensorFlow evaluates (it releases the GIL): the end of a
    # run costs the longer of the two, not their sum.
    drawing = concurrent.futures.ThreadPoolExecutor(1)
    pictures = drawing.submit(_draw, run.folder, history, _first_conv_kernel(model))
    scores = evaluate()
    save_model(model, run.folder / MODEL)
    metrics = {
        "test_accuracy": scores.get("accuracy"),
        "test_loss": scores["loss"],
        "epochs": len(history),
        "seconds_per_epoch": round(sum(seconds) / max(1, len(seconds)), 3),
        "params": int(model.count_params()),
        "dataset": data.name,
        "backend": backend.name,
        "backend_version": backend.version,
        "keras_version": backend.keras.__version__,
        "device": device,
        "strategy": plan.name,
        "replicas": plan.replicas,
        "workers": plan.workers,
        "batch_per_replica": run.config.batch,
        "global_batch": plan.global_batch(run.config.batch),
        "train_images": examples(prepared.x_train),
        "test_images": examples(prepared.x_test),
        "loss": prepared.loss,
        **{f"test_{k}": v for k, v in scores.items() if k not in ("loss", "accuracy")},
    }
    write_json(run.folder / METRICS, metrics)
    pictures.result()  # re-raises a drawing error here
    drawing.shutdown()
    state = read_state(run.folder)
    stopped_early = len(history) < run.config.epochs
    write_json(run.folder / STATE, {**state, "done": True, "stopped_early": stopped_early})
    return metrics


def scratch(folder: Path) -> Path:
    """A non-chief worker's checkpoint folder, in the temporary folder: named by the run
    and the task, so that a worker restarted after SIGKILL clears what it left behind."""
    import hashlib
    import shutil
    import tempfile

    from cnndsl.training.distribute import tf_config

    task = tf_config().get("task") or {}
    key = hashlib.sha1(str(folder.resolve()).encode()).hexdigest()[:12]
    path = Path(tempfile.gettempdir()) / (
        f"cnndsl-worker-{key}-{task.get('type', 'worker')}-{task.get('index', 0)}")
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path
