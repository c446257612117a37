"""Keras models of .cnn sources, built once per test session and shared by the tests that
compare them with `check` (test_build, test_runtime, the fidelity tests): the model
`build`'s module makes, and the model `train` makes in-process.

The examples hold billions of parameters together, so only one network's models are kept:
conftest.py runs every test of one example network one after another, so each model is
still built once, and memory stays bounded by the largest network."""

from __future__ import annotations

import functools
import gc
import importlib.util
import os
import tempfile
import zlib
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from cnndsl.analysis.infer import Analysis
from cnndsl.analysis.pipeline import analyse
from cnndsl.backends.codegen import generate
from cnndsl.backends.runtime import build_model

_MODULES = Path(tempfile.mkdtemp(prefix="cnndsl-modules-"))


@cache
def analysed(source: str, network: str | None = None) -> Analysis:
    """The analysis of `source`'s only network, or of `network` in a file of several."""
    result = analyse(source, network)
    assert result.ok, [d.message for d in result.diagnostics]
    return result.analysis


def one_network_at_a_time(build: Callable[..., Any]) -> Callable[..., Any]:
    """`build`, remembering only its latest result: a new network's model frees the last."""
    latest: dict[tuple, Any] = {}

    @functools.wraps(build)
    def cached(*key: Any) -> Any:
        if key not in latest:
            latest.clear()
            gc.collect()
            import keras

            keras.backend.clear_session()  # fresh layer-name counters, as a new process has
            latest[key] = build(*key)
        return latest[key]

    return cached


@one_network_at_a_time
def runtime_model(source: str, network: str | None = None) -> Any:
    """The in-process model `cnndsl train` fits."""
    return build_model(analysed(source, network))


@one_network_at_a_time
def module_model(source: str, network: str | None = None) -> Any:
    """The model of the module `cnndsl build` writes, imported from a temporary folder."""
    code, diagnostics = generate(source, "net.cnn", network=network)
    assert code is not None, [d.message for d in diagnostics]
    name = f"built_{zlib.crc32(f'{network}:{source}'.encode()):08x}"
    path = _MODULES / f"{name}.py"
    path.write_text(code)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build_model()


def inbound(layer: Any) -> list[str]:
    """The names of the layers whose outputs feed `layer`, in order."""
    node = layer._inbound_nodes[0]
    return [t._keras_history.operation.name for t in node.input_tensors]


def set_weights(model: Any, value=None) -> None:
    """Deterministic weights keyed by layer name and weight index, so two models with the
    same layer names get the same numbers whatever their construction order. Batch-norm
    variances stay positive. `value` ("ones") sets kernels to 1 and biases to 0 instead,
    with batch norm the identity."""
    for layer in model.layers:
        weights = []
        for i, w in enumerate(layer.weights):
            shape, name = tuple(w.shape), w.path.rsplit("/", 1)[-1]
            if value == "ones":
                one = name in ("kernel", "depthwise_kernel", "pointwise_kernel", "gamma",
                               "moving_variance")
                weights.append(np.full(shape, 1.0 if one else 0.0, np.float32))
                continue
            rng = np.random.default_rng(zlib.crc32(f"{layer.name}/{i}".encode()))
            fan_in = max(1, int(np.prod(shape[:-1])))
            low, high = (0.5, 1.5) if name == "moving_variance" else (-1.0, 1.0)
            scale = 1.0 if name in ("moving_variance", "gamma") else 1.0 / np.sqrt(fan_in)
            weights.append((rng.uniform(low, high, shape) * scale).astype(np.float32))
        if weights:
            layer.set_weights(weights)
