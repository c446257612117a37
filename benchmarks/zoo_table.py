"""Print docs/zoo.md's table: every example's params, MACs, and how long `cnndsl check` takes.

Run: python benchmarks/zoo_table.py [--repeat N]   (times: whole processes, best of N)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from cnndsl.report import human

ROOT = Path(__file__).resolve().parent.parent


def check(path: Path, repeat: int) -> tuple[dict, float]:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "cnndsl", "check", "--json", str(path)],
                              capture_output=True, text=True, cwd=ROOT)
        best = min(best, time.perf_counter() - start)
    return json.loads(proc.stdout), best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    repeat = parser.parse_args().repeat
    print("| example | network | input | output | layers | params | non-trainable | MACs "
          "| check time |")
    print("|---|---|---|---|---:|---:|---:|---:|---:|")
    for path in sorted((ROOT / "examples").glob("*.cnn")):
        data, seconds = check(path, repeat)
        shape = lambda s: "x".join(map(str, s))  # noqa: E731
        print(f"| `{path.name}` | {data['network']} | {shape(data['input_shape'])} "
              f"| {shape(data['output_shape'])} | {len(data['layers'])} "
              f"| {data['params']['total']:,} | {data['params']['non_trainable']:,} "
              f"| {human(data['macs'])} | {seconds:.2f} s |")


if __name__ == "__main__":
    main()
