"""`cnndsl train --strategy`: one device, MirroredStrategy, or MultiWorkerMirroredStrategy.

`one` and `mirrored` train with Keras's model.fit (the model built in the strategy's scope).
`multiworker` cannot: Keras 3's fit fails under MultiWorkerMirroredStrategy ("unsupported
type PerReplica", keras-team/keras#20585), so it runs the small training loop below
(`strategy.run` on a tf.function step) and checkpoints with tf.train.CheckpointManager.
The batch in the settings is per replica; every step consumes batch x replicas images.

TensorFlow is imported inside the functions: `is_chief` and the names serve code that
must not import it.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cnndsl.common.files import replacing
from cnndsl.training.runstate import RunFolderError, inside, read_state

SINGLE_LOSSES = ("binary_crossentropy",)  # accuracy thresholds one output at 0.5


class StrategyError(Exception):
    """A strategy that cannot be set up here: one line for the user."""


class WorkerLost(Exception):
    """A peer worker died mid-step; TensorFlow says to restart the program to recover."""


def tf_config() -> dict[str, Any]:
    """The TF_CONFIG environment variable, as TensorFlow documents it; {} when unset."""
    text = os.environ.get("TF_CONFIG", "").strip()
    if not text:
        return {}
    try:
        config = json.loads(text)
    except ValueError as err:
        raise StrategyError(f"TF_CONFIG is not valid JSON ({err})") from err
    if not isinstance(config, dict):
        raise StrategyError("TF_CONFIG must be a JSON object with `cluster` and `task`")
    return config


def is_chief(config: dict[str, Any]) -> bool:
    """The chief writes the run: task `chief`, or worker 0 of a cluster without a chief."""
    task = config.get("task") or {}
    kind, index = task.get("type", "worker"), int(task.get("index", 0))
    if "chief" in (config.get("cluster") or {}):
        return kind == "chief"
    return kind == "worker" and index == 0


def chief_task(config: dict[str, Any]) -> str:
    """The chief as TF_CONFIG names it: `worker 0 at 10.0.0.1:12345`."""
    cluster = config.get("cluster") or {}
    kind = "chief" if "chief" in cluster else "worker"
    return f"{kind} 0 at {(cluster.get(kind) or ['an unknown address'])[0]}"


def where_the_chief_writes(config: dict[str, Any], folder: Path,
                           history: Sequence[dict[str, float]]) -> str:
    """What a worker that is not the chief says of the run folder. Only the chief knows its
    own path; this worker's `--out` is that folder when it is on the shared filesystem, which
    shows in the state.json there: the chief committed the very epochs this worker trained
    (their losses are all-reduced, the same on every worker)."""
    try:
        committed = [row.get("loss") for row in read_state(folder).get("history", [])]
    except RunFolderError:
        committed = []
    chief = f"the chief ({chief_task(config)}) writes the run folder"
    if history and committed == [row["loss"] for row in history]:
        return f"{chief}, `{folder.resolve()}` here"
    return (f"{chief} at its own --out; `{folder}` here is not that folder (give every worker "
            "the same --out on a shared filesystem, or a restarted worker cannot rejoin)")


@dataclass
class Plan:
    """The chosen strategy and what it means for batches and files."""

    name: str  # one, mirrored or multiworker (`auto` resolved)
    strategy: Any
    replicas: int
    workers: int = 1
    chief: bool = True

    def global_batch(self, per_replica: int) -> int:
        return per_replica * self.replicas

    def describe(self, per_replica: int) -> str:
        where = f" on {self.workers} workers" if self.workers > 1 else ""
        return (f"{self.name}, {self.replicas} replica{'s' * (self.replicas != 1)}{where}; "
                f"batch {per_replica} per replica, {self.global_batch(per_replica)} global")


def choose(name: str, devices: Sequence[str] = ()) -> Plan:
    """The strategy for `--strategy NAME [--devices ...]`; call before TensorFlow runs an op
    (logical CPU devices can only be made before it initialises its devices)."""
    import tensorflow as tf

    if devices and name not in ("mirrored", "auto"):
        raise StrategyError(f"--devices goes with `--strategy mirrored`, not `{name}`")
    if name == "multiworker":
        return _multiworker(tf)
    if devices:
        _split_cpu(tf, devices)
        return _mirrored(tf, list(devices))
    gpus = tf.config.list_physical_devices("GPU")
    if name == "mirrored" or (name == "auto" and len(gpus) > 1):
        return _mirrored(tf, None)
    return Plan("one", tf.distribute.get_strategy(), 1)


def _device_key(name: str) -> str:
    """`/gpu:0`, `/device:GPU:0` and `GPU:0` alike: `gpu:0`."""
    return name.strip().lower().removeprefix("/").removeprefix("device:")


def _mirrored(tf: Any, devices: list[str] | None) -> Plan:
    # MirroredStrategy accepts a device that does not exist and runs on the CPU instead.
    present = {_device_key(d.name) for d in tf.config.list_logical_devices()}
    missing = [d for d in devices or [] if _device_key(d) not in present]
    if missing:
        raise StrategyError(f"no device {missing[0]} on this machine (it has "
                            f"{', '.join(sorted(present))})")
    try:
        strategy = tf.distribute.MirroredStrategy(devices=devices)
    except (ValueError, RuntimeError) as err:
        raise StrategyError(f"cannot mirror over {', '.join(devices or ['all devices'])}: "
                            f"{err}") from err
    return Plan("mirrored", strategy, strategy.num_replicas_in_sync)


def _split_cpu(tf: Any, devices: Sequence[str]) -> None:
    """`--devices /cpu:0,/cpu:1` on one CPU: split it into that many logical devices."""
    wanted = [int(m.group(1)) for d in devices
              if (m := re.fullmatch(r"/(?:device:)?cpu:(\d+)", d.strip().lower()))]
    if not wanted or max(wanted) == 0:
        return
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * (max(wanted) + 1))
    except RuntimeError as err:  # TensorFlow already made its devices
        raise StrategyError(f"cannot split the CPU into {max(wanted) + 1} devices now "
                            f"({err})") from err


def _multiworker(tf: Any) -> Plan:
    config = tf_config()
    if not config.get("cluster"):
        raise StrategyError("`--strategy multiworker` needs TF_CONFIG (the cluster and this "
                            "worker's task); see docs/distributed.md")
    strategy = tf.distribute.MultiWorkerMirroredStrategy()  # waits for every worker
    workers = sum(len(v) for k, v in config["cluster"].items() if k in ("chief", "worker"))
    return Plan("multiworker", strategy, strategy.num_replicas_in_sync, workers,
                is_chief(config))


# ----------------------------------------------------------------------------- the custom loop


def _accuracy(loss: str) -> Callable[[Any, Any], Any]:
    """Per-example 0/1 correctness for the labels `loss` expects."""
    import tensorflow as tf

    def correct(y: Any, pred: Any) -> Any:
        if loss in SINGLE_LOSSES:
            guess = tf.cast(tf.reshape(pred, [-1]) > 0.5, tf.float32)
            return tf.cast(tf.equal(guess, tf.cast(tf.reshape(y, [-1]), tf.float32)),
                           tf.float32)
        truth = tf.cast(y, tf.int64) if loss.startswith("sparse") else tf.argmax(y, -1)
        return tf.cast(tf.equal(tf.argmax(pred, -1), truth), tf.float32)

    return correct


class Loop:
    """Training and evaluation steps run on every replica: sums reduced over all of them."""

    def __init__(self, plan: Plan, model: Any, optimizer: Any, loss: str,
                 per_replica_batch: int) -> None:
        import keras
        import tensorflow as tf

        self.plan, self.model, self.optimizer = plan, model, optimizer
        self.batch = plan.global_batch(per_replica_batch)
        per_example = keras.losses.get(loss)
        correct = _accuracy(loss)
        strategy = plan.strategy

        def sums(losses: Any, y: Any, pred: Any) -> tuple[Any, Any, Any]:
            """Summed loss, correct count, example count: summed again over replicas."""
            return (tf.reduce_sum(losses), tf.reduce_sum(correct(y, pred)),
                    tf.cast(tf.shape(losses)[0], tf.float32))

        def train_replica(x: Any, y: Any) -> tuple[Any, Any, Any]:
            with tf.GradientTape() as tape:
                pred = model(x, training=True)
                losses = per_example(y, pred)
                loss_value = tf.nn.compute_average_loss(losses, global_batch_size=self.batch)
                if model.losses:
                    loss_value += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
            grads = tape.gradient(loss_value, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
            return sums(losses, y, pred)

        def eval_replica(x: Any, y: Any) -> tuple[Any, Any, Any]:
            pred = model(x, training=False)
            return sums(per_example(y, pred), y, pred)

        def reduced(replica: Callable) -> Callable:
            @tf.function
            def step(batch: Any) -> list[Any]:
                out = strategy.run(replica, args=batch)
                return [strategy.reduce("SUM", v, axis=None) for v in out]
            return step

        self._train, self._eval = reduced(train_replica), reduced(eval_replica)

    def _batches(self, x: np.ndarray, y: np.ndarray, seed: int | None) -> Iterator[Any]:
        import tensorflow as tf

        data = tf.data.Dataset.from_tensor_slices((x, y))
        if seed is not None:
            data = data.shuffle(len(x), seed=seed)
        options = tf.data.Options()  # arrays have no files to shard: each worker its rows
        options.experimental_distribute.auto_shard_policy = (
            tf.data.experimental.AutoShardPolicy.DATA)
        data = data.batch(self.batch).prefetch(2).with_options(options)
        return iter(self.plan.strategy.experimental_distribute_dataset(data))

    def _run(self, step: Callable, batches: Iterator[Any]) -> dict[str, float]:
        total = np.zeros(3)
        try:
            for batch in batches:
                total += [float(v) for v in step(batch)]
        except _lost_errors() as err:
            raise WorkerLost(str(err).splitlines()[0]) from err
        loss, correct, count = total
        return {"loss": loss / max(count, 1), "accuracy": correct / max(count, 1)}

    def train_epoch(self, x: np.ndarray, y: np.ndarray, seed: int) -> dict[str, float]:
        return self._run(self._train, self._batches(x, y, seed))

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
        return self._run(self._eval, self._batches(x, y, None))


class EarlyStop:
    """Keras's EarlyStopping rule for the loop above, its state kept in state.json as the
    single-worker run keeps it, so `--resume` continues either alike. `config` None: off.

    Every worker runs one and they agree without a word: the metrics it watches are sums
    all-reduced over every replica, the same bits on every worker (as are the gradients that
    keep the replicas equal), so all of them stop after the same epoch with the same best.

    What it has to say goes to `say` (the run's Reporter.say, which prints everything
    training prints)."""

    def __init__(self, config: Any, saved: dict[str, Any] | None, stopped: bool,
                 folder: Path, say: Callable[[str], None] = print) -> None:
        self.config, self.stopped = config, stopped  # stopped: in an earlier process
        self.say = say
        self.reason = ""  # why it stopped, once it has: said after the epoch's own line
        self.restore = config is not None and config.restore_best
        saved = saved or {}
        self.wait: int = saved.get("wait", 0)
        self.best: float | None = saved.get("best")
        self.best_epoch: int = saved.get("best_epoch", 0)  # from 0, as Keras counts
        name = saved.get("best_weights") if self.restore else None
        # The best epoch's weights: arrays once this process trained it, else the file an
        # earlier process saved (read at the end, if no better epoch came).
        self.best_weights: list[np.ndarray] | Path | None = (
            inside(folder, name, "best-weights file") if name else None)

    def update(self, epoch: int, row: dict[str, float], model: Any) -> bool:
        """After epoch `epoch` (from 0): whether training stops now. Says nothing: the
        caller says `reason` once the epoch is committed and its progress line ended."""
        current = row.get(self.config.monitor) if self.config else None
        if current is None:  # off, or no validation split to watch: Keras goes on too
            return False
        # As Keras: with none kept yet (restore_best turned on by a resume), these are best.
        if self.restore and self.best_weights is None:
            self.best_weights, self.best_epoch = model.get_weights(), epoch
        self.wait += 1
        if self.best is None or self._better(current, self.best):
            self.best, self.best_epoch, self.wait = current, epoch, 0
            if self.restore:
                self.best_weights = model.get_weights()
            return False
        self.stopped = self.wait >= self.config.patience and epoch > 0
        if self.stopped:
            self.reason = (f"early stopping: {self.config.monitor} has not improved by "
                           f"{self.config.min_delta:g} for {self.wait} "
                           f"epoch{'s' * (self.wait != 1)}; stopping after epoch {epoch + 1}")
        return self.stopped

    def _better(self, current: float, best: float) -> bool:
        delta = abs(self.config.min_delta)
        if self.config.monitor.removeprefix("val_") == "loss":
            return current + delta < best
        return current - delta > best

    def commit(self, folder: Path, epoch: int, model: Any,
               write_state: Callable[[dict[str, Any] | None], None]) -> None:
        """The chief's commit of epoch `epoch` (from 0): the best weights when this epoch is
        the best, then state.json naming them (`write_state`), then the older best removed."""
        best = (f"best-{self.best_epoch + 1}.weights.h5"
                if self.restore and self.best_weights is not None else None)
        if best is not None and self.best_epoch == epoch:
            with replacing(folder / best) as tmp:
                model.save_weights(tmp)
        write_state(None if self.config is None else {
            "wait": self.wait, "best_epoch": self.best_epoch, "best": self.best,
            "best_weights": best})
        for old in folder.glob("best-*.weights.h5"):
            if old.name != best:
                old.unlink(missing_ok=True)

    def restore_best(self, model: Any) -> None:
        """The best weights into `model` with restore_best, as Keras does at the end of fit
        (whether it stopped early or not)."""
        if isinstance(self.best_weights, Path):
            if not self.best_weights.is_file():
                raise RunFolderError(f"`{self.best_weights}` is missing; the run folder is "
                                     "incomplete")
            model.load_weights(self.best_weights)
        elif self.best_weights is not None:
            model.set_weights(self.best_weights)
        else:
            return
        self.say(f"early stopping: restored the weights of epoch {self.best_epoch + 1}, the "
                 f"best {self.config.monitor}")


def _lost_errors() -> tuple[type[Exception], ...]:
    """What a collective raises when a peer is gone ("Restart your program to reset")."""
    import tensorflow as tf

    return (tf.errors.UnavailableError, tf.errors.AbortedError,
            tf.errors.DeadlineExceededError, tf.errors.CancelledError)


class Checkpoints:
    """tf.train checkpoints of model and optimizer. Saving is a collective step under
    multiworker, so every worker saves: the chief into the run folder, the others into
    their own scratch folder; all restore from the chief's (a shared filesystem)."""

    def __init__(self, model: Any, optimizer: Any, folder: Path) -> None:
        import tensorflow as tf

        self.tf = tf
        self.checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer)
        # Two kept: state.json names the older until the newer is committed.
        self.manager = tf.train.CheckpointManager(self.checkpoint, str(folder), max_to_keep=2,
                                                  checkpoint_name="ckpt")

    def save(self, epoch: int) -> str:
        try:
            return self.manager.save(checkpoint_number=epoch)
        except _lost_errors() as err:
            raise WorkerLost(str(err).splitlines()[0]) from err

    def restore(self, path: Path) -> None:
        self.checkpoint.restore(str(path)).expect_partial()


MAX_REJOINS = 5


def rejoin() -> None:
    """A multiworker peer died: TensorFlow cannot reset its collectives in-process, so run
    this same command again in a fresh process; it waits for the lost worker to come back
    and continues from the last finished epoch. At most MAX_REJOINS times."""
    tries = int(os.environ.get("CNNDSL_REJOINS", "0"))
    if tries >= MAX_REJOINS:
        return
    os.environ["CNNDSL_REJOINS"] = str(tries + 1)
    print(f"note: restarting this worker to rejoin the cluster ({tries + 1} of "
          f"{MAX_REJOINS})", file=sys.stderr, flush=True)
    sys.stdout.flush()
    os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])
