"""The command line's conventions: `-` for stdin, where `draw` and `build` write when not
told, `-h`, shell completion, one suggestion for a mistyped command, help for every
argument, and `check --depth`."""

from __future__ import annotations

import io
import os
import shutil
import sys

import pytest
from conftest import EXAMPLES, run_cnndsl

from cnndsl.cli import app
from cnndsl.common.limits import MAX_SOURCE_BYTES

MNIST = (EXAMPLES / "mnist.cnn").read_text()
BROKEN = "network broken {\n  input 8x8x1\n  conv 4 9x9\n}\n"
COMMANDS = ["check", "build", "draw", "train", "evaluate", "fmt", "lsp"]
needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz `dot` missing")


@pytest.fixture
def cli(monkeypatch, capsys):
    """Run `cnndsl ARGS` in-process, `stdin` as its input: (exit code, stdout, stderr)."""
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.delenv("CNNDSL_DEBUG", raising=False)

    def run(*args: str, stdin: str | bytes = b"") -> tuple[int, str, str]:
        data = stdin.encode() if isinstance(stdin, str) else stdin
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
        capsys.readouterr()
        with pytest.raises(SystemExit) as info:
            app(list(args))
        out, err = capsys.readouterr()
        return info.value.code or 0, out, err

    return run


# ----------------------------------------------------------------------------- stdin


def test_check_reads_stdin_and_calls_it_stdin(cli):
    code, out, _ = cli("check", "-", stdin=MNIST)
    assert code == 0 and out.startswith("network mnist  (<stdin>)")
    code, out, err = cli("check", "-", stdin=BROKEN)
    assert code == 1 and "--> <stdin>:3:3" in err and "error: `<stdin>` has 1 error" in err
    code, out, _ = cli("check", "-", "--json", stdin=MNIST)
    assert code == 0 and '"file": "<stdin>"' in out


def test_stdin_is_bounded_like_a_file(cli):
    code, out, err = cli("check", "-", stdin=b"#" * (MAX_SOURCE_BYTES + 1))
    assert code == 2 and out == ""
    assert err == "error: `<stdin>` is larger than 1 MB, the limit for a .cnn file (is it the " \
                  "right file?)\n"
    code, _, err = cli("check", "-", stdin="network n { input 4x4x1 }".encode("utf-16"))
    assert code == 2 and "`<stdin>` is UTF-16 text" in err


def test_build_from_stdin_writes_network_py_here(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = cli("build", "-", stdin=MNIST)
    assert (code, out, err) == (0, "", "wrote mnist.py\n")
    code, out, _ = cli("build", "-", "-o", "-", stdin=MNIST)
    assert code == 0 and out == (tmp_path / "mnist.py").read_text()
    assert '# of "<stdin>".' in out
    assert cli("build", "-", stdin=BROKEN)[0] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mnist.py"]


def test_draw_from_stdin(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = cli("draw", "-", "--format", "dot", stdin=MNIST)
    assert (code, err) == (0, "wrote mnist.dot\n")
    assert (tmp_path / "mnist.dot").read_text().startswith("digraph mnist {")
    code, _, err = cli("draw", "-", "-o", str(tmp_path / "b.dot"), stdin=BROKEN)
    assert code == 1 and "--> <stdin>:3:3" in err


# ----------------------------------------------------------------------------- draw's output


@needs_dot
def test_draw_writes_network_svg_beside_the_input(cli, tmp_path):
    src = tmp_path / "models" / "file.cnn"
    src.parent.mkdir()
    src.write_text(MNIST)
    code, out, err = cli("draw", str(src))
    assert (code, out) == (0, "") and err == f"wrote {tmp_path / 'models' / 'mnist.svg'}\n"
    assert b"<svg" in (tmp_path / "models" / "mnist.svg").read_bytes()[:300]


def test_draw_default_name_never_overwrites_the_input_or_writes_through_a_link(cli, tmp_path):
    src = tmp_path / "mnist.dot"  # a .cnn source named like the diagram it would make
    src.write_text(MNIST)
    code, _, err = cli("draw", str(src), "-f", "dot")
    assert code == 2 and "is the input" in err and src.read_text() == MNIST
    other = tmp_path / "elsewhere.txt"
    other.write_text("keep")
    src = tmp_path / "net.cnn"
    src.write_text(MNIST)
    (tmp_path / "mnist.dot").unlink()
    (tmp_path / "mnist.dot").symlink_to(other)
    assert cli("draw", str(src), "-f", "dot")[0] == 0
    assert other.read_text() == "keep" and not os.path.islink(tmp_path / "mnist.dot")


@needs_dot
def test_draw_to_stdout(tmp_path):
    proc = run_cnndsl("draw", str(EXAMPLES / "mnist.cnn"), "-o", "-", cwd=tmp_path)
    assert proc.returncode == 0 and "<svg" in proc.stdout[:300] and proc.stdout.endswith(
        "</svg>\n")
    proc = run_cnndsl("draw", str(EXAMPLES / "mnist.cnn"), "-o", "-", "-f", "dot",
                      cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.startswith("digraph mnist {")
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- help


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_h_is_help_everywhere(cli, command):
    args = [command] if command else []
    short, long = cli(*args, "-h"), cli(*args, "--help")
    assert short == long and short[0] == 0 and short[1].startswith("Usage: cnndsl")


@pytest.mark.parametrize("command", COMMANDS)
def test_every_argument_says_what_it_is(cli, command):
    _, out, _ = cli(command, "--help")
    if "Arguments:" not in out:
        return  # lsp takes none
    arguments = out.split("Arguments:")[1].split("Options:")[0].strip().splitlines()
    for line in arguments:
        if line.startswith("  ") and not line.startswith("   "):  # FILE  text...
            _, _, text = line.strip().partition("  ")
            assert text.strip() and not text.strip().startswith("["), (command, line)


def test_completion_is_offered(cli):
    _, out, _ = cli("--help")
    assert "--install-completion" in out and "--show-completion" in out
    proc = run_cnndsl(env={"_CNNDSL_COMPLETE": "complete_bash", "COMP_WORDS": "cnndsl ch",
                           "COMP_CWORD": "1"})
    assert proc.returncode == 0 and proc.stdout.split() == ["check"]


def test_a_mistyped_command_gets_one_suggestion():
    proc = run_cnndsl("chek", "x.cnn")
    assert proc.returncode == 2
    assert proc.stderr.count("Did you mean 'check'?") == 1 and proc.stderr.count("\n") == 1


# ----------------------------------------------------------------------------- check --depth


def test_check_depth_usage(cli):
    path = str(EXAMPLES / "mnist.cnn")
    assert cli("check", path, "--depth", "0") == (2, "", "error: --depth must be 1 or more\n")
    code, out, err = cli("check", path, "--depth", "1", "--json")
    assert (code, out) == (2, "") and "--json always has every layer" in err
    assert cli("check", path, "--depth", "1")[1] == cli("check", path)[1]  # no blocks to fold
