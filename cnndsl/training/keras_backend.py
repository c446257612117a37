"""The Keras backend a run trains on -- TensorFlow, JAX or PyTorch -- and everything that
differs between them, decided here and nowhere else (each framework is imported inside the
functions that need it: importing this module costs nothing):

- which one: `--backend`, else the train section's `backend`, else the backend of a Keras
  this process has loaded already, else KERAS_BACKEND, else tensorflow; Keras reads it
  once, when it is imported, so it is set before that (and a Keras already loaded with
  another backend is a one-line error);
- seeding: Keras's set_random_seed seeds TensorFlow too whenever it is installed, which
  imports it; on JAX and PyTorch it is kept out (nothing of theirs uses its seed);
- the data: NumPy arrays into fit on every backend (Keras feeds them through tf.data on
  TensorFlow, and through its own array iterators elsewhere, without TensorFlow);
- steps per execution: several steps per call into TensorFlow or JAX, one on PyTorch
  (Keras refuses more there);
- the device and mixed precision: each framework's own view of its GPUs;
- distribution: `--strategy mirrored` and `multiworker` are tf.distribute, TensorFlow's,
  and so are the tf.train checkpoints of a multiworker run.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnndsl.analysis.train_section import BACKENDS
from cnndsl.training.errors import EXIT_USAGE, TrainError
from cnndsl.training.progress import note

STEPS_PER_EXECUTION = 32  # steps per call into TensorFlow or JAX: no Python between them


@dataclass(frozen=True)
class Backend:
    """The backend Keras runs on in this process, with the keras module it was loaded as."""

    name: str  # tensorflow, jax or torch
    version: str
    keras: Any

    def describe(self) -> str:
        return f"{self.name} {self.version} (Keras {self.keras.__version__})"


def chosen(explicit: str | None) -> str:
    """The backend to run on: `explicit` (--backend, else the train section's) when given,
    else that of a Keras already loaded, else KERAS_BACKEND, else tensorflow."""
    if explicit is not None:
        return explicit
    keras = sys.modules.get("keras")
    if keras is not None:
        name, where = keras.backend.backend(), "Keras is loaded with the backend"
    else:
        name, where = os.environ.get("KERAS_BACKEND", "").strip() or "tensorflow", \
            "KERAS_BACKEND is"
    if name not in BACKENDS:
        raise TrainError(f"{where} `{name}`; cnndsl trains on "
                         f"{', '.join(BACKENDS[:-1])} or {BACKENDS[-1]}", EXIT_USAGE)
    return name


def load(name: str) -> Backend:
    """Keras, imported with backend `name` (see the module's docstring)."""
    keras = sys.modules.get("keras")
    if keras is not None and keras.backend.backend() != name:
        raise TrainError(f"Keras is already loaded with the {keras.backend.backend()} "
                         f"backend in this process; it cannot switch to {name} (start a new "
                         f"process, or train with backend {keras.backend.backend()})",
                         EXIT_USAGE)
    if keras is None:
        os.environ["KERAS_BACKEND"] = name
    from cnndsl.backends.runtime import import_keras

    keras = import_keras()
    return Backend(name, sys.modules[name].__version__, keras)


def seed(backend: Backend, value: int) -> None:
    """Python's, NumPy's, Keras's and the backend's random generators."""
    if backend.name == "tensorflow":
        backend.keras.utils.set_random_seed(value)
        return
    # None in sys.modules makes `import tensorflow` fail, so Keras skips its seed.
    hidden = "tensorflow" not in sys.modules
    if hidden:
        sys.modules["tensorflow"] = None  # type: ignore[assignment]
    try:
        backend.keras.utils.set_random_seed(value)
    finally:
        if hidden:
            del sys.modules["tensorflow"]


def steps_per_execution(backend: Backend, steps: int, strategy: str) -> int:
    """Up to 32 of an epoch's `steps` in one call; 1 on PyTorch, and under a strategy other
    than `one`: MirroredStrategy cannot run more (Keras 3.15 feeds its loop a placeholder
    it never fills)."""
    if backend.name == "torch" or strategy != "one":
        return 1
    return max(1, min(STEPS_PER_EXECUTION, steps))


def device(backend: Backend, mixed_precision: bool) -> str:
    """The first GPU the backend sees (Keras then uses it by itself), else the CPU; with
    mixed precision set up there."""
    gpu = _gpu(backend.name)
    if mixed_precision and gpu:
        backend.keras.mixed_precision.set_global_policy("mixed_float16")
    elif mixed_precision:
        note("--mixed-precision needs a GPU; training in float32 on the CPU")
    if gpu:
        return f"GPU ({gpu}{', mixed precision' if mixed_precision else ''})"
    return f"CPU ({os.cpu_count()} cores, no GPU visible)"


def _gpu(name: str) -> str | None:
    if name == "jax":
        import jax

        gpus = [d for d in jax.devices() if d.platform == "gpu"]
        return gpus[0].device_kind if gpus else None
    if name == "torch":
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return None
    return tf.config.experimental.get_device_details(gpus[0]).get("device_name", gpus[0].name)


def plan(backend: Backend, strategy: str, devices: Sequence[str]) -> Any:
    """The distribution plan (distribute.Plan): tf.distribute's on TensorFlow; on JAX and
    PyTorch, one device. Call before TensorFlow initialises its devices."""
    from cnndsl.training.distribute import Plan, StrategyError, choose

    refuse_tensorflow_only(backend.name, strategy, devices)
    if backend.name != "tensorflow":
        return Plan("one", _OneDevice(), 1)
    try:
        return choose(strategy, devices)
    except StrategyError as err:
        raise TrainError(str(err), EXIT_USAGE) from err


def refuse_tensorflow_only(name: str, strategy: str, devices: Sequence[str]) -> None:
    """A one-line error for tf.distribute's settings on another backend."""
    if name != "tensorflow" and (strategy in ("mirrored", "multiworker") or devices):
        what = f"--strategy {strategy}" if strategy in ("mirrored", "multiworker") \
            else "--devices"
        raise TrainError(f"`{what}` is TensorFlow's tf.distribute; train with `--backend "
                         f"tensorflow` (this run is on {name})", EXIT_USAGE)


class _OneDevice:
    """A strategy's `scope()` where there is none to enter."""

    def scope(self) -> nullcontext[None]:
        return nullcontext()


def model_from_checkpoint(analysis: Any, path: Path) -> Any:
    """The model of a multiworker checkpoint (tf.train format: weights, no architecture)."""
    import tensorflow as tf

    from cnndsl.backends.runtime import build_model

    model = build_model(analysis)
    tf.train.Checkpoint(model=model).restore(str(path)).expect_partial()
    return model
