"""The `train { }` section as a typed TrainConfig, with diagnostics; command-line overrides.

Pure Python: `check` validates the section through here and must never import TensorFlow.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cnndsl.analysis.graph import TrainEntry
from cnndsl.analysis.values import Word
from cnndsl.common.diagnostics import ERROR, WARNING, Diagnostic, Span, did_you_mean

DATASETS = ("mnist", "fashion_mnist", "cifar10")
# Each optimizer's own keyword arguments in Keras 3, besides the ones all take (COMMON).
_COMMON = ("learning_rate", "weight_decay", "clipnorm", "clipvalue")
_ADAM = ("beta_1", "beta_2", "epsilon")
OPTIMIZER_ARGS: dict[str, tuple[str, ...]] = {
    "adam": (*_ADAM, "amsgrad"), "adamw": (*_ADAM, "amsgrad"), "sgd": ("momentum", "nesterov"),
    "rmsprop": ("rho", "momentum", "epsilon"), "adagrad": ("epsilon",),
    "adadelta": ("rho", "epsilon"), "adamax": _ADAM, "nadam": _ADAM,
    "lion": ("beta_1", "beta_2"), "ftrl": (),
}
OPTIMIZERS = tuple(OPTIMIZER_ARGS)
# The Keras classes: `build` writes them and `train` makes them (neither may drift).
OPTIMIZER_CLASSES = {"adam": "Adam", "adamw": "AdamW", "sgd": "SGD", "rmsprop": "RMSprop",
                     "adagrad": "Adagrad", "adadelta": "Adadelta", "adamax": "Adamax",
                     "nadam": "Nadam", "lion": "Lion", "ftrl": "Ftrl"}
# `lr` is short for `learning_rate`.
OPTIMIZER_OPTIONS = ("lr", *_COMMON, *dict.fromkeys(a for v in OPTIMIZER_ARGS.values() for a in v))
LOSSES = ("categorical_crossentropy", "sparse_categorical_crossentropy", "binary_crossentropy",
          "mean_squared_error", "mse", "mean_absolute_error", "mae", "hinge", "kl_divergence",
          "poisson", "huber")
METRICS = ("accuracy", "top_k_categorical_accuracy", "sparse_top_k_categorical_accuracy",
           "categorical_accuracy", "sparse_categorical_accuracy", "binary_accuracy",
           "mse", "mae", "auc", "precision", "recall")
METRIC_CLASSES = {"auc": "AUC", "precision": "Precision", "recall": "Recall"}  # the rest: strings
EARLY_STOPPING_OPTIONS = ("monitor", "patience", "min_delta", "restore_best")
MONITORS = ("val_loss", "val_accuracy", "loss", "accuracy")
# tf.distribute strategies (cnndsl/training/distribute.py); `auto` mirrors over several GPUs.
STRATEGIES = ("auto", "one", "mirrored", "multiworker")
# The Keras 3 backends `train` runs on (cnndsl/training/keras_backend.py).
BACKENDS = ("tensorflow", "jax", "torch")


@dataclass(frozen=True)
class EarlyStopping:
    monitor: str = "val_loss"
    patience: int = 2
    min_delta: float = 0.0
    restore_best: bool = False


@dataclass(frozen=True)
class TrainConfig:
    """Every training setting, with the defaults used when the section leaves one out."""

    dataset: str = "mnist"
    optimizer: str = "adam"
    optimizer_options: Mapping[str, Any] = field(default_factory=dict)
    loss: str = "categorical_crossentropy"
    metrics: tuple[str, ...] = ("accuracy",)
    epochs: int = 10
    batch: int = 64
    validation_split: float = 0.0
    early_stopping: EarlyStopping | None = None
    seed: int = 42
    strategy: str = "auto"
    backend: str | None = None  # None: KERAS_BACKEND, else tensorflow; a run records its own
    # Networks with several outputs: a loss and a weight per output name (else `loss`, 1).
    output_losses: Mapping[str, str] = field(default_factory=dict)
    loss_weights: Mapping[str, float] = field(default_factory=dict)

    @property
    def learning_rate(self) -> float | None:
        opts = self.optimizer_options
        return opts.get("learning_rate", opts.get("lr"))

    def to_json(self) -> dict:
        return dataclasses.asdict(self) | {"optimizer_options": dict(self.optimizer_options),
                                           "output_losses": dict(self.output_losses),
                                           "loss_weights": dict(self.loss_weights)}

    @staticmethod
    def from_json(data: Mapping[str, Any]) -> TrainConfig:
        data = dict(data)
        es = data.get("early_stopping")
        data["early_stopping"] = EarlyStopping(**es) if es else None
        data["metrics"] = tuple(data.get("metrics", ()))
        data.setdefault("backend", "tensorflow")  # the only backend of runs made before it
        return TrainConfig(**data)


class ConfigError(ValueError):
    """A bad setting: the message says what, the hint what to do (or None)."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message, self.hint = message, hint


