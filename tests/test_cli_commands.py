"""`cnndsl build` and `cnndsl draw` run as a user runs them, through the command line:
every flag, the exit codes, and what is written (the file's content, not only its name)."""

from __future__ import annotations

import ast
import re
import shutil

import pytest
from conftest import EXAMPLES, run_cnndsl

from cnndsl.analysis.pipeline import analyse

NET = """
block pair(f) { conv f 3x3 same relu; conv f 3x3 same relu }
block stage(f) { pair(f) as a; pair(f) as b }
network t {
  input 16x16x3
  stage(4) as s1
  repeat 3 { pair(8) }
  globalavgpool
  dense 10 softmax
}
"""
# Counted by hand from NET: 13 layers; folded at the top (s1, pair_1, and pair_2 and pair_3
# as one `x 2` run) 6 nodes; folded below depth 1 (s1's a and b) 11 nodes.
NODES = {(): 13, ("--collapse",): 6, ("--depth", "0"): 6, ("--depth", "1"): 11}
MAGIC = {"svg": b"<svg", "png": b"\x89PNG\r\n\x1a\n", "pdf": b"%PDF-", "dot": b"digraph"}
needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz `dot` missing")


@pytest.fixture
def net(tmp_path):
    path = tmp_path / "net.cnn"
    path.write_text(NET)
    return path


def nodes(dot_source: str) -> int:
    return len(re.findall(r"^\s*(?:n\d+|fold_\w+) \[", dot_source, re.M))


# ----------------------------------------------------------------------------- build


def assert_module(code: str, source: str) -> None:
    """Python, with build_model and the parameter total `check` reports."""
    tree = ast.parse(code)
    assert "build_model" in {f.name for f in tree.body if isinstance(f, ast.FunctionDef)}
    assert f"params {analyse(source).analysis.totals.params:,}" in code


def test_build_writes_beside_the_input_to_a_file_or_to_stdout(net, tmp_path):
    proc = run_cnndsl("build", str(net))
    assert proc.returncode == 0, proc.stderr
    assert_module((tmp_path / "net.py").read_text(), NET)

    proc = run_cnndsl("build", str(net), "-o", str(tmp_path / "m.py"))
    assert proc.returncode == 0, proc.stderr
    written = (tmp_path / "m.py").read_text()
    assert written == (tmp_path / "net.py").read_text()

    before = sorted(tmp_path.rglob("*"))
    proc = run_cnndsl("build", str(net), "--output", "-")
    assert (proc.returncode, proc.stdout) == (0, written)
    assert sorted(tmp_path.rglob("*")) == before  # `-` writes nothing


def test_build_exit_codes_and_nothing_written_on_errors(net, tmp_path):
    bad = tmp_path / "bad.cnn"
    bad.write_text("network b { input 4x4x1; conv 8 5x5 }")
    proc = run_cnndsl("build", str(bad))
    assert proc.returncode == 1 and "error:" in proc.stderr
    assert not (tmp_path / "bad.py").exists()
    assert run_cnndsl("build", str(net), "-o", str(tmp_path / "m.txt")).returncode == 2
    assert run_cnndsl("build", str(tmp_path / "missing.cnn")).returncode == 2
    assert not list(tmp_path.glob("*.txt"))


# ----------------------------------------------------------------------------- draw


@pytest.mark.parametrize(("flags", "count"), NODES.items(), ids=str)
def test_draw_folds_blocks_as_asked(flags, count, net, tmp_path):
    out = tmp_path / "net.dot"
    proc = run_cnndsl("draw", str(net), "-o", str(out), *flags)
    assert proc.returncode == 0, proc.stderr
    assert nodes(out.read_text()) == count


def test_draw_rankdir(net, tmp_path):
    for rankdir in ("LR", "TB"):
        out = tmp_path / f"{rankdir}.dot"
        assert run_cnndsl("draw", str(net), "-o", str(out), "--rankdir", rankdir).returncode == 0
        assert re.search(rf"rankdir={rankdir}\b", out.read_text())
    assert run_cnndsl("draw", str(net), "-o", str(tmp_path / "x.dot"),
                      "--rankdir", "up").returncode == 2


@needs_dot
@pytest.mark.parametrize("kind", MAGIC)
def test_draw_every_format_by_extension_and_by_flag(kind, tmp_path):
    example = EXAMPLES / "inception_module.cnn"
    by_extension = tmp_path / f"net.{kind}"
    assert run_cnndsl("draw", str(example), "-o", str(by_extension)).returncode == 0
    by_flag = tmp_path / "net.picture"
    assert run_cnndsl("draw", str(example), "-o", str(by_flag), "--format", kind).returncode == 0
    for out in (by_extension, by_flag):  # an SVG opens with an XML declaration first
        assert MAGIC[kind] in out.read_bytes()[:300], out
    assert by_flag.stat().st_size > 1000


def test_draw_exit_codes(net, tmp_path):
    assert run_cnndsl("draw", str(net), "-o", str(tmp_path / "x.gif")).returncode == 2
    assert run_cnndsl("draw", str(net), "-o", str(tmp_path / "x.dot"), "--depth", "-1"
                      ).returncode == 2
    bad = tmp_path / "bad.cnn"
    bad.write_text("network b {\n  input 4x4x1\n  conv 8 5x5\n  flatten\n}")
    out = tmp_path / "bad.dot"
    proc = run_cnndsl("draw", str(bad), "-o", str(out))
    # Drawn all the same, the failing layer in red, and the exit code says there are errors.
    assert proc.returncode == 1 and "error:" in proc.stderr
    failed = [line for line in out.read_text().splitlines() if "5-wide window" in line]
    assert nodes(out.read_text()) == 3 and len(failed) == 1 and 'fillcolor="#fcbba1"' in failed[0]
    assert not list(tmp_path.glob("x.*"))
