"""The `train { }` section: typed settings, diagnostics with spans and suggestions, and the
command line's overrides. Pure Python: none of this may import TensorFlow."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import EXAMPLES, ROOT, example_networks

from cnndsl.analysis.pipeline import analyse
from cnndsl.analysis.train_section import (
    ConfigError,
    EarlyStopping,
    TrainConfig,
    apply_overrides,
    validate_train,
)
from cnndsl.common.diagnostics import ERROR, WARNING, Renderer

NET = "network t {\n  input 8x8x1\n  flatten\n  dense 3 softmax\n}\n"


def settings(body: str):
    """The config and diagnostics of a train section (its entries start on line 7)."""
    result = analyse(f"{NET}train {{\n{body}\n}}\n")
    assert result.analysis is not None and result.analysis.output_shape == (3,)
    return validate_train(result.analysis.graph.train)


def only(body: str):
    _, diagnostics = settings(body)
    assert len(diagnostics) == 1, diagnostics
    return diagnostics[0]


def test_the_mnist_example_reads_as_the_seed_trains_it():
    result = analyse((EXAMPLES / "mnist.cnn").read_text())
    config, diagnostics = validate_train(result.analysis.graph.train)
    assert diagnostics == []
    assert config == TrainConfig(
        dataset="mnist", optimizer="adam", loss="categorical_crossentropy",
        metrics=("accuracy",), epochs=20, batch=64, validation_split=0.05,
        early_stopping=EarlyStopping(monitor="val_loss", patience=2), seed=42)


def test_every_example_train_section_is_valid():
    for path, network in example_networks():
        result = analyse(path.read_text(), network)
        assert validate_train(result.analysis.graph.train)[1] == [], path


def test_every_key_with_options():
    config, diagnostics = settings(
        "dataset fashion_mnist\noptimizer sgd lr=0.01 momentum=0.9 nesterov=true\n"
        "loss sparse_categorical_crossentropy\nmetrics accuracy top_k_categorical_accuracy\n"
        "epochs 3\nbatch 128\nvalidation_split 0.1\n"
        "early_stopping monitor=val_accuracy patience=4 min_delta=0.001 restore_best=true\n"
        "seed 7")
    assert diagnostics == []
    assert config.optimizer_options == {"learning_rate": 0.01, "momentum": 0.9,
                                        "nesterov": True}
    assert config.learning_rate == 0.01
    assert config.metrics == ("accuracy", "top_k_categorical_accuracy")
    assert config.early_stopping == EarlyStopping("val_accuracy", 4, 0.001, True)
    assert (config.dataset, config.epochs, config.batch, config.seed) == (
        "fashion_mnist", 3, 128, 7)


def test_defaults_without_a_section():
    assert validate_train([]) == (TrainConfig(), [])


def test_early_stopping_off_and_bare():
    assert settings("early_stopping off")[0].early_stopping is None
    config, _ = settings("validation_split 0.1\nearly_stopping")
    assert config.early_stopping == EarlyStopping()


@pytest.mark.parametrize(("body", "message", "hint"), [
    ("epoch 3", "unknown train setting `epoch`", "did you mean `epochs`?"),
    ("dataset mnsit", "unknown dataset `mnsit`", "did you mean `mnist`?"),
    ("optimizer rmsprob", "unknown optimizer `rmsprob`", "did you mean `rmsprop`?"),
    ("optimizer adam lrr=0.1", "unknown optimizer option `lrr`", "did you mean `lr`?"),
    ("loss categorical_crossentropi", "unknown loss `categorical_crossentropi`",
     "did you mean `categorical_crossentropy`?"),
    ("metrics acuracy", "unknown metric `acuracy`", "did you mean `accuracy`?"),
    ("validation_split 0.1\nearly_stopping patiense=2",
     "unknown early_stopping option `patiense`", "did you mean `patience`?"),
])
def test_unknown_names_are_errors_with_suggestions(body, message, hint):
    d = only(body)
    assert (d.severity, d.message, d.hint) == (ERROR, message, hint)


@pytest.mark.parametrize(("body", "message"), [
    ("epochs 2.5", "`epochs` is a whole number, not `2.5`"),
    ("epochs 0", "`epochs` must be at least 1, not 0"),
    ("batch relu", "`batch` is a whole number, not `relu`"),
    ("batch 32 64", "`batch` takes one value, not 2"),
    ("validation_split 1.5", "`validation_split` must be at least 0.0 and below 1.0, not 1.5"),
    ("dataset 3", "dataset is a name, not `3`"),
    ("seed -1", "`seed` must be at least 0, not -1"),
    ("epochs 3 fast=1", "`epochs` takes no option `fast=`"),
    ("validation_split 0.1\nearly_stopping patience=1.5",
     "`patience` is a whole number, not `1.5`"),
    ("validation_split 0.1\nearly_stopping restore_best=maybe",
     "`restore_best` is `true` or `false`, not `maybe`"),
    ("optimizer adam lr=fast", "`lr` is a number, not `fast`"),
    ("optimizer adam lr=0", "`lr` must be above 0"),
    ("optimizer adam momentum=0.9", "optimizer `adam` takes no option `momentum`"),
])
def test_wrong_values_are_errors(body, message):
    d = only(body)
    assert (d.severity, d.message) == (ERROR, message)


def test_diagnostics_point_at_the_entry_and_render():
    source = f"{NET}train {{\n  epochs 3\n  epoch 3\n}}\n"
    result = analyse(source)
    (d,) = validate_train(result.analysis.graph.train)[1]
    assert (d.span.line, d.span.column) == (8, 3)
    text = Renderer("t.cnn", source).render(d)
    assert "t.cnn:8:3" in text and "^^^^^^^" in text and "did you mean `epochs`?" in text


def test_all_errors_are_collected_and_good_entries_kept():
    config, diagnostics = settings("epochs zero\nbatch 16\nloss nope")
    assert [d.severity for d in diagnostics] == [ERROR, ERROR]
    assert config.batch == 16


def test_warnings_for_a_repeated_key_and_a_validation_monitor_without_split():
    config, diagnostics = settings("epochs 2\nepochs 3\nearly_stopping monitor=val_loss")
    assert config.epochs == 3
    assert [(d.severity, d.message) for d in diagnostics] == [
        (WARNING, "`epochs` is set twice; the last wins"),
        (WARNING, "early stopping watches `val_loss` but there is no validation split")]


# ----------------------------------------------------------------------------- overrides


def test_overrides_replace_the_file_settings():
    base, _ = settings("optimizer adam lr=0.01 beta_1=0.8\nepochs 20\nvalidation_split 0.1\n"
                       "early_stopping patience=2")
    config = apply_overrides(base, {"epochs": 3, "batch": "128", "lr": 1e-3, "seed": None,
                                    "optimizer": "sgd", "metrics": "accuracy,mae",
                                    "early_stopping": "patience=5,restore_best=true",
                                    "validation_split": "0.2", "dataset": "cifar10"})
    assert (config.epochs, config.batch, config.learning_rate, config.optimizer) == (
        3, 128, 1e-3, "sgd")
    assert config.optimizer_options == {"learning_rate": 1e-3}  # sgd takes no beta_1
    assert config.metrics == ("accuracy", "mae")
    assert config.early_stopping == EarlyStopping("val_loss", 5, 0.0, True)
    assert (config.validation_split, config.dataset, config.seed) == (0.2, "cifar10", 42)
    assert apply_overrides(base, {"early_stopping": "off"}).early_stopping is None
    assert apply_overrides(TrainConfig(), {"patience": 3}).early_stopping == EarlyStopping(
        patience=3)


@pytest.mark.parametrize(("overrides", "message"), [
    ({"epochs": 0}, "`epochs` must be at least 1, not 0"),
    ({"batch": "many"}, "`batch` is a whole number, not `many`"),
    ({"lr": -1.0}, "`--lr` must be at least 0.0, not -1.0"),
    ({"lr": 0}, "`--lr` must be above 0"),
    ({"optimizer": "adamm"}, "unknown optimizer `adamm`"),
    ({"early_stopping": "patience=x"}, "`patience` is a whole number"),
    ({"early_stopping": "maybe"}, "`early_stopping` is `true` or `false`"),
])
def test_bad_overrides_raise(overrides, message):
    with pytest.raises(ConfigError) as err:
        apply_overrides(TrainConfig(), overrides)
    assert err.value.message.startswith(message)


def test_config_round_trips_through_json():
    config, _ = settings("optimizer sgd lr=0.1\nvalidation_split 0.1\nearly_stopping patience=1")
    assert TrainConfig.from_json(config.to_json()) == config


def test_validating_and_the_training_modules_never_import_tensorflow():
    code = ("import sys; from cnndsl.analysis.pipeline import analyse; "
            "from cnndsl.analysis.train_section import validate_train; "
            "import cnndsl.training.commands, cnndsl.training.session, cnndsl.training.datasets; "
            "import cnndsl.backends.runtime, cnndsl.training.plots; "
            "r = analyse(open('examples/mnist.cnn').read()); "
            "validate_train(r.analysis.graph.train); "
            "heavy = {'tensorflow', 'keras', 'matplotlib'} & set(sys.modules); "
            "sys.exit(f'imported {heavy}' if heavy else 0)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_check_reports_train_section_errors(tmp_path):
    """`cnndsl check` runs the same validation (pipeline.analyse calls validate_train)."""
    path = tmp_path / "net.cnn"
    path.write_text(f"{NET}train {{\n  epochs 3\n  optimizer adam lrr=0.1\n}}\n")
    done = subprocess.run([sys.executable, "-m", "cnndsl", "check", str(path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "NO_COLOR": "1"})
    assert done.returncode == 1
    assert "error: unknown optimizer option `lrr`" in done.stderr
    assert f"{path}:8:3" in done.stderr and "did you mean `lr`?" in done.stderr