# ----------------------------------------------------------------------------- value checks


def _show(v: Any) -> str:
    if isinstance(v, Word):
        return f"`{v.name}`"
    if isinstance(v, str):
        return f'"{v}"'
    return f"`{v}`"


def _name(v: Any, what: str, choices: Iterable[str]) -> str:
    """A word (or string) among `choices`."""
    text = v.name if isinstance(v, Word) else v if isinstance(v, str) else None
    if text is None:
        raise ConfigError(f"{what} is a name, not {_show(v)}",
                          f"one of: {', '.join(choices)}")
    if text not in choices:
        raise ConfigError(f"unknown {what} `{text}`",
                          did_you_mean(text, choices) or f"one of: {', '.join(choices)}")
    return text


def _count(v: Any, what: str, minimum: int = 1) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ConfigError(f"{what} is a whole number, not {_show(v)}")
    if v < minimum:
        raise ConfigError(f"{what} must be at least {minimum}, not {v}")
    return v


def _float(v: Any, what: str, low: float, high: float, high_open: bool = True) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise ConfigError(f"{what} is a number, not {_show(v)}")
    if v < low or v > high or (high_open and v == high):
        bound = f"below {high}" if high_open else f"at most {high}"
        limits = f"at least {low}" if high == math.inf else f"at least {low} and {bound}"
        raise ConfigError(f"{what} must be {limits}, not {v}")
    return float(v)


def _positive(v: Any, what: str) -> float:
    """A learning rate: a number above 0."""
    value = _float(v, what, 0.0, math.inf)
    if value == 0:
        raise ConfigError(f"{what} must be above 0")
    return value


def _bool(v: Any, what: str) -> bool:
    if isinstance(v, bool):
        return v
    text = v.name if isinstance(v, Word) else v if isinstance(v, str) else None
    if text in ("true", "yes", "on"):
        return True
    if text in ("false", "no", "off"):
        return False
    raise ConfigError(f"{what} is `true` or `false`, not {_show(v)}")


def _option_value(key: str, v: Any) -> Any:
    """Optimizer options: numbers, except the two flags."""
    if key in ("nesterov", "amsgrad"):
        return _bool(v, f"`{key}`")
    if key in ("lr", "learning_rate"):
        return _positive(v, f"`{key}`")
    return _float(v, f"`{key}`", 0.0, math.inf, high_open=True)


# ----------------------------------------------------------------------------- entries


def _one(entry: TrainEntry) -> Any:
    if entry.options:
        extra = next(iter(entry.options))
        raise ConfigError(f"`{entry.key}` takes no option `{extra}=`")
    if len(entry.values) != 1:
        raise ConfigError(f"`{entry.key}` takes one value, not {len(entry.values)}",
                          f"write `{entry.key} VALUE`")
    return entry.values[0]


def _optimizer(entry: TrainEntry) -> dict[str, Any]:
    if len(entry.values) != 1:
        raise ConfigError(f"`optimizer` takes one name, not {len(entry.values)}",
                          "write `optimizer adam lr=0.001`")
    options = {}
    for key, v in entry.options.items():
        if key not in OPTIMIZER_OPTIONS:
            raise ConfigError(f"unknown optimizer option `{key}`",
                              did_you_mean(key, OPTIMIZER_OPTIONS)
                              or f"options: {', '.join(OPTIMIZER_OPTIONS)}")
        options["learning_rate" if key == "lr" else key] = _option_value(key, v)
    name = _name(entry.values[0], "optimizer", OPTIMIZERS)
    takes = (*_COMMON, *OPTIMIZER_ARGS[name])
    for key in options:
        if key not in takes:
            users = [o for o, args in OPTIMIZER_ARGS.items() if key in args]
            raise ConfigError(f"optimizer `{name}` takes no option `{key}`",
                              f"`{key}` belongs to {', '.join(f'`{u}`' for u in users)}")
    return {"optimizer": name, "optimizer_options": options}


