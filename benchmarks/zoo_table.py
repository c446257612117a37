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


def _ports(ports: list[dict]) -> str:
    """`28x28x1`, or with names for several inputs or outputs: `left 105x105x1, right ...`."""
    shapes = ["x".join(map(str, p["shape"])) for p in ports]
    if len(ports) == 1:
        return shapes[0]
    return ", ".join(f"{p['name']} {s}" for p, s in zip(ports, shapes, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    repeat = parser.parse_args().repeat
    print("| example | network | input | output | layers | params | non-trainable | MACs "
          "| check time |")
    print("|---|---|---|---|---:|---:|---:|---:|---:|")
    for path in sorted((ROOT / "examples").glob("*.cnn")):
        data, seconds = check(path, repeat)
        print(f"| `{path.name}` | {data['network']} | {_ports(data['inputs'])} "
              f"| {_ports(data['outputs'])} | {len(data['layers'])} "
              f"| {data['params']['total']:,} | {data['params']['non_trainable']:,} "
              f"| {human(data['macs'])} | {seconds:.2f} s |")


if __name__ == "__main__":
    main()
