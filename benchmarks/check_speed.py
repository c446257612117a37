"""How fast `cnndsl check` is, measured as ratios within one run (machines here are noisy).

1. `cnndsl check examples/resnet50.cnn` against building and summarising
   `keras.applications.ResNet50(weights=None)`: whole processes, best of N each.
2. Growth: a 4,000-layer file against a 400-layer file, in-process (parse + elaborate +
   infer) and as whole processes.
3. References: a 4,000-layer file whose 1,000 residual adds read a named tensor (`@t7`)
   against the same file with the adds' second path an `identity`, in-process.

Run: python benchmarks/check_speed.py [--repeat N]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KERAS_RESNET = (
    "import os; os.environ['TF_CPP_MIN_LOG_LEVEL'] = '3'\n"
    "import keras\n"
    "keras.applications.ResNet50(weights=None).summary(print_fn=lambda *a, **k: None)\n"
)


def best_of(repeat: int, commands: list[list[str]]) -> list[float]:
    """The fastest of `repeat` runs of each whole process, in seconds; runs interleaved so
    that the machine's load at any moment falls on all commands alike."""
    best = [float("inf")] * len(commands)
    env = {**os.environ, "NO_COLOR": "1"}
    for _ in range(repeat):
        for i, command in enumerate(commands):
            start = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True, env=env, cwd=ROOT)
            best[i] = min(best[i], time.perf_counter() - start)
    return best


def chain(layers: int) -> str:
    """A network of `layers` layers: conv/batchnorm/relu triples, written out line by line."""
    body = ["    input 64x64x16"]
    for i in range(layers - 1):
        body.append(("    conv 16 3x3 same", "    batchnorm", "    relu")[i % 3])
    return "network chain {\n" + "\n".join(body) + "\n}\n"


def residual(units: int, references: bool) -> str:
    """`units` residual units of 4 layers; with `references`, each add reads the unit's
    conv output by name (`conv as t7; relu; add { | identity | @t7 }`), one reference per
    unit; without, the same layers with no name (`conv; add { | identity | relu }`)."""
    body = ["    input 64x64x16"]
    for k in range(units):
        if references:
            body += [f"    conv 16 3x3 same as t{k}", "    relu",
                     f"    add {{ | identity | @t{k} }}"]
        else:
            body += ["    conv 16 3x3 same", "    add { | identity | relu }"]
    return "network residual {\n" + "\n".join(body) + "\n}\n"


def in_process(texts: list[str], repeat: int) -> list[float]:
    """Best-of-`repeat` seconds of `analyse` for each text, runs interleaved so that
    the machine's load at any moment falls on all of them alike."""
    from cnndsl.analysis.pipeline import analyse

    analyse(texts[0])  # warm the grammar cache
    best = [float("inf")] * len(texts)
    for _ in range(repeat):
        for i, text in enumerate(texts):
            start = time.perf_counter()
            result = analyse(text)
            best[i] = min(best[i], time.perf_counter() - start)
            assert result.ok
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    repeat = parser.parse_args().repeat
    cnndsl = [sys.executable, "-m", "cnndsl", "check"]

    ours, keras = best_of(repeat, [[*cnndsl, "examples/resnet50.cnn"],
                                   [sys.executable, "-c", KERAS_RESNET]])
    print(f"ResNet-50: cnndsl check {ours:.3f} s, Keras build + summary {keras:.3f} s "
          f"-> cnndsl is {keras / ours:.1f}x faster")

    with tempfile.TemporaryDirectory() as tmp:
        small, large = Path(tmp, "chain400.cnn"), Path(tmp, "chain4000.cnn")
        small.write_text(chain(400))
        large.write_text(chain(4000))
        t_small, t_large = in_process([small.read_text(), large.read_text()], 2 * repeat)
        print(f"Growth in-process: 400 layers {t_small * 1000:.1f} ms, 4,000 layers "
              f"{t_large * 1000:.1f} ms -> {t_large / t_small:.1f}x for 10x the layers")
        p_small, p_large = best_of(repeat, [[*cnndsl, str(small)], [*cnndsl, str(large)]])
        print(f"Growth as processes: 400 layers {p_small:.3f} s, 4,000 layers {p_large:.3f} s "
              f"-> {p_large / p_small:.1f}x")

    plain, named = residual(1000, False), residual(1000, True)
    t_plain, t_named = in_process([plain, named], 2 * repeat)
    print(f"References in-process: 4,000 layers {t_plain * 1000:.1f} ms without, "
          f"{t_named * 1000:.1f} ms with 1,000 references -> {t_named / t_plain:.2f}x")


if __name__ == "__main__":
    main()
