"""Activation names: flag words on conv and dense, and statements of their own (`relu`)."""

from __future__ import annotations

from typing import Any

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
