"""`cnndsl train examples/mnist.cnn` against the seed notebook's hand-written Keras.

Both run as whole processes (start-up, data loading, training, test evaluation and, for
cnndsl, its run folder with checkpoints and plots), one run each, on the same IDX data
with the same network and settings: adam, categorical cross-entropy, batch 64,
validation split 0.05, early stopping on val_loss with patience 2, seed 42.

    python benchmarks/train_overhead.py [--data /usr/share/datasets/fashion-mnist] [--epochs 3]

Prints the wall-clock and CPU time of each, their ratios (cnndsl / hand-written; the goal
is <= 1.00) and both test accuracies (the goal: equal within a point).
The default data is Debian's `dataset-fashion-mnist` (full size, offline).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# The seed notebook's network and training code (In [54]-[55]), in Keras 3, reading the
# IDX files with plain numpy and scaling pixels to [0, 1] as the notebook's loader did.
HAND_WRITTEN = r'''
import gzip, json, os, sys, time
from pathlib import Path
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np
import keras
from keras import layers, models
from keras.callbacks import EarlyStopping
from keras.utils import to_categorical

folder, epochs = Path(sys.argv[1]), int(sys.argv[2])

def idx(stem):
    path = next(p for p in sorted(folder.iterdir()) if p.name.startswith(stem))
    raw = (gzip.open if path.suffix == ".gz" else open)(path, "rb").read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)

train_images = idx("train-images").reshape((-1, 28, 28, 1)).astype("float32") / 255
test_images = idx("t10k-images").reshape((-1, 28, 28, 1)).astype("float32") / 255
train_labels = to_categorical(idx("train-labels"))
test_labels = to_categorical(idx("t10k-labels"))

keras.utils.set_random_seed(42)
model = models.Sequential()
model.add(keras.Input(shape=(28, 28, 1)))
model.add(layers.Conv2D(8, (3, 3), activation="relu"))
model.add(layers.Conv2D(16, (3, 3), strides=(2, 2), padding="same", activation="relu"))
model.add(layers.MaxPooling2D((2, 2), padding="same"))
model.add(layers.Flatten())
model.add(layers.Dropout(0.25))
model.add(layers.Dense(64, activation="relu", name="FC1"))
model.add(layers.Dropout(0.50))
model.add(layers.Dense(10, activation="softmax", name="output"))
earlystopping = EarlyStopping(monitor="val_loss", patience=2, min_delta=0, verbose=0)

class EpochSeconds(keras.callbacks.Callback):  # not the notebook's: for the timings only
    seconds = []
    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()
    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self.started)

model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
history = model.fit(train_images, train_labels, epochs=epochs, validation_split=0.05,
                    batch_size=64, callbacks=[earlystopping, EpochSeconds()], verbose=2)
test_loss, test_acc = model.evaluate(test_images, test_labels, verbose=0)
print(json.dumps({"test_accuracy": test_acc, "test_loss": test_loss,
                  "epochs": len(history.history["loss"]), "seconds": EpochSeconds.seconds}))
'''


def cpu_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(cmd: list[str], cwd: Path, env: dict[str, str] | None = None
          ) -> tuple[float, float, str]:
    """Wall-clock and CPU seconds (all threads) of one whole process, and its stdout;
    `env`: variables to set for it.

    CPU time is the steadier figure on a shared machine, where wall-clock time also
    measures the neighbours."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "NO_COLOR": "1", **(env or {})}
    cpu, start = cpu_of_children(), time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    seconds, cpu = time.perf_counter() - start, cpu_of_children() - cpu
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}): {' '.join(cmd)}\n{done.stderr[-3000:]}")
    return seconds, cpu, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("/usr/share/datasets/fashion-mnist"),
                        help="a folder of MNIST-layout IDX files")
    parser.add_argument("--epochs", type=int, default=3,
                        help="epochs for both (examples/mnist.cnn says 20; early stopping "
                             "may end either sooner)")
    args = parser.parse_args()
    if not args.data.is_dir():
        sys.exit(f"no IDX folder at {args.data} (apt-get install dataset-fashion-mnist)")

    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "seed_keras.py"
        script.write_text(HAND_WRITTEN)
        run = Path(tmp) / "run"
        # Warm the disk cache for TensorFlow and the data, so neither side pays for it.
        timed([sys.executable, "-c", "import tensorflow, keras"], ROOT)
        seed_s, seed_cpu, seed_out = timed([sys.executable, str(script), str(args.data),
                                            str(args.epochs)], ROOT)
        ours_s, ours_cpu, _ = timed([sys.executable, "-m", "cnndsl", "train",
                                     "examples/mnist.cnn", "--data", str(args.data),
                                     "--epochs", str(args.epochs), "--out", str(run)], ROOT)
        seed = json.loads(seed_out.strip().splitlines()[-1])
        ours = json.loads((run / "metrics.json").read_text())

    print(f"data: {args.data}, epochs: {args.epochs} (one run each, whole processes; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)\n")
    print(f"{'':22}{'wall':>8}{'CPU':>8}{'epochs':>8}{'test accuracy':>15}")
    for name, wall, cpu, result in (("hand-written Keras", seed_s, seed_cpu, seed),
                                    ("cnndsl train", ours_s, ours_cpu, ours)):
        print(f"{name:22}{wall:7.1f}s{cpu:7.1f}s{result['epochs']:>8}"
              f"{result['test_accuracy']:>15.2%}")
    print(f"\ntime ratio (cnndsl / hand-written): {ours_s / seed_s:.2f} wall-clock, "
          f"{ours_cpu / seed_cpu:.2f} CPU  (goal <= 1.00)")
    diff = (ours["test_accuracy"] - seed["test_accuracy"]) * 100
    print(f"accuracy difference: {diff:+.2f} points  (goal: within 1)")


if __name__ == "__main__":
    main()
