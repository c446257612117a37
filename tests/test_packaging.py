"""A non-editable install carries the grammar and templates inside the package and works."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile

import pytest
from conftest import EXAMPLES, ROOT


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    # Built from a copy: setuptools writes build/ and *.egg-info beside the sources.
    source = tmp_path_factory.mktemp("source") / "cnndsl"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", "build", "runs", "__pycache__", "*.egg-info", ".ruff_cache"))
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps",
                    "--no-build-isolation", "-q", "-w", str(out)],
                   check=True, capture_output=True, timeout=300)
    [path] = out.glob("cnndsl-*.whl")
    return path


def test_wheel_carries_grammar_and_templates(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "cnndsl/grammars/cnn.lark" in names
    for template in (ROOT / "templates").iterdir():
        assert f"cnndsl/templates/{template.name}" in names
    assert "cnndsl/cli.py" in names and "cnndsl/analysis/ops/conv.py" in names
    assert "cnndsl/data/mnist-5k.npz" in names and "cnndsl/data/README.md" in names


def test_installed_copy_checks_outside_the_checkout(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
                    str(target), str(wheel)], check=True, capture_output=True, timeout=300)
    work = tmp_path / "elsewhere"
    work.mkdir()
    (work / "net.cnn").write_text((EXAMPLES / "mnist.cnn").read_text())
    code = ("import sys; sys.path.insert(0, sys.argv.pop(1)); import cnndsl;"
            "print(cnndsl.__file__); from cnndsl.cli import app; app(['check', 'net.cnn'])")
    env = {**os.environ, "NO_COLOR": "1", "PYTHONPATH": ""}
    proc = subprocess.run([sys.executable, "-c", code, str(target)], capture_output=True,
                          text=True, cwd=work, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0].startswith(str(target))
    assert "Total params:           52,138" in proc.stdout
