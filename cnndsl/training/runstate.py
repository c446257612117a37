"""state.json read as untrusted input: a run folder may come from someone else.

Every field is checked for its type before training trusts it, and every file it names
must lie inside the run folder: an absolute path or one through `..` would let a copied
run folder make `--resume` or `evaluate` load any `.keras` file on the machine.
"""

from __future__ import annotations

import json
import math
from pathlib import Path, PurePosixPath
from typing import Any

STATE = "state.json"


class RunFolderError(Exception):
    """A damaged or untrustworthy run folder: one line naming the file and what is wrong."""


def inside(folder: Path, name: object, what: str) -> Path:
    """`folder / name` when `name` is a relative path that stays inside `folder`."""
    where = folder / STATE
    if not isinstance(name, str) or not name:
        raise RunFolderError(f"`{where}` is damaged: its {what} is not a file name")
    parts = PurePosixPath(name).parts
    if PurePosixPath(name).is_absolute() or ".." in parts or "\\" in name:
        raise RunFolderError(f"`{where}` names a {what} outside the run folder (`{name}`); "
                             "refused: a run folder may only use its own files")
    path = folder / name
    if not path.resolve().is_relative_to(folder.resolve()):  # through a symlink inside
        raise RunFolderError(f"`{where}` names a {what} outside the run folder (`{name}`, "
                             "a symlink); refused")
    return path


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(
        value)


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check(state: Any) -> str | None:
    """What is wrong with the state's types, or None."""
    if not isinstance(state, dict):
        return "it is not a JSON object"
    if not _count(state.get("epoch", 0)):
        return "`epoch` is not a whole number"
    history = state.get("history", [])
    if not isinstance(history, list) or not all(isinstance(r, dict) for r in history):
        return "`history` is not a list of rows"
    if any(not _number(v) for row in history for v in row.values()):
        return "`history` holds something other than numbers"
    if not isinstance(seconds := state.get("seconds", []), list) or not all(
            map(_number, seconds)):
        return "`seconds` is not a list of numbers"
    if len(history) < state.get("epoch", 0):
        return "`history` has fewer rows than `epoch`"
    early = state.get("early_stopping")
    if early is not None and not (
            isinstance(early, dict) and _count(early.get("wait")) and _count(
                early.get("best_epoch")) and (early.get("best") is None or _number(
                    early.get("best")))):
        return "`early_stopping` is not {wait, best_epoch, best}"
    return None


def read_state(folder: Path) -> dict[str, Any]:
    """The checked contents of `folder/state.json`; {} when there is none yet."""
    path = folder / STATE
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as err:
        raise RunFolderError(f"cannot read `{path}`: {err}") from err
    try:
        state = json.loads(text)
    except ValueError as err:
        raise RunFolderError(f"`{path}` is damaged (not JSON: {err})") from err
    wrong = _check(state)
    if wrong:
        raise RunFolderError(f"`{path}` is damaged: {wrong}")
    if state.get("epoch"):
        inside(folder, state.get("checkpoint"), "checkpoint")
    early = state.get("early_stopping") or {}
    if early.get("best_weights") is not None:
        inside(folder, early["best_weights"], "best-weights file")
    return state


def config_problem(config: Any) -> str | None:
    """What is wrong with the train settings read back from run.json, or None: the same
    names and ranges the `train` section accepts."""
    from cnndsl.analysis.train_section import (
        BACKENDS,
        LOSSES,
        METRICS,
        MONITORS,
        OPTIMIZER_ARGS,
        STRATEGIES,
    )

    es = config.early_stopping
    options = config.optimizer_options
    checks = {
        "dataset": isinstance(config.dataset, str),
        "optimizer": isinstance(config.optimizer, str) and config.optimizer in OPTIMIZER_ARGS,
        "optimizer_options": isinstance(options, dict) and all(
            isinstance(k, str) and (_number(v) or isinstance(v, str)) for k, v in
            options.items()),
        "loss": isinstance(config.loss, str) and config.loss in LOSSES,
        "metrics": all(isinstance(m, str) and m in METRICS for m in config.metrics),
        "epochs": _count(config.epochs) and config.epochs > 0,
        "batch": _count(config.batch) and config.batch > 0,
        "validation_split": _number(config.validation_split) and 0 <= config.validation_split < 1,
        "seed": isinstance(config.seed, int) and not isinstance(config.seed, bool),
        "strategy": isinstance(config.strategy, str) and config.strategy in STRATEGIES,
        "backend": config.backend in BACKENDS,
        "early_stopping": es is None or (
            isinstance(es.monitor, str) and es.monitor in MONITORS and _count(es.patience)
            and _number(es.min_delta) and isinstance(es.restore_best, bool)),
    }
    wrong = [name for name, ok in checks.items() if not ok]
    return f"its `{wrong[0]}` setting is not valid" if wrong else None
