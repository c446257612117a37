"""Shared helpers: the repository's paths and a way to run the real `cnndsl` command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cnndsl.lang.parser import parse

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def example_networks() -> list[tuple[Path, str | None]]:
    """Every network of every example: `(file, None)` for a file with one network, and
    `(file, name)` for each network of a family file (`resnet.cnn`: resnet50, resnet101...)."""
    found = []
    for path in sorted(EXAMPLES.glob("*.cnn")):
        program, _ = parse(path.read_text())
        names = [net.name.id for net in program.networks]
        found += [(path, None)] if len(names) == 1 else [(path, name) for name in names]
    return found


def network_id(case: tuple[Path, str | None]) -> str:
    path, network = case
    return path.name if network is None else f"{path.name}:{network}"


# The example networks whose Keras models take longest to build (about 10 s each on 2
# cores): `-m "not slow"` leaves them out locally; CI runs everything.
SLOW_NETWORKS = {"densenet169", "densenet201", "inception_resnet_v2", "resnet152",
                 "resnet152v2", "nasnet_mobile", "nasnet_large", "convnext_large",
                 "convnext_xlarge", "efficientnet_b6", "efficientnet_b7", "efficientnet_v2_m",
                 "efficientnet_v2_l"}


def example_params() -> list:
    """`example_networks()` as pytest parameters, the largest marked `slow`."""
    return [pytest.param(case, id=network_id(case),
                         marks=[pytest.mark.slow] if (case[1] or case[0].stem) in SLOW_NETWORKS
                         else [])
            for case in example_networks()]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test of one example network runs next to the others of that network, after all
    the other tests: tests/keras_models.py keeps one network's Keras models at a time, so each
    is built once per session while memory stays bounded by the largest network."""
    examples = {network_id(case): n for n, case in enumerate(example_networks())}

    def key(item: tuple[int, pytest.Item]) -> tuple[int, int, int]:
        index, test = item
        callspec = getattr(test, "callspec", None)
        network = examples.get(callspec.id) if callspec is not None else None
        return (0, 0, index) if network is None else (1, network, index)

    items[:] = [test for _, test in sorted(enumerate(items), key=key)]


def run_cnndsl(*args: str, cwd: Path | None = None, env: dict | None = None
               ) -> subprocess.CompletedProcess:
    """`python -m cnndsl ARGS` in a fresh process, as a user runs it."""
    full_env = {**os.environ, "NO_COLOR": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "cnndsl", *args], capture_output=True,
                          text=True, cwd=cwd or ROOT, env=full_env, timeout=120)


@pytest.fixture
def cnndsl():
    return run_cnndsl
