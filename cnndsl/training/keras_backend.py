"""What training does its own way for the Keras backend it runs on (TensorFlow today), in
one place: the device, how many steps run per call into the backend, and reading a
tf.train checkpoint. (`--strategy`'s strategies are tf.distribute's, in distribute.py.)
TensorFlow is imported inside each function: importing this module costs nothing."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from cnndsl.training.progress import note

STEPS_PER_EXECUTION = 32  # steps per call into TensorFlow: no Python between those steps


def device(mixed_precision: bool) -> str:
    """The GPU when TensorFlow sees one (Keras then uses it by itself), else the CPU."""
    import tensorflow as tf

    from cnndsl.backends.runtime import import_keras

    gpus = tf.config.list_physical_devices("GPU")
    if mixed_precision and gpus:
        import_keras().mixed_precision.set_global_policy("mixed_float16")
    elif mixed_precision:
        note("--mixed-precision needs a GPU; training in float32 on the CPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        name = details.get("device_name", gpus[0].name)
        return f"GPU ({name}{', mixed precision' if mixed_precision else ''})"
    return f"CPU ({os.cpu_count()} cores, no GPU visible)"


def steps_per_execution(steps: int, strategy: str) -> int:
    """Up to 32 of an epoch's `steps` in one call; 1 under a strategy other than `one`:
    MirroredStrategy cannot run more (Keras 3.15 feeds its loop a placeholder it never
    fills)."""
    return max(1, min(STEPS_PER_EXECUTION, steps)) if strategy == "one" else 1


def model_from_checkpoint(analysis: Any, path: Path) -> Any:
    """The model of a multiworker checkpoint (tf.train format: weights, no architecture)."""
    import tensorflow as tf

    from cnndsl.backends.runtime import build_model

    model = build_model(analysis)
    tf.train.Checkpoint(model=model).restore(str(path)).expect_partial()
    return model
