"""What to train: the source analysed, and its `train` settings with the command line's
overrides. Where (backend, device, strategy) is backend.py's."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cnndsl.analysis.train_section import ConfigError, TrainConfig, apply_overrides, validate_train
from cnndsl.common.diagnostics import ERROR, Diagnostic, has_errors, sort_key
from cnndsl.training.errors import EXIT_USAGE, TrainError
from cnndsl.training.progress import render


def read(file: Path) -> str:
    from cnndsl.common.limits import SourceError, read_source

    try:
        return read_source(file)
    except SourceError as err:
        raise TrainError(str(err), EXIT_USAGE) from err


def analyse_source(source: str, name: str, network: str | None, show: bool = True,
                   blocks: bool = True) -> Any:
    """The analysis of a file and its train settings. Its warnings are rendered when
    `show` (a resumed run has shown them already). Errors end in TrainError: after their
    rendered blocks when `blocks` (the command), else as the first error in one line."""
    from cnndsl.analysis.pipeline import NetworkChoiceError, analyse

    try:
        result = analyse(source, network)
    except NetworkChoiceError as err:
        raise TrainError(str(err), EXIT_USAGE) from err
    config, train_diagnostics = (validate_train(result.analysis.graph.train)
                                 if result.analysis else (TrainConfig(), []))
    # Once `analyse` validates the train section itself these repeat: keep each once.
    diagnostics = sorted(dict.fromkeys(result.diagnostics + train_diagnostics), key=sort_key)
    failed = has_errors(diagnostics) or result.analysis is None
    if (show or failed) and (blocks or not failed):
        render(diagnostics, name, source)
    if failed and blocks:
        raise TrainError(f"`{name}` has errors; see `cnndsl check {name}`")
    if failed:
        raise TrainError(_first_error(diagnostics, name))
    _check_memory(result.analysis, name)
    return result.analysis, config


def _first_error(diagnostics: list[Diagnostic], name: str) -> str:
    """`net.cnn:3:5: unknown layer `convv` (did you mean `conv`?) (and 2 more errors)`."""
    errors = [d for d in diagnostics if d.severity == ERROR]
    if not errors:  # analysis gave up without saying why
        return f"`{name}` cannot be analysed"
    first = errors[0]
    where = f"{name}:{first.span.line}:{first.span.column}" if first.span else name
    hint = f" ({first.hint})" if first.hint else ""
    more = f" (and {len(errors) - 1} more error{'s' * (len(errors) > 2)})" \
        if len(errors) > 1 else ""
    return f"{where}: {first.message}{hint}{more}"


def _check_memory(analysis: Any, name: str) -> None:
    """Refuse, before Keras allocates anything, a network this machine cannot hold."""
    from cnndsl.common.limits import available_memory, training_bytes

    params = analysis.totals.params
    need, have = training_bytes(params), available_memory()
    if have is not None and need > have:
        raise TrainError(f"`{name}` has {params:,} parameters: training needs at least "
                         f"{need / 1024**3:,.1f} GB (weights, gradients, optimizer state) but "
                         f"this machine has {have / 1024**3:,.1f} GB available; make the "
                         "network smaller")


def with_overrides(config: TrainConfig, overrides: Mapping[str, Any]) -> TrainConfig:
    try:
        return apply_overrides(config, overrides)
    except ConfigError as err:
        hint = f" ({err.hint})" if err.hint else ""
        raise TrainError(f"{err.message}{hint}", EXIT_USAGE) from err


def devices(text: str | None) -> tuple[str, ...]:
    return tuple(d.strip() for d in text.split(",") if d.strip()) if text else ()


def writes(config: TrainConfig) -> bool:
    """Whether this process writes the run folder: not a multiworker worker but the chief."""
    from cnndsl.training.distribute import StrategyError, is_chief, tf_config

    try:
        return config.strategy != "multiworker" or is_chief(tf_config())
    except StrategyError as err:
        raise TrainError(str(err), EXIT_USAGE) from err


def check_multiworker(mixed_precision: bool) -> None:
    """What the multiworker loop does not do yet, refused before any worker waits."""
    if mixed_precision:
        raise TrainError("--mixed-precision is not available under `--strategy multiworker` yet",
                         EXIT_USAGE)
