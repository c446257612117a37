"""Issue 12: writes that cannot follow symlinks or hit an input, bounded input, and text from
input that cannot drive the terminal. Real symlinks, real devices and FIFOs, real `dot`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import EXAMPLES, run_cnndsl

from cnndsl.common import limits
from cnndsl.common.diagnostics import ERROR, Diagnostic, Renderer, Span
from cnndsl.common.files import WriteError, replacing, write_atomic
from cnndsl.common.safetext import shown

needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz `dot` not installed")
MNIST = (EXAMPLES / "mnist.cnn").read_text()


# ----------------------------------------------------------------------------- 1. symlinks


def test_temporary_names_are_fresh_exclusive_files(tmp_path):
    target = tmp_path / "model.keras"
    with replacing(target) as a, replacing(target) as b:
        assert a != b and a.parent == tmp_path and a.name.endswith("model.keras")
        assert a.is_file() and not a.is_symlink()  # created by mkstemp, before any writer
        assert str(os.getpid()) not in a.name  # nothing to predict
        a.write_text("a")
        b.write_text("b")
    assert target.read_text() == "a"  # the inner block (b) ended first, then a replaced it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.keras"]


def test_a_symlinked_target_is_replaced_not_written_through(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    link = tmp_path / "out.txt"
    link.symlink_to(victim)
    write_atomic(link, "new")
    assert victim.read_text() == "precious"
    assert not link.is_symlink() and link.read_text() == "new"


def test_an_unwritable_folder_names_the_file(tmp_path):
    # /proc/self takes no new files, even for root (a chmod 555 folder does not stop root)
    with pytest.raises(WriteError, match=r"cannot write `/proc/self/state\.json`"):
        write_atomic(Path("/proc/self/state.json"), "next")


def test_a_full_disk_names_the_file(tmp_path):
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this system")
    with pytest.raises(WriteError, match="No space left"), replacing(tmp_path / "x.bin") as tmp:
        tmp.unlink()
        tmp.symlink_to("/dev/full")  # a disk with no space left, for this one file
        with open(tmp, "wb") as f:  # as Keras or matplotlib write the path they are given
            f.write(b"x" * 65536)
            f.flush()
    assert not (tmp_path / "x.bin").exists()


@pytest.mark.parametrize("command", ["build", "draw"])
def test_commands_replace_a_planted_symlink(tmp_path, command):
    (tmp_path / "net.cnn").write_text(MNIST)
    victim = tmp_path / "victim"
    victim.write_text("precious")
    out = tmp_path / ("net.py" if command == "build" else "net.dot")
    out.symlink_to(victim)
    proc = run_cnndsl(command, "net.cnn", "-o", out.name, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert victim.read_text() == "precious" and not out.is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.cnn", out.name, "victim"]


# ----------------------------------------------------------------------------- 2. inputs


@pytest.mark.parametrize("args", [["-o", "net.cnn", "-f", "svg"], ["-o", "net.cnn", "-f", "dot"],
                                  ["-o", "alias.dot"], ["-o", "hard.svg"]])
def test_draw_never_overwrites_its_input(tmp_path, args):
    src = tmp_path / "net.cnn"
    src.write_text(MNIST)
    (tmp_path / "alias.dot").symlink_to(src)
    os.link(src, tmp_path / "hard.svg")  # the same file by identity, under another name
    proc = run_cnndsl("draw", "net.cnn", *args, cwd=tmp_path)
    assert proc.returncode == 2 and "is the input" in proc.stderr, proc.stderr
    assert src.read_text() == MNIST


def test_draw_of_a_source_named_like_its_output(tmp_path):
    src = tmp_path / "x.dot"
    src.write_text(MNIST)
    proc = run_cnndsl("draw", "x.dot", "-o", "x.dot", cwd=tmp_path)
    assert proc.returncode == 2 and "is the input" in proc.stderr
    assert src.read_text() == MNIST


def test_build_never_overwrites_its_input_by_identity(tmp_path):
    src = tmp_path / "net.cnn"
    src.write_text(MNIST)
    os.link(src, tmp_path / "other.py")
    proc = run_cnndsl("build", "net.cnn", "-o", "other.py", cwd=tmp_path)
    assert proc.returncode == 2 and "is the input" in proc.stderr
    assert src.read_text() == MNIST


# ----------------------------------------------------------------------------- 4. bounds


def test_a_device_is_read_with_a_bound():
    proc = run_cnndsl("check", "/dev/zero")
    assert proc.returncode == 2
    assert proc.stderr == ("error: `/dev/zero` is larger than 1 MB, the limit for a .cnn "
                           "file (is it the right file?)\n")


def test_a_fifo_is_read_like_a_file(tmp_path):
    fifo = tmp_path / "net.cnn"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_text(MNIST))
    writer.start()
    try:
        assert limits.read_source(fifo) == MNIST
    finally:
        writer.join(10)


def test_an_oversized_source_is_refused_before_parsing(tmp_path):
    big = tmp_path / "big.cnn"
    big.write_text("network n {\n  input 8x8x1\n" + "  relu\n" * 200_000 + "}\n")
    with pytest.raises(limits.SourceError, match="larger than 1 MB"):
        limits.read_source(big)


def test_repeated_diagnostics_are_capped_and_counted():
    source = "network n {\n  input 8x8x1\n" + "  frob\n" * 120 + "}\n"
    diagnostics = [Diagnostic(ERROR, "unknown op", Span.point(3 + i, 3)) for i in range(120)]
    diagnostics.append(Diagnostic("warning", "w", Span.point(3, 3)))
    blocks = Renderer("n.cnn", source).blocks(diagnostics)
    assert len(blocks) == limits.MAX_DIAGNOSTICS + 1
    assert blocks[-1] == ("note: 70 more errors and 1 more warning not shown (only the first "
                          "50 are; fix these first)")


@needs_dot
def test_draw_refuses_what_graphviz_cannot_lay_out(tmp_path):
    n = limits.MAX_DRAW_NODES
    (tmp_path / "big.cnn").write_text("block b() { relu }\nnetwork big {\n  input 8x8x1\n"
                                      + "  relu\n  b()\n" * (n // 2 + 1) + "}\n")
    proc = run_cnndsl("draw", "big.cnn", "-o", "big.svg", cwd=tmp_path)
    assert proc.returncode == 1 and "--depth" in proc.stderr and proc.stderr.count("\n") == 1
    assert not (tmp_path / "big.svg").exists()
    # .dot needs no layout; folding the blocks shrinks nothing here (one relu each) but
    # the plain chain through `dot` stays the user's call
    assert run_cnndsl("draw", "big.cnn", "-o", "big.dot", cwd=tmp_path).returncode == 0


@needs_dot
def test_draw_with_a_very_long_network_name(tmp_path):
    name = "n" * 70_000
    (tmp_path / "long.cnn").write_text(f"network {name} {{\n  input 8x8x1\n  flatten\n}}\n")
    proc = run_cnndsl("draw", "long.cnn", "-o", "long.svg", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "nnn…" in (tmp_path / "long.svg").read_text()


# ----------------------------------------------------------------------------- 5. escapes


def test_shown_escapes_every_non_printable_character():
    assert shown("plain text, é ✓") == "plain text, é ✓"
    assert shown("a\x1b[2Jb\x07\u202ec\u2028\x00") == "a\\x1b[2Jb\\x07\\u202ec\\u2028\\x00"


def test_file_names_are_escaped_in_messages(tmp_path):
    name = "evil\x1b]0;title\x07.cnn"
    (tmp_path / name).write_text("network n {\n  input 8x8x1\n  conv 8 9x9\n}\n")
    for args in (["check", name], ["build", name], ["draw", name, "-o", "x.dot"],
                 ["check", "missing\x1b[2J.cnn"]):
        proc = run_cnndsl(*args, cwd=tmp_path)
        assert "\x1b" not in proc.stderr + proc.stdout and "\\x1b" in proc.stderr, args


# ----------------------------------------------------------------------------- 9. encodings


def test_bom_and_cr_line_ends_check_to_the_same_numbers(tmp_path):
    plain = run_cnndsl("check", str(EXAMPLES / "mnist.cnn"))
    (tmp_path / "mnist.cnn").write_bytes(b"\xef\xbb\xbf" + MNIST.replace("\n", "\r").encode())
    odd = run_cnndsl("check", "mnist.cnn", cwd=tmp_path)
    assert odd.returncode == plain.returncode == 0
    assert odd.stdout.splitlines()[1:] == plain.stdout.splitlines()[1:]


def test_a_mistyped_command_is_suggested_once():
    proc = run_cnndsl("chek", "x.cnn")
    assert proc.returncode == 2
    assert proc.stderr == ("error: No such command 'chek'. Did you mean 'check'? "
                           "(see `cnndsl --help`)\n")


# ----------------------------------------------------------------------------- 10. codegen

DUNDERS = """block __builtins__(f) { conv f 3x3 same }
block __init__(f) { conv f 1x1 }
network __name__ {
  input 8x8x1
  __builtins__(4)
  __init__(4) as __class__
  flatten
  dense 3 softmax
}
"""


def test_dunder_names_make_a_module_that_imports_and_builds(tmp_path):
    (tmp_path / "dunder.cnn").write_text(DUNDERS)
    assert run_cnndsl("build", "dunder.cnn", cwd=tmp_path).returncode == 0
    code = (tmp_path / "dunder.py").read_text()
    assert "def __builtins___(" in code and "def __init___(" in code
    script = ("import dunder; m = dunder.build_model(); "
              "print(m.name, m.count_params(), [x.name for x in m.layers][2])")
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert proc.returncode == 0, proc.stderr
    checked = json.loads(run_cnndsl("check", "--json", "dunder.cnn", cwd=tmp_path).stdout)
    assert proc.stdout.split() == ["__name__", str(checked["params"]["total"]),
                                   "__class__-conv_1"]


def test_no_input_text_on_the_lines_python_reads_an_encoding_from(tmp_path):
    name = "net coding=utf-16 \u202e.cnn"
    (tmp_path / name).write_text(MNIST)
    assert run_cnndsl("build", name, "-o", "net.py", cwd=tmp_path).returncode == 0
    code = (tmp_path / "net.py").read_bytes()
    first_two = code.split(b"\n")[:2]
    assert not any(b"coding" in line or b"net" in line for line in first_two), first_two
    compile(code, "net.py", "exec")  # bytes: Python honours a coding line as it would on import
    assert "\\u202e" in code.decode() and "\u202e" not in code.decode()


@pytest.mark.parametrize("data, message", [
    ("network n { input 8x8x1 }\n".encode("utf-16"), "is UTF-16 text; save it as UTF-8"),
    ("network n { input 8x8x1 }\n".encode("utf-16-le"), "is UTF-16 text; save it as UTF-8"),
    (b"network n {\n  input 8x8x1\n  # caf\xe9\n}\n",
     "is not UTF-8 text (byte 0xe9 at line 3, column 8); save it as UTF-8"),
])
def test_other_encodings_are_named(tmp_path, data, message):
    (tmp_path / "net.cnn").write_bytes(data)
    for command in ("check", "build", "draw"):
        args = ["-o", "net.dot"] if command == "draw" else []
        proc = run_cnndsl(command, "net.cnn", *args, cwd=tmp_path)
        assert proc.returncode == 2
        assert proc.stderr == f"error: `net.cnn` {message}\n", command


def test_written_files_get_ordinary_permissions(tmp_path):
    umask = os.umask(0)
    os.umask(umask)
    write_atomic(tmp_path / "new.py", "x")
    assert (tmp_path / "new.py").stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600
    (tmp_path / "kept.sh").write_text("old")
    (tmp_path / "kept.sh").chmod(0o750)
    write_atomic(tmp_path / "kept.sh", "new")
    assert (tmp_path / "kept.sh").stat().st_mode & 0o777 == 0o750
