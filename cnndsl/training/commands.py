"""`cnndsl train` and `cnndsl evaluate`: their options in, one-line errors and exit codes
out. A run itself is session.py's work; `--resume` and multiworker clusters, which only
a command does, are driven from here."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from cnndsl.common.files import WriteError
from cnndsl.common.safetext import shown
from cnndsl.training import datasets, keras_backend
from cnndsl.training.errors import (
    EXIT_ERRORS,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    TrainError,
    TrainInterrupted,
)
from cnndsl.training.fit import compile_args, evaluate_model
from cnndsl.training.keras_backend import model_from_checkpoint
from cnndsl.training.progress import Reporter, error, note
from cnndsl.training.run_folder import MODEL, RUN, RunSpec, load_keras, unlock_all
from cnndsl.training.runstate import RunFolderError, inside
from cnndsl.training.session import Started, begin, execute, load_data, resumed, settings
from cnndsl.training.settings import analyse_source, read, with_overrides


def train_command(file: Path | None = None, *, network: str | None = None,
                  out: Path | None = None, resume: Path | None = None,
                  data: Path | None = None, mixed_precision: bool = False,
                  devices: str | None = None, verbose: int | None = None,
                  **overrides: Any) -> int:
    """`cnndsl train FILE [options]` or `cnndsl train --resume DIR [options]`: an exit code.

    `overrides` are the train settings given on the command line (None: not given):
    dataset, optimizer, lr, loss, metrics, epochs, batch, validation_split,
    early_stopping ("off", "on" or "patience=3,monitor=val_loss"), patience, seed, strategy.
    `devices` is `--devices /cpu:0,/cpu:1` for the mirrored strategy. `verbose` as Keras's
    (progress.py): 0, 1, 2, or None for 1.
    Under `multiworker` every worker runs the same command; only the chief writes the run
    folder, and a worker that rejoins continues from the last epoch in it.
    """
    report = Reporter(verbose)
    try:
        if resume is not None:
            if file is not None:
                raise TrainError("give either a FILE or --resume DIR, not both", EXIT_USAGE)
            started = resumed(resume, data, overrides, devices, report)
        elif file is None:
            raise TrainError("give the .cnn FILE to train (or --resume DIR)", EXIT_USAGE)
        else:
            started = _started(file, network, out, data, mixed_precision, overrides, devices,
                               report)
        if started is not None:
            execute(*started, report)
        return EXIT_OK
    except TrainInterrupted as stop:
        print(f"\n{stop}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (TrainError, WriteError, RunFolderError) as err:
        error(str(err))
        return err.code if isinstance(err, TrainError) else EXIT_ERRORS
    finally:
        unlock_all()


def _started(file: Path, network: str | None, out: Path | None, data: Path | None,
             mixed_precision: bool, overrides: dict[str, Any], devices: str | None,
             report: Reporter) -> Started | None:
    source = read(file)
    analysis, config = settings(source, str(file), network, overrides)
    if config.strategy == "multiworker" and (joined := _joins_run(source, out)):
        return resumed(joined, data, overrides, devices, report)
    return begin(source, str(file), analysis, config, network=network, out=out, data=data,
                 inputs=[file], mixed_precision=mixed_precision, devices_text=devices)


def _joins_run(source: str, out: Path | None) -> Path | None:
    """Under multiworker every worker runs the same command, so a run of the same file
    already in `--out` (shared by all workers) is continued, not refused: its folder."""
    if out is None:
        raise TrainError("`--strategy multiworker` needs `--out DIR`, the same folder (on a "
                         "shared filesystem) for every worker", EXIT_USAGE)
    if not (out / RUN).exists():
        return None
    if RunSpec.load(out).source != source:
        raise TrainError(f"`{out}` holds a run of another file; choose another --out",
                         EXIT_USAGE)
    return out


def evaluate_command(folder: Path, *, data: Path | None = None,
                     dataset: str | None = None, backend_name: str | None = None) -> int:
    """`cnndsl evaluate DIR [--data PATH]`: the saved model's test loss and accuracy, on
    the backend that trained it (run.json); `backend_name` (--backend) must be that one."""
    try:
        run = RunSpec.load(folder)
        made_on = run.config.backend
        if backend_name is not None and with_overrides(
                run.config, {"backend": backend_name}).backend != made_on:
            raise TrainError(f"`{folder}` was trained on {made_on}; evaluate it on {made_on} "
                             "(leave out --backend)", EXIT_USAGE)
        on = keras_backend.load(made_on)  # before the data: keras.datasets imports Keras
        if dataset is not None:
            run.config = with_overrides(run.config, {"dataset": dataset})
            run.data = None
        if data is not None:
            run.data = str(data)
        path = folder / MODEL
        if not path.exists():
            checkpoint = run.state.get("checkpoint")
            if not checkpoint:
                raise TrainError(f"`{folder}` has no saved model yet (no epoch has finished)")
            note(f"the run is unfinished: evaluating its last checkpoint ({checkpoint})")
            path = inside(folder, checkpoint, "checkpoint")
        analysis, _ = analyse_source(run.source, run.file, run.network, show=False)
        prepared, loaded = load_data(run, analysis)
        keras_backend.seed(on, run.config.seed)
        keras = on.keras
        model = (load_keras(path, keras) if path.suffix == ".keras"
                 else model_from_checkpoint(analysis, path))
        # The data given now may label classes differently (one-hot or not): compile anew.
        model.compile(**compile_args(analysis, run.config, prepared, keras))
        scores = evaluate_model(model, prepared, run.config.batch)
    except (TrainError, RunFolderError) as err:
        error(str(err))
        return err.code if isinstance(err, TrainError) else EXIT_ERRORS
    acc = scores.get("accuracy")
    print(f"{shown(str(path))}: test loss {scores['loss']:.4f}"
          + (f", test accuracy {acc:.2%}" if acc is not None else "")
          + f" on {datasets.examples(prepared.x_test):,} images ({shown(loaded.name)})")
    return EXIT_OK
