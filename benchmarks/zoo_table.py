"""Regenerate docs/zoo.md's tables: every example network (params, MACs, `check` time) and
every keras.applications constructor with both sides' totals.

Run: python benchmarks/zoo_table.py [--repeat N] [--write]

Ours come from `cnndsl check --json` (whole processes, the time is the best of N); theirs
from building each keras.applications model with `weights=None` (all 40 of them: a few
minutes and a few GiB of memory). Which example network mirrors which constructor is
written above the network in the example: `# = keras.applications.ResNet101(weights=None)`;
tests/test_zoo.py proves each of those layer by layer. `--write` replaces the two tables in
docs/zoo.md; without it they are printed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from cnndsl.backends.report import human
from cnndsl.lang.parser import parse

ROOT = Path(__file__).resolve().parent.parent
ZOO_MD = ROOT / "docs" / "zoo.md"
TWIN = re.compile(r"^# = keras\.applications\.(\w+)\(weights=None(?:, input_shape=[^)]*\))?\)"
                  r"\nnetwork (\w+) \{", re.M)

def check(path: Path, network: str | None, repeat: int) -> tuple[dict, float]:
    best = float("inf")
    args = ["--network", network] if network else []
    for _ in range(repeat):
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "cnndsl", "check", "--json", str(path),
                               *args], capture_output=True, text=True, cwd=ROOT)
        best = min(best, time.perf_counter() - start)
    return json.loads(proc.stdout), best


def networks() -> list[tuple[Path, str | None]]:
    """Every network of every example; None for a file with only one."""
    found = []
    for path in sorted((ROOT / "examples").glob("*.cnn")):
        program, _ = parse(path.read_text())
        names = [net.name.id for net in program.networks]
        found += [(path, None)] if len(names) == 1 else [(path, name) for name in names]
    return found


def keras_totals() -> dict[str, dict]:
    """Every keras.applications constructor's totals, each model built with weights=None."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    totals = {}
    for name in sorted(n for n in dir(keras.applications) if n[0].isupper()):
        keras.backend.clear_session()
        model = getattr(keras.applications, name)(weights=None)
        frozen = sum(math.prod(w.shape) for w in model.non_trainable_weights)
        totals[name] = {"params": model.count_params(), "non_trainable": frozen,
                        "output": list(model.outputs[0].shape[1:])}
        del model
    keras.backend.clear_session()
    return totals


def _ports(ports: list[dict]) -> str:
    """`28x28x1`, or with names for several inputs or outputs: `left 105x105x1, right ...`."""
    shapes = [shape(p["shape"]) for p in ports]
    if len(ports) == 1:
        return shapes[0]
    return ", ".join(f"{p['name']} {s}" for p, s in zip(ports, shapes, strict=True))


def shape(s: list[int]) -> str:
    return "x".join(map(str, s))


def examples_table(repeat: int) -> tuple[list[str], dict]:
    lines = ["| example | network | input | output | layers | params | non-trainable | MACs "
             "| check time |",
             "|---|---|---|---|---:|---:|---:|---:|---:|"]
    ours = {}
    for path, network in networks():
        data, seconds = check(path, network, repeat)
        ours[(path.name, data["network"])] = data
        lines.append(
            f"| `{path.name}` | {data['network']} | {_ports(data['inputs'])} "
            f"| {_ports(data['outputs'])} | {len(data['layers'])} "
            f"| {data['params']['total']:,} | {data['params']['non_trainable']:,} "
            f"| {human(data['macs'])} | {seconds:.2f} s |")
    return lines, ours


def keras_table(ours: dict) -> list[str]:
    twins = {}
    for path in sorted((ROOT / "examples").glob("*.cnn")):
        for constructor, network in TWIN.findall(path.read_text()):
            twins.setdefault(constructor, (path.name, network))
    lines = ["| keras.applications | example | params (cnndsl) | non-trainable (cnndsl) "
             "| params (Keras) | non-trainable (Keras) | MACs (cnndsl) | status |",
             "|---|---|---:|---:|---:|---:|---:|---|"]
    for name, theirs in keras_totals().items():
        keras_cells = f"{theirs['params']:,} | {theirs['non_trainable']:,}"
        if name in twins:
            file, network = twins[name]
            data = ours[(file, network)]
            same = (data["params"]["total"], data["params"]["non_trainable"],
                    data["output_shape"]) == (theirs["params"], theirs["non_trainable"],
                                              theirs["output"])
            lines.append(
                f"| {name} | `{file}` {network} | {data['params']['total']:,} "
                f"| {data['params']['non_trainable']:,} | {keras_cells} "
                f"| {human(data['macs'])} | {'exact' if same else '**differs**'} |")
        else:
            lines.append(f"| {name} | | | | {keras_cells} | | not written yet |")
    return lines


def replace(text: str, marker: str, lines: list[str]) -> str:
    begin, end = f"<!-- begin {marker} -->\n", f"<!-- end {marker} -->"
    head, rest = text.split(begin, 1)
    return head + begin + "\n".join(lines) + "\n" + end + rest.split(end, 1)[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--write", action="store_true", help="update docs/zoo.md in place")
    options = parser.parse_args()
    examples, ours = examples_table(options.repeat)
    keras = keras_table(ours)
    if options.write:
        text = replace(ZOO_MD.read_text(), "examples table", examples)
        ZOO_MD.write_text(replace(text, "keras.applications table", keras))
    else:
        print("\n".join([*examples, "", *keras]))


if __name__ == "__main__":
    main()
