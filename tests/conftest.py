"""Shared helpers: the repository's paths and a way to run the real `cnndsl` command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def run_cnndsl(*args: str, cwd: Path | None = None, env: dict | None = None
               ) -> subprocess.CompletedProcess:
    """`python -m cnndsl ARGS` in a fresh process, as a user runs it."""
    full_env = {**os.environ, "NO_COLOR": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "cnndsl", *args], capture_output=True,
                          text=True, cwd=cwd or ROOT, env=full_env, timeout=120)


@pytest.fixture
def cnndsl():
    return run_cnndsl
