"""Rewrite the golden outputs: `python tests/golden/update.py [NAME ...]` (all by default).

Each NAME.out becomes what `cnndsl check NAME.cnn` prints on stderr, run from this folder
without colour, after a first line recording the exit code. The test run never writes
these files; review `git diff tests/golden` before committing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

GOLDEN = Path(__file__).resolve().parent


def golden_output(name: str) -> str:
    env = {**os.environ, "NO_COLOR": "1"}
    env.pop("CNNDSL_DEBUG", None)
    proc = subprocess.run([sys.executable, "-m", "cnndsl", "check", f"{name}.cnn"],
                          capture_output=True, text=True, cwd=GOLDEN, env=env, timeout=120)
    return f"# exit: {proc.returncode}\n" + proc.stderr


def main(names: list[str]) -> None:
    for name in names or sorted(p.stem for p in GOLDEN.glob("*.cnn")):
        (GOLDEN / f"{name}.out").write_text(golden_output(name))
        print(f"wrote {name}.out")


if __name__ == "__main__":
    main(sys.argv[1:])