def _metrics(entry: TrainEntry) -> dict[str, Any]:
    if entry.options or not entry.values:
        raise ConfigError("`metrics` takes one or more names", "write `metrics accuracy`")
    return {"metrics": tuple(_name(v, "metric", METRICS) for v in entry.values)}


def _early_stopping(entry: TrainEntry) -> dict[str, Any]:
    """`early_stopping monitor=val_loss patience=2 ...`, or `early_stopping off`."""
    if entry.values:
        if len(entry.values) == 1 and not entry.options and not _bool(
                entry.values[0], "`early_stopping`"):
            return {"early_stopping": None}
        if len(entry.values) > 1 or entry.options:
            raise ConfigError("`early_stopping` takes options only",
                              "write `early_stopping monitor=val_loss patience=2`")
    kwargs: dict[str, Any] = {}
    for key, v in entry.options.items():
        if key not in EARLY_STOPPING_OPTIONS:
            raise ConfigError(f"unknown early_stopping option `{key}`",
                              did_you_mean(key, EARLY_STOPPING_OPTIONS)
                              or f"options: {', '.join(EARLY_STOPPING_OPTIONS)}")
        kwargs[key] = _EARLY_STOPPING_VALUES[key](v)
    return {"early_stopping": EarlyStopping(**kwargs)}


def _loss(entry: TrainEntry) -> dict[str, Any]:
    """`loss NAME`, per output `loss main=categorical_crossentropy aux1=mse`, or both (the
    name for the outputs not listed)."""
    if len(entry.values) > 1 or not (entry.values or entry.options):
        raise ConfigError("`loss` takes one name, and for several outputs `OUTPUT=loss`",
                          "write `loss categorical_crossentropy` or `loss main=mse aux=mse`")
    out: dict[str, Any] = {"output_losses": {
        key: _name(v, f"loss of `{key}`", LOSSES) for key, v in entry.options.items()}}
    if entry.values:
        out["loss"] = _name(entry.values[0], "loss", LOSSES)
    return out


def _loss_weights(entry: TrainEntry) -> dict[str, Any]:
    """`loss_weights main=1 aux1=0.3`: how much each output's loss counts."""
    if entry.values or not entry.options:
        raise ConfigError("`loss_weights` takes `OUTPUT=weight` options",
                          "write `loss_weights main=1 aux=0.3`")
    return {"loss_weights": {key: _float(v, f"the weight of `{key}`", 0.0, math.inf)
                             for key, v in entry.options.items()}}


def check_outputs(entries: Iterable[TrainEntry], outputs: list[str]) -> list[Diagnostic]:
    """Errors for per-output losses and weights that name no output of the network."""
    diagnostics = []
    for entry in entries:
        for key in entry.options if entry.key in ("loss", "loss_weights") else ():
            if key not in outputs:
                listed = ", ".join(f"`{o}`" for o in outputs)
                diagnostics.append(Diagnostic(
                    ERROR, f"`{entry.key}` names `{key}`, which is not an output", entry.span,
                    did_you_mean(key, outputs) or f"the network's outputs: {listed}"))
    return diagnostics


_EARLY_STOPPING_VALUES: dict[str, Callable[[Any], Any]] = {
    "monitor": lambda v: _name(v, "monitor", MONITORS),
    "patience": lambda v: _count(v, "`patience`", 0),
    "min_delta": lambda v: _float(v, "`min_delta`", 0.0, math.inf),
    "restore_best": lambda v: _bool(v, "`restore_best`"),
}

_ENTRIES: dict[str, Callable[[TrainEntry], dict[str, Any]]] = {
    "dataset": lambda e: {"dataset": _name(_one(e), "dataset", DATASETS)},
    "optimizer": _optimizer,
    "loss": _loss,
    "loss_weights": _loss_weights,
    "metrics": _metrics,
    "epochs": lambda e: {"epochs": _count(_one(e), "`epochs`")},
    "batch": lambda e: {"batch": _count(_one(e), "`batch`")},
    "validation_split": lambda e: {"validation_split": _float(
        _one(e), "`validation_split`", 0.0, 1.0)},
    "early_stopping": _early_stopping,
    "seed": lambda e: {"seed": _count(_one(e), "`seed`", 0)},
    "strategy": lambda e: {"strategy": _name(_one(e), "strategy", STRATEGIES)},
    "backend": lambda e: {"backend": _name(_one(e), "backend", BACKENDS)},
}
KEYS = tuple(_ENTRIES)


