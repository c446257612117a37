"""`cnndsl train examples/mnist.cnn` on each Keras 3 backend, beside the seed notebook's
hand-written Keras (benchmarks/train_overhead.py) on the same backend.

One process per backend and program, one run each, the same network, data and settings
(adam, categorical cross-entropy, batch 64, validation split 0.05, early stopping on
val_loss with patience 2, seed 42):

    python benchmarks/train_backends.py [--data /usr/share/datasets/fashion-mnist] [--epochs 3]
                                        [--backends tensorflow,jax,torch]

Prints, per backend, the first epoch's seconds (it includes tracing and compiling), the
mean of the later epochs', and the test accuracy of each program. The default data is
Debian's `dataset-fashion-mnist` (full size, offline).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_overhead import HAND_WRITTEN, ROOT, timed


def epochs_split(seconds: list[float]) -> tuple[float, float | None]:
    """The first epoch's seconds, and the mean of the others (None with one epoch)."""
    rest = seconds[1:]
    return seconds[0], (sum(rest) / len(rest) if rest else None)


def hand_written(script: Path, data: Path, epochs: int, backend: str) -> dict:
    _, _, out = timed([sys.executable, str(script), str(data), str(epochs)], ROOT,
                      {"KERAS_BACKEND": backend})
    return json.loads(out.strip().splitlines()[-1])


def cnndsl(run: Path, data: Path, epochs: int, backend: str) -> dict:
    timed([sys.executable, "-m", "cnndsl", "train", "examples/mnist.cnn", "--data", str(data),
           "--epochs", str(epochs), "--backend", backend, "--out", str(run), "--verbose", "0"],
          ROOT)
    metrics = json.loads((run / "metrics.json").read_text())
    with (run / "history.csv").open() as f:
        metrics["seconds"] = [float(row["seconds"]) for row in csv.DictReader(f)]
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("/usr/share/datasets/fashion-mnist"),
                        help="a folder of MNIST-layout IDX files")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--backends", default="tensorflow,jax,torch")
    args = parser.parse_args()
    if not args.data.is_dir():
        sys.exit(f"no IDX folder at {args.data} (apt-get install dataset-fashion-mnist)")

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "seed_keras.py"
        script.write_text(HAND_WRITTEN)
        for backend in args.backends.split(","):
            ours = cnndsl(Path(tmp) / backend, args.data, args.epochs, backend)
            theirs = hand_written(script, args.data, args.epochs, backend)
            rows.append((backend, ours, theirs))
            print(f"{backend}: done", file=sys.stderr, flush=True)

    print(f"data: {args.data}, epochs: {args.epochs} (one run each; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)\n")
    print("| backend | program | first epoch | later epochs (mean) | test accuracy |")
    print("|---|---|---|---|---|")
    for backend, ours, theirs in rows:
        for name, result in (("cnndsl train", ours), ("hand-written Keras", theirs)):
            first, later = epochs_split(result["seconds"])
            later_text = f"{later:.1f} s" if later is not None else "-"
            print(f"| {backend} {ours['backend_version']} | {name} | {first:.1f} s | "
                  f"{later_text} | {result['test_accuracy']:.2%} |")


if __name__ == "__main__":
    main()
