"""Activation names: flag words on conv and dense, and statements of their own (`relu`)."""

from __future__ import annotations

from typing import Any

from cnndsl.analysis.ops.base import ArgSpec

# Keras 3's activations that keep the shape and need no argument.
ACTIVATIONS = (
    "celu", "elu", "exponential", "gelu", "hard_shrink", "hard_sigmoid", "hard_silu",
    "hard_swish", "hard_tanh", "leaky_relu", "linear", "log_sigmoid", "log_softmax", "mish",
    "relu", "relu6", "selu", "sigmoid", "silu", "soft_shrink", "softmax", "softplus",
    "softsign", "sparse_plus", "sparse_sigmoid", "sparsemax", "squareplus", "swish", "tanh",
    "tanh_shrink",
)

ACTIVATION_FLAGS = {name: ("activation", name) for name in ACTIVATIONS}


def activation_kwargs(activation: str | None) -> dict[str, Any]:
    """Keras keyword arguments for an optional fused activation (`linear` is Keras's default)."""
    return {"activation": activation} if activation not in (None, "linear") else {}


# The settings an activation statement takes (`leaky_relu alpha=0.1`, `relu max_value=6`).
# None: Keras's default of the plain activation. Without settings a statement is
# `Activation(name)`; with them, the Keras layer that takes them.
ACTIVATION_SETTINGS: dict[str, tuple[ArgSpec, ...]] = {
    "relu": (
        ArgSpec("max_value", "float", None, doc="clip above this (`relu max_value=6`)"),
        ArgSpec("negative_slope", "float", 0.0, doc="slope below the threshold"),
        ArgSpec("threshold", "float", 0.0, doc="values below it are damped"),
    ),
    "leaky_relu": (ArgSpec("alpha", "float", None, doc="slope below zero; 0.2 if not given"),),
    "elu": (ArgSpec("alpha", "float", None, doc="scale of the negative part; 1 if not given"),),
    "gelu": (ArgSpec("approximate", "bool", False, doc="the tanh approximation"),),
}

# Activation -> (Keras layer class, .cnn setting -> its Keras name, cnndsl's own class?).
ACTIVATION_LAYERS: dict[str, tuple[str, dict[str, str], bool]] = {
    "relu": ("ReLU", {}, False),
    "leaky_relu": ("LeakyReLU", {"alpha": "negative_slope"}, False),
    "elu": ("ELU", {}, False),
    "gelu": ("GELU", {}, True),  # keras.layers has no GELU layer
}
