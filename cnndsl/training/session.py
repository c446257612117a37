"""A training run from start to end: a new run or one resumed, its data loaded, the model
built (or restored from its checkpoint), fitted, and finished with its final files.

`train` is the entry for Python (the API, a notebook): it returns a `Run` and raises
`TrainError` with one line, printing no error. `cnndsl train` (commands.py) drives the same
functions and adds what only a command does: `--resume`, and multiworker clusters.

Ctrl-C, or a notebook's interrupt, leaves the run folder resumable, as every epoch is
committed when it ends: the interruption surfaces as `TrainInterrupted`, a
KeyboardInterrupt whose message names the folder and `cnndsl train --resume FOLDER`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cnndsl.analysis.train_section import TrainConfig
from cnndsl.common.files import InputOverwriteError, WriteError, refuse_input
from cnndsl.training import datasets, keras_backend
from cnndsl.training.errors import EXIT_USAGE, EXIT_WORKER_LOST, TrainError, TrainInterrupted
from cnndsl.training.fit import (
    Fitted,
    compiled,
    evaluate_model,
    fit,
    loop_epochs,
    make_optimizer,
    restore_best,
)
from cnndsl.training.progress import Reporter, note, summary
from cnndsl.training.run_folder import (
    RUN,
    STATE,
    RunSpec,
    clear_stale,
    epochs_done,
    final_files,
    finish,
    load_keras,
    lock,
    new_folder,
    plot_curves,
    scratch,
    sync_history,
    unlock_all,
    write_json,
)
from cnndsl.training.runstate import RunFolderError, inside, read_state
from cnndsl.training.settings import (
    analyse_source,
    check_multiworker,
    devices,
    with_overrides,
    writes,
)

__all__ = ["Run", "TrainError", "TrainInterrupted", "train"]

Started = tuple[RunSpec, Any, Any, Any]  # the run, its analysis, prepared data, loaded data


@dataclass
class Run:
    """A finished run: its folder, a row of history an epoch, metrics.json's contents, and
    the trained keras.Model."""

    folder: Path
    history: list[dict[str, Any]]
    metrics: dict[str, Any]
    model: Any

    def __repr__(self) -> str:  # the model's and the history's reprs say nothing useful
        acc = self.metrics.get("test_accuracy")
        score = f", test_accuracy={acc:.4f}" if acc is not None else ""
        return f"Run(folder={str(self.folder)!r}, epochs={len(self.history)}{score})"


def train(source: str, name: str, *, network: str | None = None, data: Path | None = None,
          out: Path | None = None, overrides: Mapping[str, Any] | None = None,
          verbose: int | None = None) -> Run:
    """Train the network of `source` (`name`: its file, or "<string>", for messages) into a
    new run folder (`out`, else runs/NETWORK-TIME/), on `data` (an .npz or IDX folder) or
    the train section's dataset. `overrides` are the command line's settings (epochs,
    batch, lr, ...); `verbose` is Keras's: 0 silent, 1 a progress bar (None: 1), 2 a line
    an epoch. Raises TrainError, or TrainInterrupted on Ctrl-C."""
    _check_arguments(source, network, data, out, overrides, verbose)
    name = str(name)  # a Path is welcome too
    report = Reporter(verbose, headers=verbose != 0)
    try:
        analysis, config = settings(source, name, network, overrides or {}, show=verbose != 0,
                                    blocks=False)
        if config.strategy == "multiworker":
            raise TrainError("`strategy multiworker` runs from the command line: `cnndsl train "
                             "FILE --strategy multiworker --out DIR` on every worker", EXIT_USAGE)
        data = Path(data) if data is not None else None
        out = Path(out) if out is not None else None
        started = begin(source, name, analysis, config, network=network, out=out, data=data,
                        inputs=[Path(name)])
        run = execute(*started, report)
    except (WriteError, RunFolderError) as err:
        raise TrainError(str(err)) from err
    finally:
        unlock_all()
    assert run is not None  # None only for a multiworker worker, refused above
    return run


def _check_arguments(source: object, network: object, data: object, out: object,
                     overrides: object, verbose: object) -> None:
    """What the command line's parser would have refused, refused in one line."""
    from cnndsl.common.limits import MAX_SOURCE_BYTES

    if not isinstance(source, str):
        raise TrainError(f"source is the text of a .cnn file (a str), not "
                         f"{type(source).__name__}", EXIT_USAGE)
    if not (network is None or isinstance(network, str)):
        raise TrainError(f"network is a name (a str), not {type(network).__name__}",
                         EXIT_USAGE)
    for what, path in (("data", data), ("out", out)):
        if not (path is None or isinstance(path, str | os.PathLike)):
            raise TrainError(f"{what} is a path, not {type(path).__name__}", EXIT_USAGE)
    if len(source.encode(errors="replace")) > MAX_SOURCE_BYTES:
        raise TrainError(f"the source is larger than {MAX_SOURCE_BYTES // 1024**2} MB, the "
                         "limit for a .cnn file", EXIT_USAGE)
    if overrides is not None and not (isinstance(overrides, Mapping) and all(
            isinstance(key, str) for key in overrides)):
        raise TrainError("overrides are train settings by name, such as {'epochs': 3}",
                         EXIT_USAGE)
    if verbose not in (None, 0, 1, 2) or isinstance(verbose, bool):
        raise TrainError(f"verbose is 0, 1, 2 or None, not {verbose!r}", EXIT_USAGE)


