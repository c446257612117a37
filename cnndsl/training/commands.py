"""`cnndsl train` and `cnndsl evaluate`: their options in, one-line errors and exit codes
out. The work is in session.py (a run), fit.py, run_folder.py and settings.py."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from cnndsl.common.files import WriteError
from cnndsl.common.safetext import shown
from cnndsl.training import datasets
from cnndsl.training.errors import EXIT_ERRORS, EXIT_OK, EXIT_USAGE, Fail
from cnndsl.training.fit import compile_args, evaluate_model, from_tf_checkpoint, setup
from cnndsl.training.progress import note
from cnndsl.training.run_folder import MODEL, RunSpec, load_keras, unlock_all
from cnndsl.training.runstate import RunFolderError, inside
from cnndsl.training.session import load_data, resumed, started, train_started
from cnndsl.training.settings import analyse_source, with_overrides


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
            run = resumed(resume, data, overrides, devices)
        elif file is None:
            raise Fail("give the .cnn FILE to train (or --resume DIR)", EXIT_USAGE)
        else:
            run = started(file, network, out, data, mixed_precision, overrides, devices)
        if run is None:
            return EXIT_OK
        return train_started(*run, verbose)
    except (Fail, WriteError, RunFolderError) as err:
        print(f"error: {shown(str(err))}", file=sys.stderr)
        return err.code if isinstance(err, Fail) else EXIT_ERRORS
    finally:
        unlock_all()


def evaluate_command(folder: Path, *, data: Path | None = None,
                     dataset: str | None = None) -> int:
    """`cnndsl evaluate DIR [--data PATH]`: the saved model's test loss and accuracy."""
    try:
        run = RunSpec.load(folder)
        if dataset is not None:
            run.config = with_overrides(run.config, {"dataset": dataset})
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
        prepared, loaded = load_data(run, analysis)
        keras = setup(run.config.seed)
        model = (load_keras(path, keras) if path.suffix == ".keras"
                 else from_tf_checkpoint(analysis, path))
        # The data given now may label classes differently (one-hot or not): compile anew.
        model.compile(**compile_args(analysis, run.config, prepared, keras))
        scores = evaluate_model(model, prepared, run.config.batch)
    except (Fail, RunFolderError) as err:
        print(f"error: {shown(str(err))}", file=sys.stderr)
        return err.code if isinstance(err, Fail) else EXIT_ERRORS
    acc = scores.get("accuracy")
    print(f"{shown(str(path))}: test loss {scores['loss']:.4f}"
          + (f", test accuracy {acc:.2%}" if acc is not None else "")
          + f" on {datasets.examples(prepared.x_test):,} images ({shown(loaded.name)})")
    return EXIT_OK
