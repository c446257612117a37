"""Rewrite the golden outputs: `python tests/golden/update.py [NAME ...]` (all by default).

Each NAME.out becomes what `cnndsl check NAME.cnn` prints on stderr, run from this folder
without colour, after a first line recording the exit code. Each tables/NAME.depthN.out
(name it `tables/NAME.depthN` to add one) becomes the table that `cnndsl check NAME.cnn
--depth N` prints on stdout, run from tables/. The test run never writes these files;
review `git diff tests/golden` before committing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

GOLDEN = Path(__file__).resolve().parent
TABLES = GOLDEN / "tables"


def _check(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_COLOR": "1"}
    env.pop("CNNDSL_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "cnndsl", "check", *args],
                          capture_output=True, text=True, cwd=cwd, env=env, timeout=120)


def golden_output(name: str) -> str:
    proc = _check(f"{name}.cnn", cwd=GOLDEN)
    return f"# exit: {proc.returncode}\n" + proc.stderr


def table_output(case: str) -> str:
    """`NAME.depthN`: the stdout of `check NAME.cnn --depth N`."""
    name, depth = case.rsplit(".depth", 1)
    proc = _check(f"{name}.cnn", "--depth", depth, cwd=TABLES)
    return f"# exit: {proc.returncode}\n" + proc.stdout


def main(names: list[str]) -> None:
    tables = [n.removeprefix("tables/") for n in names if n.startswith("tables/")]
    names = [n for n in names if not n.startswith("tables/")]
    if not names and not tables:
        names = sorted(p.stem for p in GOLDEN.glob("*.cnn"))
        tables = sorted(p.stem for p in TABLES.glob("*.out"))
    for name in names:
        (GOLDEN / f"{name}.out").write_text(golden_output(name))
        print(f"wrote {name}.out")
    for case in tables:
        (TABLES / f"{case}.out").write_text(table_output(case))
        print(f"wrote tables/{case}.out")


if __name__ == "__main__":
    main(sys.argv[1:])