def settings(source: str, name: str, network: str | None, overrides: Mapping[str, Any],
             show: bool = True, blocks: bool = True) -> tuple[Any, TrainConfig]:
    """The analysis and the train settings with `overrides` on top (see analyse_source)."""
    analysis, config = analyse_source(source, name, network, show, blocks)
    return analysis, with_overrides(config, overrides)


def load_data(run: RunSpec, analysis: Any) -> tuple[Any, Any]:
    try:
        return datasets.for_network(run.config.dataset, Path(run.data) if run.data else None,
                                    analysis, run.config.output_losses, run.config.loss, note)
    except datasets.DataError as err:
        raise TrainError(str(err)) from err


def begin(source: str, name: str, analysis: Any, config: TrainConfig, *,
          network: str | None, out: Path | None, data: Path | None, inputs: Iterable[Path],
          mixed_precision: bool = False, devices_text: str | None = None) -> Started:
    """A new run: its data loaded (a mismatch stops here, before any file), its folder
    made and locked, run.json written. `inputs`: files `out` must not be."""
    try:
        if out is not None:
            refuse_input(out, [*inputs, *([data] if data else [])])
    except InputOverwriteError as err:
        raise TrainError(str(err), EXIT_USAGE) from err
    if out is not None and (out / RUN).exists():
        raise TrainError(f"`{out}` already holds a run; continue it with `--resume {out}` or "
                         "choose another --out", EXIT_USAGE)
    # The backend is recorded in run.json: a resumed or evaluated run stays on it.
    config = replace(config, backend=keras_backend.chosen(config.backend))
    # An absolute data path, so that `--resume` works from any folder.
    run = RunSpec(Path(), source, name, network, str(data.resolve()) if data else None,
                  config, mixed_precision, devices=devices(devices_text),
                  writes=writes(config))
    _on_backend(run)
    prepared, loaded = load_data(run, analysis)
    if not run.writes:  # a multiworker worker reads the chief's folder, writes nothing there
        run.folder = Path(out or ".")  # the command insisted on --out
        return run, analysis, prepared, loaded
    run.folder = new_folder(out, analysis.graph.network)
    lock(run.folder)
    if (run.folder / RUN).exists():  # another trainer made it since the check above
        raise TrainError(f"`{run.folder}` already holds a run; continue it with `--resume "
                         f"{run.folder}` or choose another --out", EXIT_USAGE)
    write_json(run.folder / RUN, run.to_json())
    return run, analysis, prepared, loaded


def resumed(folder: Path, data: Path | None, overrides: Mapping[str, Any],
            devices_text: str | None, report: Reporter) -> Started | None:
    """The run to continue, or None (said why) when there is nothing left to train."""
    run = RunSpec.load(folder)
    made_on = run.config.backend
    run.config = with_overrides(run.config, overrides)
    if run.config.backend != made_on:
        raise TrainError(f"`{folder}` was trained on {made_on}; resume it on {made_on} "
                         "(leave out --backend)", EXIT_USAGE)
    if data is not None:
        run.data = str(data.resolve())
    if devices_text is not None:
        run.devices = devices(devices_text)
    run.writes = writes(run.config)
    if run.writes:
        lock(folder)
        run.state = read_state(folder)  # as the lock found it
        clear_stale(folder)
        sync_history(folder)
    done, state = run.state.get("epoch", 0), run.state
    if epochs_done(run) and final_files(folder):
        why = "early stopping ended it" if state.get("stopped_early") else "give a larger --epochs"
        report.say(f"`{folder}` is complete after {done} epochs; nothing to resume ({why})")
        return None
    if epochs_done(run):
        note(f"`{folder}` finished its {done} epochs but not its final files; writing them")
    analysis, _ = analyse_source(run.source, run.file, run.network, show=False)
    _on_backend(run)
    prepared, loaded = load_data(run, analysis)
    if run.writes:
        write_json(folder / RUN, run.to_json())  # a longer --epochs holds for later resumes
    return run, analysis, prepared, loaded


def _on_backend(run: RunSpec) -> None:
    """Keras loaded on the run's backend, before the data (keras.datasets imports it);
    what that backend cannot do refused before a folder is made."""
    keras_backend.refuse_tensorflow_only(run.config.backend, run.config.strategy, run.devices)
    keras_backend.load(run.config.backend)


def execute(run: RunSpec, analysis: Any, prepared: Any, data: Any,
            report: Reporter) -> Run | None:
    """Train a started run to its end; None for a multiworker worker, whose chief keeps
    the results. Ctrl-C raises TrainInterrupted."""
    try:
        return _execute(run, analysis, prepared, data, report)
    except KeyboardInterrupt:
        raise _interrupted(run) from None