def validate_train(entries: Iterable[TrainEntry]) -> tuple[TrainConfig, list[Diagnostic]]:
    """The settings of a train section, and a diagnostic for each bad entry (skipped)."""
    settings: dict[str, Any] = {}
    diagnostics: list[Diagnostic] = []
    seen: dict[str, Span] = {}
    for entry in entries:
        parse = _ENTRIES.get(entry.key)
        if parse is None:
            hint = did_you_mean(entry.key, KEYS) or f"the keys are: {', '.join(KEYS)}"
            diagnostics.append(Diagnostic(ERROR, f"unknown train setting `{entry.key}`",
                                          entry.span, hint))
            continue
        if entry.key in seen:
            diagnostics.append(Diagnostic(WARNING, f"`{entry.key}` is set twice; the last wins",
                                          entry.span, "remove one of them"))
        seen[entry.key] = entry.span
        try:
            settings.update(parse(entry))
        except ConfigError as err:
            diagnostics.append(Diagnostic(ERROR, err.message, entry.span, err.hint))
    config = TrainConfig(**settings)
    es = config.early_stopping
    if es is not None and es.monitor.startswith("val_") and config.validation_split == 0:
        span = seen.get("early_stopping")
        diagnostics.append(Diagnostic(
            WARNING, f"early stopping watches `{es.monitor}` but there is no validation split",
            span, "add `validation_split 0.1`, or monitor `loss`"))
    return config, diagnostics


# ----------------------------------------------------------------------------- overrides


def _parse_number(text: str) -> int | float | str:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def apply_overrides(config: TrainConfig, overrides: Mapping[str, Any]) -> TrainConfig:
    """The command line's settings on top of the file's: `{"epochs": 3, "lr": 1e-3, ...}`.

    Values go through the same checks as the file's; None means "not given".
    Raises ConfigError.
    """
    changes: dict[str, Any] = {}
    options = dict(config.optimizer_options)
    for key, value in overrides.items():
        if value is None:
            continue
        if key in ("lr", "learning_rate"):
            options["learning_rate"] = _positive(value, "`--lr`")
        elif key == "early_stopping":
            es = changes.get("early_stopping", config.early_stopping)
            changes["early_stopping"] = _early_stopping_override(es, str(value))
        elif key == "patience":
            es = changes.get("early_stopping", config.early_stopping) or EarlyStopping()
            changes["early_stopping"] = dataclasses.replace(
                es, patience=_count(value, "`--patience`", 0))
        elif key == "metrics":
            names = value if isinstance(value, list | tuple) else str(value).split(",")
            changes["metrics"] = tuple(_name(n.strip(), "metric", METRICS) for n in names)
        elif key in _ENTRIES:
            if isinstance(value, str):
                value = (value if key in ("dataset", "strategy", "backend")
                         else _parse_number(value))
            values = (Word(value) if isinstance(value, str) else value,)
            update = _ENTRIES[key](TrainEntry(key, values, {}, Span.point(1, 1)))
            if key == "optimizer":  # a new optimizer keeps the options it also takes (lr)
                update.pop("optimizer_options")
                takes = (*_COMMON, *OPTIMIZER_ARGS[update["optimizer"]])
                options = {k: v for k, v in options.items() if k in takes}
            changes.update(update)
        else:
            raise ConfigError(f"unknown train setting `{key}`", did_you_mean(key, KEYS))
    return dataclasses.replace(config, optimizer_options=options, **changes)


def _early_stopping_override(current: EarlyStopping | None, text: str) -> EarlyStopping | None:
    """`off`, `on`, or options `patience=5,monitor=val_accuracy` merged into the file's."""
    if "=" not in text:
        entry = TrainEntry("early_stopping", (Word(text.strip().lower()),), {}, Span.point(1, 1))
        return _early_stopping(entry)["early_stopping"]
    options: dict[str, Any] = {}
    for item in text.replace(",", " ").split():
        key, _, value = item.partition("=")
        parsed = _parse_number(value)
        options[key.strip()] = Word(parsed) if isinstance(parsed, str) else parsed
    given = _early_stopping(TrainEntry("early_stopping", (), options, Span.point(1, 1)))
    chosen = {k: getattr(given["early_stopping"], k) for k in options}
    return dataclasses.replace(current or EarlyStopping(), **chosen)
