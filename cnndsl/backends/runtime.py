"""Backend: the analysed graph -> a Keras model, built in-process with the Functional API.

Each node becomes the Keras layers of its op's own mapping (`op.to_keras`), named
`node.keras_name` + suffix, so the model `train` runs and the code `build` writes agree.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

from cnndsl.analysis.graph import Port
from cnndsl.analysis.infer import Analysis
from cnndsl.analysis.ops.base import KerasLayer


def import_keras() -> Any:
    """Keras, on the backend KERAS_BACKEND names (cnndsl/training/keras_backend.py sets it), and
    quietly: TensorFlow's C++ start-up chatter, when Keras loads it, is no use to a user;
    with cnndsl's own layers registered, so `load_model` reads models that use them."""
    if "keras" not in sys.modules:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        with _quiet_native_stderr():
            import keras  # noqa: F401  (TensorFlow's C++ logs come as its backend loads)
    from cnndsl.backends import keras_layers  # noqa: F401  (registers them)

    return sys.modules["keras"]


def keras_class(keras: Any, spec: KerasLayer) -> Any:
    """The class of a layer record: Keras's own, or cnndsl's (cnndsl/backends/keras_layers.py)."""
    if spec.custom:
        from cnndsl.backends import keras_layers

        return getattr(keras_layers, spec.cls)
    return getattr(keras.layers, spec.cls)


@contextlib.contextmanager
def _quiet_native_stderr() -> Iterator[None]:
    """Silence file descriptor 2 (TensorFlow 2.21 logs through absl before reading
    TF_CPP_MIN_LOG_LEVEL); what was written is shown after all if the import fails."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def build_model(analysis: Analysis, output_dtype: str | None = None) -> Any:
    """A keras.Model for an error-free analysis.

    `output_dtype` (e.g. "float32" under mixed precision) sets the last layer's dtype policy,
    so the softmax and the loss stay in full precision.
    """
    keras = import_keras()
    graph = analysis.graph
    if graph.output is None or any(layer.shape is None for layer in analysis.layers):
        raise ValueError("the network has errors; run `cnndsl check` first")
    outputs = {p.node for p in graph.outputs}
    tensors: dict[int, Any] = {}
    made: dict[int, list[Any]] = {}  # each node's Keras layers, for `reuse` to call again
    for layer in analysis.layers:
        node = layer.node
        specs = node.op.to_keras(node.args)
        if node.op.arity == "source":
            spec = specs[0]
            tensors[node.id] = keras.Input(name=node.keras_name + spec.suffix, **spec.kwargs)
            continue
        inputs = [tensors[i] for i in node.inputs]  # type: ignore[index]
        x: Any = inputs if node.op.arity == "merge" else inputs[0]
        if node.shares is not None:
            made[node.id] = made[node.shares]
        else:
            made[node.id] = []
            for k, spec in enumerate(specs):
                kwargs = dict(spec.kwargs)
                if node.id in outputs and output_dtype and k == len(specs) - 1:
                    kwargs["dtype"] = output_dtype
                made[node.id].append(keras_class(keras, spec)(
                    name=node.keras_name + spec.suffix, **kwargs))
        for keras_layer in made[node.id]:
            x = keras_layer(x)
        tensors[node.id] = x
    return keras.Model(_ports(graph.inputs, tensors), _ports(graph.outputs, tensors),
                       name=_model_name(graph.network))


def _ports(ports: list[Port], tensors: dict[int, Any]) -> Any:
    """One tensor for one input or output (as Keras's own models have it), else a list."""
    if len(ports) == 1:
        return tensors[ports[0].node]
    return [tensors[p.node] for p in ports]


def _model_name(network: str) -> str:
    return network if network.isidentifier() else "model"


def node_layers(analysis: Analysis, model: Any) -> dict[int, list[Any]]:
    """The Keras layers each node became, in order: for comparing with the analysis (a
    `reuse` node has none of its own)."""
    by_name = {layer.name: layer for layer in model.layers}
    out = {}
    for layer in analysis.layers:
        node = layer.node
        if node.shares is not None:
            continue  # the same Keras layers as the node it shares
        specs = node.op.to_keras(node.args)
        out[node.id] = [by_name[node.keras_name + s.suffix] for s in specs]
    return out
