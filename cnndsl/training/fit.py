"""Training itself: the model compiled from its settings, the callbacks that commit every
epoch to the run folder, Keras's fit loop (or distribute.Loop under multiworker), and
evaluation on the test data."""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnndsl.analysis.train_section import METRIC_CLASSES, OPTIMIZER_CLASSES, TrainConfig
from cnndsl.training.datasets import examples
from cnndsl.training.errors import EXIT_USAGE, TrainError
from cnndsl.training.keras_backend import Backend, steps_per_execution
from cnndsl.training.progress import Epochs, keras_callback
from cnndsl.training.run_folder import RunSpec, commit, commit_state
from cnndsl.training.runstate import inside


@dataclass
class Fitted:
    history: list[dict[str, Any]]  # a row an epoch, those of earlier sessions first
    seconds: list[float]


# ----------------------------------------------------------------------------- compiling


def compile_args(analysis: Any, config: TrainConfig, prepared: Any, keras: Any
                 ) -> dict[str, Any]:
    """`compile`'s loss and metrics; with several outputs, a loss, a weight and metrics
    for each."""
    outputs = analysis.graph.outputs
    if len(outputs) == 1:
        return {"loss": prepared.loss, "metrics": _metrics(config, keras)}
    return {"loss": prepared.loss,
            "loss_weights": [config.loss_weights.get(p.name, 1.0) for p in outputs],
            "metrics": [_metrics(config, keras) for _ in outputs]}


def compiled(analysis: Any, config: TrainConfig, prepared: Any, mixed: bool,
             on: Backend, batch: int, strategy: str) -> Any:
    """Built and compiled on backend `on`, under distribution strategy `strategy`."""
    from cnndsl.backends.runtime import build_model

    keras = on.keras
    model = build_model(analysis, "float32" if mixed else None)
    optimizer = make_optimizer(config, keras)
    steps = -(-round(examples(prepared.x_train) * (1 - config.validation_split)) // batch)
    model.compile(optimizer=optimizer, **compile_args(analysis, config, prepared, keras),
                  steps_per_execution=steps_per_execution(on, steps, strategy))
    return model


def make_optimizer(config: TrainConfig, keras: Any) -> Any:
    options = dict(config.optimizer_options)
    try:
        return getattr(keras.optimizers, OPTIMIZER_CLASSES[config.optimizer])(**options)
    except (TypeError, ValueError) as err:
        raise TrainError(f"optimizer `{config.optimizer}` refuses these options "
                         f"({', '.join(options)}): {err}", EXIT_USAGE) from err


def _metrics(config: TrainConfig, keras: Any) -> list[Any]:
    return [getattr(keras.metrics, METRIC_CLASSES[m])() if m in METRIC_CLASSES else m
            for m in config.metrics]


# ----------------------------------------------------------------------------- fitting


def _callbacks(run: RunSpec, keras: Any, history: list[dict[str, Any]],
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
                raise TrainError(f"training diverged: {bad[0]} became {row[bad[0]]} in epoch "
                                 f"{epoch + 1}; nothing of that epoch was saved; try a lower --lr "
                                 "(or check the data)")
            history.append(row)
            commit(self.model, folder, history, seconds, early)

    # TerminateOnNaN ends a diverged epoch early; Checkpoint then refuses to commit it.
    return [c for c in (keras.callbacks.TerminateOnNaN(), early, Checkpoint()) if c is not None]


def restore_best(model: Any, run: RunSpec) -> None:
    """The best weights, as early stopping with restore_best gives them at the end of fit."""
    es_config, saved = run.config.early_stopping, run.state.get("early_stopping") or {}
    if es_config is not None and es_config.restore_best and saved.get("best_weights"):
        path = inside(run.folder, saved["best_weights"], "best-weights file")
        if not path.is_file():
            raise TrainError(f"`{path}` is missing; the run folder is incomplete")
        model.load_weights(path)


def _weights_from(model: Any, path: Path) -> list[Any]:
    current = model.get_weights()
    model.load_weights(path)
    best = model.get_weights()
    model.set_weights(current)
    return best


def fit(model: Any, run: RunSpec, prepared: Any, epochs: Epochs, keras: Any,
        batch: int) -> Fitted:
    """The epochs still to run, each committed by the Checkpoint callback, then shown."""
    config = run.config
    history = list(run.state.get("history", []))
    seconds = list(run.state.get("seconds", []))
    callbacks = [*_callbacks(run, keras, history, seconds), keras_callback(keras, epochs)]
    try:
        model.fit(prepared.x_train, prepared.y_train, batch_size=batch,
                  epochs=config.epochs, initial_epoch=len(history),
                  validation_split=config.validation_split, shuffle=True, verbose=0,
                  callbacks=callbacks)
    finally:
        epochs.close()
    return Fitted(history, seconds)


def loop_epochs(run: RunSpec, loop: Any, checkpoints: Any, prepared: Any,
                epochs: Epochs, stopper: Any) -> Fitted:
    """Under multiworker: the epochs still to run, each committed (checkpoint, then
    state.json) by the chief, until the last or until `stopper` (distribute.EarlyStop)
    ends the run."""
    config = run.config
    history = list(run.state.get("history", []))[:run.state.get("epoch", 0)]
    seconds = list(run.state.get("seconds", []))[:len(history)]
    if stopper.stopped:  # early stopping ended the run before its final files
        return Fitted(history, seconds)
    n_val = int(len(prepared.x_train) * config.validation_split)  # the last rows, as Keras
    n_fit = len(prepared.x_train) - n_val
    try:
        for epoch in range(len(history), config.epochs):
            epochs.begin(epoch, None)
            started = time.perf_counter()
            row = loop.train_epoch(prepared.x_train[:n_fit], prepared.y_train[:n_fit],
                                   config.seed + epoch)
            if n_val:
                scores = loop.evaluate(prepared.x_train[n_fit:], prepared.y_train[n_fit:])
                row |= {f"val_{k}": v for k, v in scores.items()}
            seconds.append(time.perf_counter() - started)
            history.append({"epoch": epoch + 1, **row, "seconds": round(seconds[-1], 3)})
            path = Path(checkpoints.save(epoch + 1))
            # Its decision is committed with the epoch that made it, as single-worker.
            stop = stopper.update(epoch, row, loop.model)
            if run.writes:
                stopper.commit(run.folder, epoch, loop.model, functools.partial(
                    commit_state, run.folder, history, seconds, f"checkpoints/{path.name}",
                    stopped_early=stop))
            epochs.end(row, seconds[-1])
            if stop:
                stopper.say(stopper.reason)
                break
    finally:
        epochs.close()
    return Fitted(history, seconds)


# ----------------------------------------------------------------------------- evaluating


def evaluate_model(model: Any, prepared: Any, batch: int) -> dict[str, float]:
    scores = model.evaluate(prepared.x_test, prepared.y_test, batch_size=max(batch, 256),
                            verbose=0, return_dict=True)
    renamed = {k.removeprefix("compile_"): float(v) for k, v in scores.items()}
    if "accuracy" not in renamed:  # Keras names accuracy after the metric object's class
        for key in ("sparse_categorical_accuracy", "categorical_accuracy", "binary_accuracy"):
            if key in renamed:
                renamed["accuracy"] = renamed[key]
    return renamed
