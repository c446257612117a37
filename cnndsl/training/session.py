"""A training run from start to end: a new run or one resumed, its data loaded, the model
built (or restored from its checkpoint), fitted, and finished with its final files.
`commands.py` drives these for `cnndsl train`."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cnndsl.common.files import InputOverwriteError, refuse_input
from cnndsl.common.safetext import shown
from cnndsl.training import datasets
from cnndsl.training.errors import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    EXIT_WORKER_LOST,
    Fail,
)
from cnndsl.training.fit import (
    Fitted,
    compiled,
    evaluate_model,
    fit,
    import_keras,
    loop_epochs,
    make_optimizer,
    restore_best,
)
from cnndsl.training.progress import note, summary
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
    write_json,
)
from cnndsl.training.runstate import inside, read_state
from cnndsl.training.settings import (
    analyse_source,
    check_multiworker,
    device,
    devices,
    plan,
    read,
    with_overrides,
    writes,
)

Started = tuple[RunSpec, Any, Any, Any]  # the run, its analysis, prepared data, loaded data


def load_data(run: RunSpec, analysis: Any) -> tuple[Any, Any]:
    try:
        return datasets.for_network(run.config.dataset, Path(run.data) if run.data else None,
                                    analysis, run.config.output_losses, run.config.loss, note)
    except datasets.DataError as err:
        raise Fail(str(err)) from err


def started(file: Path, network: str | None, out: Path | None, data: Path | None,
            mixed_precision: bool, overrides: Mapping[str, Any],
            devices_text: str | None) -> Started | None:
    """A new run: its folder made and locked, run.json written; or, under multiworker, the
    run of the same file already in --out joined."""
    source = read(file)
    analysis, config = analyse_source(source, str(file), network)
    config = with_overrides(config, overrides)
    if config.strategy == "multiworker" and (joined := _joins_run(source, out)):
        return resumed(joined, data, overrides, devices_text)
    try:
        if out is not None:
            refuse_input(out, [file, *([data] if data else [])])
    except InputOverwriteError as err:
        raise Fail(str(err), EXIT_USAGE) from err
    if out is not None and (out / RUN).exists():
        raise Fail(f"`{out}` already holds a run; continue it with `--resume {out}` or choose "
                   "another --out", EXIT_USAGE)
    # An absolute data path, so that `--resume` works from any folder.
    run = RunSpec(Path(), source, str(file), network, str(data.resolve()) if data else None,
                  config, mixed_precision, devices=devices(devices_text),
                  writes=writes(config))
    prepared, loaded = load_data(run, analysis)  # a mismatch stops here, before any file
    if not run.writes:  # a multiworker worker reads the chief's folder, writes nothing there
        run.folder = Path(out or ".")  # _joins_run insisted on --out
        return run, analysis, prepared, loaded
    run.folder = new_folder(out, analysis.graph.network)
    lock(run.folder)
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
    if RunSpec.load(out).source != source:
        raise Fail(f"`{out}` holds a run of another file; choose another --out", EXIT_USAGE)
    return out


def resumed(folder: Path, data: Path | None, overrides: Mapping[str, Any],
            devices_text: str | None = None) -> Started | None:
    """The run to continue, or None (said why) when there is nothing left to train."""
    run = RunSpec.load(folder)
    run.config = with_overrides(run.config, overrides)
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
        print(f"`{shown(str(folder))}` is complete after {done} epochs; nothing to resume "
              f"({why})")
        return None
    if epochs_done(run):
        note(f"`{folder}` finished its {done} epochs but not its final files; writing them")
    analysis, _ = analyse_source(run.source, run.file, run.network, show=False)
    prepared, loaded = load_data(run, analysis)
    if run.writes:
        write_json(folder / RUN, run.to_json())  # a longer --epochs holds for later resumes
    return run, analysis, prepared, loaded


def train_started(run: RunSpec, analysis: Any, prepared: Any, data: Any,
                  verbose: int | None) -> int:
    config, state = run.config, run.state
    done = state.get("epoch", 0)
    if config.strategy == "multiworker":
        check_multiworker(config, run.mixed_precision)
    keras = import_keras()
    chosen = plan(config.strategy, run.devices)  # before TensorFlow initialises its devices
    keras.utils.set_random_seed(config.seed)
    on = device(run.mixed_precision)
    print(f"device: {on}", flush=True)
    print(f"strategy: {chosen.describe(config.batch)}", flush=True)
    print(shown(datasets.describe(data)), flush=True)
    if done:
        print(f"resuming `{shown(str(run.folder))}` after epoch {done} of {config.epochs}",
              flush=True)
    if chosen.name == "multiworker":
        if datasets.several_ports(analysis):
            raise Fail("multi-worker training takes networks of one input and one output",
                       EXIT_USAGE)
        return _train_multiworker(run, analysis, prepared, data, chosen, on, keras)
    with chosen.strategy.scope():  # variables made here are mirrored on every replica
        if done:
            model = load_keras(inside(run.folder, state["checkpoint"], "checkpoint"), keras)
        else:
            model = compiled(analysis, config, prepared, run.mixed_precision, keras,
                             chosen.global_batch(config.batch), chosen.name == "one")
    if epochs_done(run):  # killed after its last epoch: finish it as that epoch left it
        restore_best(model, run)
        fitted = Fitted(list(state.get("history", [])), list(state.get("seconds", [])))
    else:
        fitted = fit(model, run, prepared, verbose, keras, chosen.global_batch(config.batch))
    if fitted.interrupted:
        return _interrupted(run, fitted)
    metrics = finish(model, run, prepared, data, fitted.history, fitted.seconds, on, chosen,
                     lambda: evaluate_model(model, prepared, chosen.global_batch(config.batch)))
    print(summary(metrics, run.folder))
    return EXIT_OK


def _interrupted(run: RunSpec, fitted: Fitted) -> int:
    epochs = len(fitted.history)
    if run.writes and (run.folder / STATE).exists():
        committed = sync_history(run.folder)
        plot_curves(run.folder, committed)
        epochs = len(committed)
    folder = shown(str(run.folder))
    print(f"\ninterrupted: {epochs} epoch{'s' * (epochs != 1)} saved in `{folder}`; "
          f"continue with `cnndsl train --resume {folder}`", file=sys.stderr)
    return EXIT_INTERRUPTED


def _train_multiworker(run: RunSpec, analysis: Any, prepared: Any, data: Any, chosen: Any,
                       on: str, keras: Any) -> int:
    """MultiWorkerMirroredStrategy through distribute.Loop (Keras 3's fit cannot run it).
    Every worker runs every step and checkpoint; only the chief keeps what they write."""
    import shutil

    from cnndsl.backends.runtime import build_model
    from cnndsl.training import distribute

    config = run.config
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
        fitted = loop_epochs(run, loop, checkpoints, prepared)
        if fitted.interrupted:
            return _interrupted(run, fitted)
        scores = loop.evaluate(prepared.x_test, prepared.y_test)
        if not run.writes:
            print(f"worker done: test accuracy {scores['accuracy']:.2%}; the chief writes "
                  f"`{run.folder}`")
            return EXIT_OK
        metrics = finish(model, run, prepared, data, fitted.history, fitted.seconds, on,
                         chosen, lambda: scores)
        print(summary(metrics, run.folder))
        return EXIT_OK
    except distribute.WorkerLost as err:
        print(f"error: a worker was lost ({err}); run the same command again on every "
              "lost worker: training continues from the last finished epoch", file=sys.stderr)
        return EXIT_WORKER_LOST
    finally:
        if elsewhere is not None:
            shutil.rmtree(elsewhere, ignore_errors=True)
