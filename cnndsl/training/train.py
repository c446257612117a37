"""`cnndsl train` and `cnndsl evaluate`: fit the analysed network in-process, in a run folder
that survives Ctrl-C and SIGKILL.

The run folder:
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
import functools
import io
import json
import math
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cnndsl.analysis.train_section import ConfigError, TrainConfig, apply_overrides, validate_train
from cnndsl.common.diagnostics import Diagnostic, Renderer, has_errors, sort_key
from cnndsl.common.files import (
    InputOverwriteError,
    WriteError,
    refuse_input,
    replacing,
    write_atomic,
)
from cnndsl.common.safetext import shown
from cnndsl.training.runstate import RunFolderError, config_problem, inside, read_state

RUN, STATE, HISTORY, MODEL, METRICS = (
    "run.json", "state.json", "history.csv", "model.keras", "metrics.json")
EXIT_OK, EXIT_ERRORS, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
EXIT_WORKER_LOST = 75  # EX_TEMPFAIL: a multiworker peer died; the same command continues
STEPS_PER_EXECUTION = 32  # steps per call into TensorFlow: no Python between those steps

OPTIMIZER_CLASSES = {"adam": "Adam", "adamw": "AdamW", "sgd": "SGD", "rmsprop": "RMSprop",
                     "adagrad": "Adagrad", "adadelta": "Adadelta", "adamax": "Adamax",
                     "nadam": "Nadam", "lion": "Lion", "ftrl": "Ftrl"}
METRIC_CLASSES = {"auc": "AUC", "precision": "Precision", "recall": "Recall"}


class Fail(Exception):
    """Stop with a one-line `error: ...` and an exit code."""

    def __init__(self, message: str, code: int = EXIT_ERRORS) -> None:
        super().__init__(message)
        self.message, self.code = message, code


def note(message: str) -> None:
    print(f"note: {shown(message)}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- files


def write_json(path: Path, data: Any) -> None:
    write_atomic(path, json.dumps(data, indent=2) + "\n")


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        raise Fail(f"cannot read `{path}`: {err}") from err


def save_model(model: Any, path: Path) -> None:
    with replacing(path) as tmp:
        model.save(tmp)


def load_keras(path: Path, keras: Any) -> Any:
    """A saved model, or Fail naming the file: missing, damaged, or refused for safety."""
    import zipfile

    if not path.is_file():
        raise Fail(f"`{path}` is missing; the run folder is incomplete")
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
    except (OSError, zipfile.BadZipFile, EOFError):
        damaged = path.name
    if damaged is not None:
        raise Fail(f"`{path}` is damaged (empty or cut short: not a whole .keras file)")
    try:
        return keras.models.load_model(path)  # safe_mode: no code from the file runs
    except Exception as err:  # Keras raises ValueError, TypeError, KeyError... for bad files
        if "safe_mode" in str(err):
            raise Fail(f"`{path}` holds Python code (such as a Lambda layer) that Keras "
                       "refuses to load for safety; cnndsl never saves one") from err
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise Fail(f"`{path}` cannot be loaded as a Keras model ({first})") from err


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
class Run:
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
    def load(folder: Path) -> Run:
        spec = read_json(folder / RUN)
        if spec is None:
            raise Fail(f"`{folder}` is not a run folder (it has no {RUN})", EXIT_USAGE)
        try:
            run = Run(folder, spec["source"], spec["file"], spec["network"], spec["data"],
                      TrainConfig.from_json(spec["config"]),
                      spec.get("mixed_precision", False), read_state(folder),
                      tuple(spec.get("devices", ())))
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise Fail(f"`{folder / RUN}` is damaged ({err})") from err
        # run.json may come from someone else: every field has its type, every setting
        # is one the `train` section accepts.
        texts = (run.source, run.file, *run.devices)
        optional = (run.network, run.data)
        if not all(isinstance(t, str) for t in texts) or not all(
                t is None or isinstance(t, str) for t in optional) or not isinstance(
                    run.mixed_precision, bool):
            raise Fail(f"`{folder / RUN}` is damaged: a field has the wrong type")
        problem = config_problem(run.config)
        if problem:
            raise Fail(f"`{folder / RUN}` is damaged: {problem}")
        return run


def analyse_source(source: str, name: str, network: str | None, show: bool = True) -> Any:
    """The analysis of a file and its train settings; its diagnostics are rendered (warnings
    only when `show`: a resumed run has shown them already), errors end in Fail."""
    from cnndsl.analysis.pipeline import NetworkChoiceError, analyse

    try:
        result = analyse(source, network)
    except NetworkChoiceError as err:
        raise Fail(str(err), EXIT_USAGE) from err
    config, train_diagnostics = (validate_train(result.analysis.graph.train)
                                 if result.analysis else (TrainConfig(), []))
    # Once `analyse` validates the train section itself these repeat: keep each once.
    diagnostics = sorted(dict.fromkeys(result.diagnostics + train_diagnostics), key=sort_key)
    if show or has_errors(diagnostics):
        _render(diagnostics, name, source)
    if has_errors(diagnostics) or result.analysis is None:
        raise Fail(f"`{name}` has errors; see `cnndsl check {name}`")
    _check_memory(result.analysis, name)
    return result.analysis, config


def _check_memory(analysis: Any, name: str) -> None:
    """Refuse, before Keras allocates anything, a network this machine cannot hold."""
    from cnndsl.common.limits import available_memory, training_bytes

    params = analysis.totals.params
    need, have = training_bytes(params), available_memory()
    if have is not None and need > have:
        raise Fail(f"`{name}` has {params:,} parameters: training needs at least "
                   f"{need / 1024**3:,.1f} GB (weights, gradients, optimizer state) but this "
                   f"machine has {have / 1024**3:,.1f} GB available; make the network smaller")


def _render(diagnostics: list[Diagnostic], name: str, source: str) -> None:
    colour = sys.stderr.isatty() and not os.environ.get("NO_COLOR")
    renderer = Renderer(name, source, colour)
    for block in renderer.blocks(diagnostics):
        print(block + "\n", file=sys.stderr)


def _new_folder(out: Path | None, network: str) -> Path:
    if out is None:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        out = Path("runs") / f"{network}-{stamp}"
        n = 1
        while out.exists():
            n += 1
            out = Path("runs") / f"{network}-{stamp}-{n}"
    if out.exists() and not out.is_dir():
        raise Fail(f"--out `{out}` is an existing file, not a run folder; choose another --out",
                   EXIT_USAGE)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise Fail(f"cannot make the run folder `{out}`: {err.strerror or err}") from err
    return out


_HELD: list[Callable[[], None]] = []  # the run-folder locks this process holds


def _lock(folder: Path) -> None:
    """Own the run folder until the command ends (runlock.py); a second trainer is refused."""
    from cnndsl.training.runlock import LockError, acquire

    try:
        _HELD.append(acquire(folder, note))
    except LockError as err:
        raise Fail(str(err)) from err


def _unlock_all() -> None:
    while _HELD:
        _HELD.pop()()


# ----------------------------------------------------------------------------- commands


def train_command(file: Path | None = None, *, network: str | None = None,
                  out: Path | None = None, resume: Path | None = None,
                  data: Path | None = None, mixed_precision: bool = False,
                  devices: str | None = None, verbose: int | None = None,
                  **overrides: Any) -> int:
    """`cnndsl train FILE [options]` or `cnndsl train --resume DIR [options]`: an exit code.

    `overrides` are the train settings given on the command line (None: not given):
    dataset, optimizer, lr, loss, metrics, epochs, batch, validation_split,
    early_stopping ("off", "on" or "patience=3,monitor=val_loss"), patience, seed, strategy.
    `devices` is `--devices /cpu:0,/cpu:1` for the mirrored strategy.
    Under `multiworker` every worker runs the same command; only the chief writes the run
    folder, and a worker that rejoins continues from the last epoch in it.
    """
    try:
        if resume is not None:
            if file is not None:
                raise Fail("give either a FILE or --resume DIR, not both", EXIT_USAGE)
            started = _resumed(resume, data, overrides, devices)
            if started is None:
                return EXIT_OK
        elif file is None:
            raise Fail("give the .cnn FILE to train (or --resume DIR)", EXIT_USAGE)
        else:
            started = _started(file, network, out, data, mixed_precision, overrides, devices)
            if started is None:
                return EXIT_OK
        return _train(*started, verbose)
    except (Fail, WriteError, RunFolderError) as err:
        print(f"error: {shown(str(err))}", file=sys.stderr)
        return err.code if isinstance(err, Fail) else EXIT_ERRORS
    finally:
        _unlock_all()


def _read(file: Path) -> str:
    from cnndsl.common.limits import SourceError, read_source

    try:
        return read_source(file)
    except SourceError as err:
        raise Fail(str(err), EXIT_USAGE) from err


def _with_overrides(config: TrainConfig, overrides: Mapping[str, Any]) -> TrainConfig:
    try:
        return apply_overrides(config, overrides)
    except ConfigError as err:
        hint = f" ({err.hint})" if err.hint else ""
        raise Fail(f"{err.message}{hint}", EXIT_USAGE) from err


Started = tuple[Run, Any, Any, Any]  # the run, its analysis, prepared data, loaded data


def _devices(text: str | None) -> tuple[str, ...]:
    return tuple(d.strip() for d in text.split(",") if d.strip()) if text else ()


def _started(file: Path, network: str | None, out: Path | None, data: Path | None,
             mixed_precision: bool, overrides: Mapping[str, Any],
             devices: str | None) -> Started | None:
    source = _read(file)
    analysis, config = analyse_source(source, str(file), network)
    config = _with_overrides(config, overrides)
    if config.strategy == "multiworker" and (joined := _joins_run(source, out)):
        return _resumed(joined, data, overrides, devices)
    try:
        if out is not None:
            refuse_input(out, [file, *([data] if data else [])])
    except InputOverwriteError as err:
        raise Fail(str(err), EXIT_USAGE) from err
    if out is not None and (out / RUN).exists():
        raise Fail(f"`{out}` already holds a run; continue it with `--resume {out}` or choose "
                   "another --out", EXIT_USAGE)
    # An absolute data path, so that `--resume` works from any folder.
    run = Run(Path(), source, str(file), network, str(data.resolve()) if data else None,
              config, mixed_precision, devices=_devices(devices), writes=_writes(config))
    prepared, loaded = _load_data(run, analysis)  # a mismatch stops here, before any file
    if not run.writes:  # a multiworker worker reads the chief's folder, writes nothing there
        run.folder = Path(out or ".")  # _joins_run insisted on --out
        return run, analysis, prepared, loaded
    run.folder = _new_folder(out, analysis.graph.network)
    _lock(run.folder)
    if (run.folder / RUN).exists():  # another trainer made it since the check above
        raise Fail(f"`{run.folder}` already holds a run; continue it with `--resume "
                   f"{run.folder}` or choose another --out", EXIT_USAGE)
    write_json(run.folder / RUN, run.to_json())
    return run, analysis, prepared, loaded


def _joins_run(source: str, out: Path | None) -> Path | None:
    """Under multiworker every worker runs the same command, so a run of the same file
    already in `--out` (shared by all workers) is continued, not refused: its folder."""
    if out is None:
        raise Fail("`--strategy multiworker` needs `--out DIR`, the same folder (on a shared "
                   "filesystem) for every worker", EXIT_USAGE)
    if not (out / RUN).exists():
        return None
    if Run.load(out).source != source:
        raise Fail(f"`{out}` holds a run of another file; choose another --out", EXIT_USAGE)
    return out


def _resumed(folder: Path, data: Path | None, overrides: Mapping[str, Any],
             devices: str | None = None) -> Started | None:
    """The run to continue, or None (said why) when there is nothing left to train."""
    run = Run.load(folder)
    run.config = _with_overrides(run.config, overrides)
    if data is not None:
        run.data = str(data.resolve())
    if devices is not None:
        run.devices = _devices(devices)
    run.writes = _writes(run.config)
    if run.writes:
        _lock(folder)
        run.state = read_state(folder)  # as the lock found it
        for stale in [*folder.glob(".tmp-*"), *folder.glob(".*.tmp")]:  # left by a killed run
            stale.unlink(missing_ok=True)
        _sync_history(folder)
    done, state = run.state.get("epoch", 0), run.state
    if _epochs_done(run) and _final_files(folder):
        why = "early stopping ended it" if state.get("stopped_early") else "give a larger --epochs"
        print(f"`{shown(str(folder))}` is complete after {done} epochs; nothing to resume "
              f"({why})")
        return None
    if _epochs_done(run):
        note(f"`{folder}` finished its {done} epochs but not its final files; writing them")
    analysis, _ = analyse_source(run.source, run.file, run.network, show=False)
    prepared, loaded = _load_data(run, analysis)
    if run.writes:
        write_json(folder / RUN, run.to_json())  # a longer --epochs holds for later resumes
    return run, analysis, prepared, loaded


def _epochs_done(run: Run) -> bool:
    """Every epoch trained (or early stopping ended the run): only the final files remain."""
    return run.state.get("epoch", 0) >= run.config.epochs or bool(
        run.state.get("stopped_early"))


def _final_files(folder: Path) -> bool:
    """model.keras and metrics.json both whole: state.json says so once they are written."""
    return bool(read_state(folder).get("done")) and all(
        (folder / name).is_file() for name in (MODEL, METRICS))


def _writes(config: TrainConfig) -> bool:
    """Whether this process writes the run folder: not a multiworker worker but the chief."""
    from cnndsl.training.distribute import StrategyError, is_chief, tf_config

    try:
        return config.strategy != "multiworker" or is_chief(tf_config())
    except StrategyError as err:
        raise Fail(str(err), EXIT_USAGE) from err


# ----------------------------------------------------------------------------- training


@dataclass
class Fitted:
    history: list[dict[str, Any]]
    seconds: list[float]
    interrupted: bool = False


def _train(run: Run, analysis: Any, prepared: Any, data: Any, verbose: int | None) -> int:
    from cnndsl.training import datasets

    config, state = run.config, run.state
    done = state.get("epoch", 0)
    if config.strategy == "multiworker":
        _check_multiworker(run)
    keras = _import_keras()
    plan = _plan(run)  # before anything makes TensorFlow initialise its devices
    keras.utils.set_random_seed(config.seed)
    device = _device(run.mixed_precision)
    print(f"device: {device}", flush=True)
    print(f"strategy: {plan.describe(config.batch)}", flush=True)
    print(shown(datasets.describe(data)), flush=True)
    if done:
        print(f"resuming `{shown(str(run.folder))}` after epoch {done} of {config.epochs}",
              flush=True)
    if plan.name == "multiworker":
        if _several_ports(analysis):
            raise Fail("multi-worker training takes networks of one input and one output",
                       EXIT_USAGE)
        return _train_multiworker(run, analysis, prepared, data, plan, device, keras)
    with plan.strategy.scope():  # variables made here are mirrored on every replica
        if done:
            model = load_keras(inside(run.folder, state["checkpoint"], "checkpoint"), keras)
        else:
            model = _compiled(analysis, config, prepared, run.mixed_precision, keras,
                              plan.global_batch(config.batch), plan.name == "one")
    if _epochs_done(run):  # killed after its last epoch: finish it as that epoch left it
        _restore_best(model, run)
        fitted = Fitted(list(state.get("history", [])), list(state.get("seconds", [])))
    else:
        fitted = _fit(model, run, prepared, verbose, keras, plan.global_batch(config.batch))
    if fitted.interrupted:
        return _interrupted(run, fitted)
    metrics = _finish(model, run, prepared, data, fitted, device, plan,
                      lambda: evaluate_model(model, prepared, plan.global_batch(config.batch)))
    print(summary(metrics, run.folder))
    return EXIT_OK


def _sync_history(folder: Path) -> list[dict[str, Any]]:
    """history.csv written again from state.json, the commit point: a kill or Ctrl-C can
    land between the two writes, leaving history.csv one epoch behind."""
    committed = read_state(folder).get("history", [])
    write_atomic(folder / HISTORY, history_csv(committed))
    return committed


def _interrupted(run: Run, fitted: Fitted) -> int:
    epochs = len(fitted.history)
    if run.writes and (run.folder / STATE).exists():
        committed = _sync_history(run.folder)
        _plot_curves(run.folder, committed)
        epochs = len(committed)
    folder = shown(str(run.folder))
    print(f"\ninterrupted: {epochs} epoch{'s' * (epochs != 1)} saved in `{folder}`; "
          f"continue with `cnndsl train --resume {folder}`", file=sys.stderr)
    return EXIT_INTERRUPTED


def _check_multiworker(run: Run) -> None:
    """What the multiworker loop does not do yet, refused before any worker waits."""
    if run.mixed_precision:
        raise Fail("--mixed-precision is not available under `--strategy multiworker` yet",
                   EXIT_USAGE)


def _plan(run: Run) -> Any:
    from cnndsl.training.distribute import StrategyError, choose

    try:
        return choose(run.config.strategy, run.devices)
    except StrategyError as err:
        raise Fail(str(err), EXIT_USAGE) from err


def _train_multiworker(run: Run, analysis: Any, prepared: Any, data: Any, plan: Any,
                       device: str, keras: Any) -> int:
    """MultiWorkerMirroredStrategy through distribute.Loop (Keras 3's fit cannot run it).
    Every worker runs every step and checkpoint; only the chief keeps what they write."""
    import shutil

    from cnndsl.backends.runtime import build_model
    from cnndsl.training import distribute

    config = run.config
    scratch = None if run.writes else _scratch(run.folder)
    try:
        with plan.strategy.scope():
            model = build_model(analysis)
            optimizer = _optimizer(config, keras)
            optimizer.build(model.trainable_variables)
            model.compile(optimizer=optimizer, loss=prepared.loss)  # saved with model.keras
        loop = distribute.Loop(plan, model, optimizer, prepared.loss, config.batch)
        checkpoints = distribute.Checkpoints(model, optimizer,
                                             scratch or run.folder / "checkpoints")
        # Read again now that every worker has joined: no worker of the old cluster is left
        # to commit an epoch, so all of them resume from the same one.
        run.state = read_state(run.folder)
        if run.state.get("epoch"):
            checkpoints.restore(inside(run.folder, run.state["checkpoint"], "checkpoint"))
        stopper = distribute.EarlyStop(config.early_stopping, run.state.get("early_stopping"),
                                       bool(run.state.get("stopped_early")), run.folder)
        fitted = _loop_epochs(run, loop, checkpoints, prepared, stopper)
        if fitted.interrupted:
            return _interrupted(run, fitted)
        stopper.restore_best(model)
        scores = loop.evaluate(prepared.x_test, prepared.y_test)
        if not run.writes:
            where = distribute.where_the_chief_writes(distribute.tf_config(), run.folder,
                                                      fitted.history)
            print(f"worker done: test accuracy {scores['accuracy']:.2%}; {shown(where)}")
            return EXIT_OK
        metrics = _finish(model, run, prepared, data, fitted, device, plan, lambda: scores)
        print(summary(metrics, run.folder))
        return EXIT_OK
    except distribute.WorkerLost as err:
        print(f"error: a worker was lost ({err}); run the same command again on every "
              "lost worker: training continues from the last finished epoch", file=sys.stderr)
        return EXIT_WORKER_LOST
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def _scratch(folder: Path) -> Path:
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


def _loop_epochs(run: Run, loop: Any, checkpoints: Any, prepared: Any,
                 stopper: Any) -> Fitted:
    """The epochs still to run, each committed (checkpoint, then state.json) by the chief."""
    config = run.config
    history = list(run.state.get("history", []))[:run.state.get("epoch", 0)]
    seconds = list(run.state.get("seconds", []))[:len(history)]
    if stopper.stopped:  # early stopping ended the run before its final files
        return Fitted(history, seconds)
    n_val = int(len(prepared.x_train) * config.validation_split)  # the last rows, as Keras
    n_fit = len(prepared.x_train) - n_val
    try:
        for epoch in range(len(history), config.epochs):
            started = time.perf_counter()
            row = loop.train_epoch(prepared.x_train[:n_fit], prepared.y_train[:n_fit],
                                   config.seed + epoch)
            if n_val:
                scores = loop.evaluate(prepared.x_train[n_fit:], prepared.y_train[n_fit:])
                row |= {f"val_{k}": v for k, v in scores.items()}
            seconds.append(time.perf_counter() - started)
            history.append({"epoch": epoch + 1, **row, "seconds": round(seconds[-1], 3)})
            path = Path(checkpoints.save(epoch + 1))
            print(f"epoch {epoch + 1}/{config.epochs}: "
                  + ", ".join(f"{k} {v:.4f}" for k, v in row.items()), flush=True)
            stop = stopper.update(epoch, row, loop.model)
            if run.writes:
                stopper.commit(run.folder, epoch, loop.model, functools.partial(
                    _commit_state, run.folder, history, seconds, f"checkpoints/{path.name}",
                    stopped_early=stop))
            if stop:
                break
    except KeyboardInterrupt:
        return Fitted(history, seconds, interrupted=True)
    return Fitted(history, seconds)


def _setup(seed: int) -> Any:
    keras = _import_keras()
    keras.utils.set_random_seed(seed)
    return keras


def _import_keras() -> Any:
    from cnndsl.backends.runtime import import_keras

    return import_keras()


def _load_data(run: Run, analysis: Any) -> tuple[Any, Any]:
    from cnndsl.training import datasets

    try:
        if _several_ports(analysis):
            return _load_ports(run, analysis)
        data = datasets.load(run.config.dataset, Path(run.data) if run.data else None, note)
        prepared = datasets.prepare(data, analysis.input_shape, analysis.output_shape,
                                    _output_losses(run.config, analysis)[0][2])
    except datasets.DataError as err:
        raise Fail(str(err)) from err
    return prepared, data


def _examples(x: Any) -> int:
    """How many examples prepared images hold (a list holds an array per input)."""
    return len(x[0]) if isinstance(x, list) else len(x)


def _several_ports(analysis: Any) -> bool:
    return len(analysis.graph.inputs) > 1 or len(analysis.graph.outputs) > 1


def _output_losses(config: TrainConfig, analysis: Any) -> list[tuple[str, Any, str]]:
    """Each output's name, shape and loss (its own, else the section's `loss`)."""
    return [(p.name, analysis.layers[p.node].shape, config.output_losses.get(p.name, config.loss))
            for p in analysis.graph.outputs]


def _load_ports(run: Run, analysis: Any) -> tuple[Any, Any]:
    """Data for several inputs (an .npz with an array per input) or several outputs (the
    one label set fed to each output)."""
    from cnndsl.training import datasets

    graph = analysis.graph
    names = [p.name for p in graph.inputs]
    if len(names) > 1:
        if not run.data:
            arrays = ", ".join(f"x_{n}" for n in names)
            raise Fail(f"network `{graph.network}` has {len(names)} inputs ({', '.join(names)}): "
                       f"give `--data FILE.npz` with the arrays {arrays} and y", EXIT_USAGE)
        data = datasets.load_inputs(Path(run.data), names)
    else:
        data = datasets.load(run.config.dataset, Path(run.data) if run.data else None, note)
    inputs = [(p.name, analysis.layers[p.node].shape) for p in graph.inputs]
    return datasets.prepare_ports(data, inputs, _output_losses(run.config, analysis)), data


def _compile_args(analysis: Any, config: TrainConfig, prepared: Any, keras: Any
                  ) -> dict[str, Any]:
    """`compile`'s loss and metrics; with several outputs, a loss, a weight and metrics
    for each."""
    outputs = analysis.graph.outputs
    if len(outputs) == 1:
        return {"loss": prepared.loss, "metrics": _metrics(config, keras)}
    return {"loss": prepared.loss,
            "loss_weights": [config.loss_weights.get(p.name, 1.0) for p in outputs],
            "metrics": [_metrics(config, keras) for _ in outputs]}


def _device(mixed_precision: bool) -> str:
    """The GPU when TensorFlow sees one (Keras then uses it by itself), else the CPU."""
    import tensorflow as tf

    from cnndsl.backends.runtime import import_keras

    gpus = tf.config.list_physical_devices("GPU")
    if mixed_precision and gpus:
        import_keras().mixed_precision.set_global_policy("mixed_float16")
    elif mixed_precision:
        note("--mixed-precision needs a GPU; training in float32 on the CPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        name = details.get("device_name", gpus[0].name)
        return f"GPU ({name}{', mixed precision' if mixed_precision else ''})"
    return f"CPU ({os.cpu_count()} cores, no GPU visible)"


def _compiled(analysis: Any, config: TrainConfig, prepared: Any, mixed: bool,
              keras: Any, batch: int, several_steps: bool = True) -> Any:
    """`several_steps`: steps_per_execution > 1, which MirroredStrategy cannot run (Keras
    3.15 feeds its loop a placeholder it never fills)."""
    from cnndsl.backends.runtime import build_model

    model = build_model(analysis, "float32" if mixed else None)
    optimizer = _optimizer(config, keras)
    steps = -(-round(_examples(prepared.x_train) * (1 - config.validation_split)) // batch)
    model.compile(optimizer=optimizer, **_compile_args(analysis, config, prepared, keras),
                  steps_per_execution=max(1, min(STEPS_PER_EXECUTION, steps))
                  if several_steps else 1)
    return model


def _optimizer(config: TrainConfig, keras: Any) -> Any:
    options = dict(config.optimizer_options)
    try:
        return getattr(keras.optimizers, OPTIMIZER_CLASSES[config.optimizer])(**options)
    except (TypeError, ValueError) as err:
        raise Fail(f"optimizer `{config.optimizer}` refuses these options "
                   f"({', '.join(options)}): {err}", EXIT_USAGE) from err


def _metrics(config: TrainConfig, keras: Any) -> list[Any]:
    return [getattr(keras.metrics, METRIC_CLASSES[m])() if m in METRIC_CLASSES else m
            for m in config.metrics]


def _callbacks(run: Run, keras: Any, history: list[dict[str, Any]],
               seconds: list[float]) -> list[Any]:
    """Early stopping (its state carried across resumes), then the per-epoch checkpoint."""
    es_config = run.config.early_stopping
    saved = run.state.get("early_stopping")
    folder = run.folder

    class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
        def on_train_begin(self, logs: Any = None) -> None:
            super().on_train_begin(logs)
            if saved:
                self.wait, self.best = saved["wait"], saved["best"]
                self.best_epoch = saved["best_epoch"]
                best = saved.get("best_weights")
                best = inside(folder, best, "best-weights file") if best else None
                if self.restore_best_weights and best is not None and best.is_file():
                    self.best_weights = _weights_from(self.model, best)

    early = None
    if es_config is not None:
        early = ResumableEarlyStopping(
            monitor=es_config.monitor, patience=es_config.patience,
            min_delta=es_config.min_delta, restore_best_weights=es_config.restore_best)

    class Checkpoint(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            seconds.append(time.perf_counter() - self.started)
            row = {"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items()},
                   "seconds": round(seconds[-1], 3)}
            bad = [k for k, v in row.items() if not math.isfinite(v)]
            if bad:  # never committed: the run stays resumable from the last sound epoch
                raise Fail(f"training diverged: {bad[0]} became {row[bad[0]]} in epoch "
                           f"{epoch + 1}; nothing of that epoch was saved; try a lower --lr "
                           "(or check the data)")
            history.append(row)
            _commit(self.model, folder, history, seconds, early)

    # TerminateOnNaN ends a diverged epoch early; Checkpoint then refuses to commit it.
    return [c for c in (keras.callbacks.TerminateOnNaN(), early, Checkpoint()) if c is not None]


def _restore_best(model: Any, run: Run) -> None:
    """The best weights, as early stopping with restore_best gives them at the end of fit."""
    es_config, saved = run.config.early_stopping, run.state.get("early_stopping") or {}
    if es_config is not None and es_config.restore_best and saved.get("best_weights"):
        path = inside(run.folder, saved["best_weights"], "best-weights file")
        if not path.is_file():
            raise Fail(f"`{path}` is missing; the run folder is incomplete")
        model.load_weights(path)


def _weights_from(model: Any, path: Path) -> list[Any]:
    current = model.get_weights()
    model.load_weights(path)
    best = model.get_weights()
    model.set_weights(current)
    return best


def _commit(model: Any, folder: Path, history: list[dict[str, Any]], seconds: list[float],
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
    _commit_state(folder, history, seconds, checkpoint, es_state, bool(model.stop_training))
    for old in [*folder.glob("checkpoint-*.keras"), *folder.glob("best-*.weights.h5")]:
        if old.name not in keep:
            old.unlink(missing_ok=True)


def _commit_state(folder: Path, history: list[dict[str, Any]], seconds: list[float],
                  checkpoint: str, es_state: dict[str, Any] | None = None,
                  stopped_early: bool = False) -> None:
    """state.json, the commit point, names a checkpoint already on disk; then history.csv."""
    write_json(folder / STATE, {"epoch": len(history), "checkpoint": checkpoint,
                                "history": history, "seconds": seconds,
                                "early_stopping": es_state, "done": False,
                                "stopped_early": stopped_early})
    write_atomic(folder / HISTORY, history_csv(history))


def _fit(model: Any, run: Run, prepared: Any, verbose: int | None, keras: Any,
         batch: int) -> Fitted:
    config = run.config
    history = list(run.state.get("history", []))
    seconds = list(run.state.get("seconds", []))
    if verbose is None:
        verbose = 1 if sys.stdout.isatty() else 2
    try:
        model.fit(prepared.x_train, prepared.y_train, batch_size=batch,
                  epochs=config.epochs, initial_epoch=len(history),
                  validation_split=config.validation_split, shuffle=True, verbose=verbose,
                  callbacks=_callbacks(run, keras, history, seconds))
    except KeyboardInterrupt:
        return Fitted(history, seconds, interrupted=True)
    return Fitted(history, seconds)


# ----------------------------------------------------------------------------- the end of a run


def _first_conv_kernel(model: Any) -> tuple[Any, str] | None:
    for layer in model.layers:
        if type(layer).__name__ in ("Conv2D", "DepthwiseConv2D") and layer.weights:
            return layer.get_weights()[0], layer.name
    return None


def _plot_curves(folder: Path, history: list[dict[str, Any]]) -> None:
    from cnndsl.training import plots

    if history:
        plots.curves(history, folder / "curves.png")


def _draw(folder: Path, history: list[dict[str, Any]], kernel: tuple[Any, str] | None) -> None:
    from cnndsl.training import plots

    _plot_curves(folder, history)
    if kernel is not None:
        weights, name = kernel
        plots.filters(weights, folder / "filters.png",
                      f"{name}: {weights.shape[-1]} learned {weights.shape[0]}x"
                      f"{weights.shape[1]} kernels (input channel 0)")


def _finish(model: Any, run: Run, prepared: Any, data: Any, fitted: Fitted, device: str,
            plan: Any, evaluate: Callable[[], dict[str, float]]) -> dict[str, Any]:
    # The plots are drawn while TensorFlow evaluates (it releases the GIL): the end of a
    # run costs the longer of the two, not their sum.
    drawing = concurrent.futures.ThreadPoolExecutor(1)
    pictures = drawing.submit(_draw, run.folder, fitted.history, _first_conv_kernel(model))
    scores = evaluate()
    save_model(model, run.folder / MODEL)
    metrics = {
        "test_accuracy": scores.get("accuracy"),
        "test_loss": scores["loss"],
        "epochs": len(fitted.history),
        "seconds_per_epoch": round(sum(fitted.seconds) / max(1, len(fitted.seconds)), 3),
        "params": int(model.count_params()),
        "dataset": data.name,
        "device": device,
        "strategy": plan.name,
        "replicas": plan.replicas,
        "workers": plan.workers,
        "batch_per_replica": run.config.batch,
        "global_batch": plan.global_batch(run.config.batch),
        "train_images": _examples(prepared.x_train),
        "test_images": _examples(prepared.x_test),
        "loss": prepared.loss,
        **{f"test_{k}": v for k, v in scores.items() if k not in ("loss", "accuracy")},
    }
    write_json(run.folder / METRICS, metrics)
    pictures.result()  # re-raises a drawing error here
    drawing.shutdown()
    state = read_state(run.folder)
    stopped_early = len(fitted.history) < run.config.epochs
    write_json(run.folder / STATE, {**state, "done": True, "stopped_early": stopped_early})
    return metrics


def evaluate_model(model: Any, prepared: Any, batch: int) -> dict[str, float]:
    scores = model.evaluate(prepared.x_test, prepared.y_test, batch_size=max(batch, 256),
                            verbose=0, return_dict=True)
    renamed = {k.removeprefix("compile_"): float(v) for k, v in scores.items()}
    if "accuracy" not in renamed:  # Keras names accuracy after the metric object's class
        for key in ("sparse_categorical_accuracy", "categorical_accuracy", "binary_accuracy"):
            if key in renamed:
                renamed["accuracy"] = renamed[key]
    return renamed


def _from_tf_checkpoint(analysis: Any, path: Path) -> Any:
    """The model of a multiworker checkpoint (tf.train format: weights, no architecture)."""
    import tensorflow as tf

    from cnndsl.backends.runtime import build_model

    model = build_model(analysis)
    tf.train.Checkpoint(model=model).restore(str(path)).expect_partial()
    return model


def summary(metrics: Mapping[str, Any], folder: Path) -> str:
    acc = metrics.get("test_accuracy")
    rows = [
        ("test accuracy", f"{acc:.2%}" if acc is not None else "-"),
        ("test loss", f"{metrics['test_loss']:.4f}"),
        ("epochs run", str(metrics["epochs"])),
        ("seconds per epoch", f"{metrics['seconds_per_epoch']:.2f}"),
        ("params", f"{metrics['params']:,}"),
        ("strategy", f"{metrics['strategy']}, {metrics['replicas']} replica"
                     f"{'s' * (metrics['replicas'] != 1)}"),
        ("batch", f"{metrics['global_batch']} global = {metrics['batch_per_replica']} per "
                  f"replica x {metrics['replicas']}"),
        ("run folder", f"{shown(str(folder))}{os.sep}"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n" + "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


# ----------------------------------------------------------------------------- evaluate


def evaluate_command(folder: Path, *, data: Path | None = None,
                     dataset: str | None = None) -> int:
    """`cnndsl evaluate DIR [--data PATH]`: the saved model's test loss and accuracy."""
    try:
        run = Run.load(folder)
        if dataset is not None:
            run.config = _with_overrides(run.config, {"dataset": dataset})
            run.data = None
        if data is not None:
            run.data = str(data)
        path = folder / MODEL
        if not path.exists():
            checkpoint = run.state.get("checkpoint")
            if not checkpoint:
                raise Fail(f"`{folder}` has no saved model yet (no epoch has finished)")
            note(f"the run is unfinished: evaluating its last checkpoint ({checkpoint})")
            path = inside(folder, checkpoint, "checkpoint")
        analysis, _ = analyse_source(run.source, run.file, run.network, show=False)
        prepared, loaded = _load_data(run, analysis)
        keras = _setup(run.config.seed)
        model = (load_keras(path, keras) if path.suffix == ".keras"
                 else _from_tf_checkpoint(analysis, path))
        # The data given now may label classes differently (one-hot or not): compile anew.
        model.compile(**_compile_args(analysis, run.config, prepared, keras))
        scores = evaluate_model(model, prepared, run.config.batch)
    except (Fail, RunFolderError) as err:
        print(f"error: {shown(str(err))}", file=sys.stderr)
        return err.code if isinstance(err, Fail) else EXIT_ERRORS
    acc = scores.get("accuracy")
    print(f"{shown(str(path))}: test loss {scores['loss']:.4f}"
          + (f", test accuracy {acc:.2%}" if acc is not None else "")
          + f" on {_examples(prepared.x_test):,} images ({shown(loaded.name)})")
    return EXIT_OK