def _execute(run: RunSpec, analysis: Any, prepared: Any, data: Any,
             report: Reporter) -> Run | None:
    config, state = run.config, run.state
    done = state.get("epoch", 0)
    if config.strategy == "multiworker":
        check_multiworker(run.mixed_precision)
    on_backend = keras_backend.load(config.backend)
    keras = on_backend.keras
    # before TensorFlow initialises its devices
    chosen = keras_backend.plan(on_backend, config.strategy, run.devices)
    keras_backend.seed(on_backend, config.seed)
    on = keras_backend.device(on_backend, run.mixed_precision)
    report.say(f"backend: {on_backend.describe()}")
    report.say(f"device: {on}")
    report.say(f"strategy: {chosen.describe(config.batch)}")
    report.say(datasets.describe(data))
    if done:
        report.say(f"resuming `{run.folder}` after epoch {done} of {config.epochs}")
    if chosen.name == "multiworker":
        if datasets.several_ports(analysis):
            raise TrainError("multi-worker training takes networks of one input and one "
                             "output", EXIT_USAGE)
        return _train_multiworker(run, analysis, prepared, data, chosen, on, on_backend,
                                  report)
    with chosen.strategy.scope():  # variables made here are mirrored on every replica
        if done:
            model = load_keras(inside(run.folder, state["checkpoint"], "checkpoint"), keras)
        else:
            model = compiled(analysis, config, prepared, run.mixed_precision, on_backend,
                             chosen.global_batch(config.batch), chosen.name)
    if epochs_done(run):  # killed after its last epoch: finish it as that epoch left it
        restore_best(model, run)
        fitted = Fitted(list(state.get("history", [])), list(state.get("seconds", [])))
    else:
        fitted = fit(model, run, prepared, report.epochs(config.epochs), keras,
                     chosen.global_batch(config.batch))
    metrics = finish(model, run, prepared, data, fitted.history, fitted.seconds, on, chosen,
                     lambda: evaluate_model(model, prepared, chosen.global_batch(config.batch)),
                     on_backend)
    report.say(summary(metrics, run.folder))
    return Run(run.folder, fitted.history, metrics, model)


def _interrupted(run: RunSpec) -> TrainInterrupted:
    """What a Ctrl-C leaves: every committed epoch, history.csv caught up with state.json
    (the Ctrl-C may land between the two) and its curves drawn."""
    committed = read_state(run.folder).get("history", []) if (
        run.folder / STATE).exists() else []
    if run.writes and committed:
        sync_history(run.folder)
        plot_curves(run.folder, committed)
    return TrainInterrupted(run.folder, len(committed))


def _train_multiworker(run: RunSpec, analysis: Any, prepared: Any, data: Any, chosen: Any,
                       on: str, on_backend: keras_backend.Backend, report: Reporter) -> Run | None:
    """MultiWorkerMirroredStrategy through distribute.Loop (Keras 3's fit cannot run it).
    Every worker runs every step and checkpoint; only the chief keeps what they write."""
    import shutil

    from cnndsl.backends.runtime import build_model
    from cnndsl.training import distribute

    config, keras = run.config, on_backend.keras
    elsewhere = None if run.writes else scratch(run.folder)
    try:
        with chosen.strategy.scope():
            model = build_model(analysis)
            optimizer = make_optimizer(config, keras)
            optimizer.build(model.trainable_variables)
            model.compile(optimizer=optimizer, loss=prepared.loss)  # saved with model.keras
        loop = distribute.Loop(chosen, model, optimizer, prepared.loss, config.batch)
        checkpoints = distribute.Checkpoints(model, optimizer,
                                             elsewhere or run.folder / "checkpoints")
        # Read again now that every worker has joined: no worker of the old cluster is left
        # to commit an epoch, so all of them resume from the same one.
        run.state = read_state(run.folder)
        if run.state.get("epoch"):
            checkpoints.restore(inside(run.folder, run.state["checkpoint"], "checkpoint"))
        stopper = distribute.EarlyStop(config.early_stopping, run.state.get("early_stopping"),
                                       bool(run.state.get("stopped_early")), run.folder,
                                       report.say)
        fitted = loop_epochs(run, loop, checkpoints, prepared, report.epochs(config.epochs),
                             stopper)
        stopper.restore_best(model)
        scores = loop.evaluate(prepared.x_test, prepared.y_test)
        if not run.writes:
            where = distribute.where_the_chief_writes(distribute.tf_config(), run.folder,
                                                      fitted.history)
            report.say(f"worker done: test accuracy {scores['accuracy']:.2%}; {where}")
            return None
        metrics = finish(model, run, prepared, data, fitted.history, fitted.seconds, on,
                         chosen, lambda: scores, on_backend)
        report.say(summary(metrics, run.folder))
        return Run(run.folder, fitted.history, metrics, model)
    except distribute.WorkerLost as err:
        raise TrainError(f"a worker was lost ({err}); run the same command again on every "
                         "lost worker: training continues from the last finished epoch",
                         EXIT_WORKER_LOST) from err
    finally:
        if elsewhere is not None:
            shutil.rmtree(elsewhere, ignore_errors=True)

