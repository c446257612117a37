"""Syntax highlighting: the TextMate grammar run by VS Code's own engine (vscode-textmate and
vscode-oniguruma under node, `npm ci` in editors/), and the Pygments lexer."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from importlib import import_module
from pathlib import Path

import pytest
from conftest import EXAMPLES, ROOT
from pygments.token import Error

from cnndsl.analysis.ops import OPS
from cnndsl.analysis.ops.activations import ACTIVATIONS
from cnndsl.editor.pygments import CnnLexer
from cnndsl.lang.parser import parse

EDITORS = ROOT / "editors"
GRAMMAR = EDITORS / "cnn.tmLanguage.json"
GOLDEN = sorted((ROOT / "tests" / "golden").glob("*.cnn"))
FILES = sorted(EXAMPLES.glob("*.cnn")) + [p for p in GOLDEN if parse(p.read_text())[0]]
SAMPLE = """\
block cell(x, c=4) {  # a comment with conv 3x3
    conv c*2 (1, 7) stride=2 same relu as first
    add { | identity | @first; dropout 0.5 }
    if in.c > 2 and not c == 1 { repeat 2 { relu6 } } else { sepconv max(8, c // 4) 3 }
}
network net { input 28x28x1; cell(@enc1, 44) as enc1; dense 10 softmax }
"""


@pytest.fixture(scope="module")
def tokens(tmp_path_factory) -> dict[str, list[list[dict]]]:
    """Every example, golden file and SAMPLE as VS Code tokenizes them."""
    if shutil.which("node") is None:
        pytest.skip("node is not installed (CI installs it: .ci/run)")
    assert (EDITORS / "node_modules" / "vscode-textmate").is_dir(), \
        "run `npm ci` in editors/ (as .ci/run does)"
    sample = tmp_path_factory.mktemp("tm") / "sample.cnn"
    sample.write_text(SAMPLE)
    run = subprocess.run(["node", str(EDITORS / "tokenize.mjs"), str(sample),
                          *map(str, FILES)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    return {Path(k).name: v for k, v in json.loads(run.stdout).items()}


def _scoped(lines: list[list[dict]]) -> list[tuple[str, str]]:
    """(text, innermost scope) of every token that is not blank."""
    return [(t["text"].strip(), t["scopes"][-1]) for line in lines for t in line
            if t["text"].strip()]


def test_grammar_knows_every_op_and_activation() -> None:
    text = GRAMMAR.read_text()
    ops = re.search(r"\\\\b\(([a-z0-9_|]+)\)\\\\b\(\?!", text)
    assert ops is not None and set(ops.group(1).split("|")) == set(OPS)
    acts = re.search(r'\\\\b\(([a-z0-9_|]+)\)\\\\b",\s*"name": "support.constant.activation', text)
    assert acts is not None and set(acts.group(1).split("|")) == set(ACTIVATIONS)


def test_sample_scopes(tokens) -> None:
    got = _scoped(tokens["sample.cnn"])
    for expected in [
        ("block", "keyword.other.block.cnn"), ("cell", "entity.name.function.block.cnn"),
        ("# a comment with conv 3x3", "comment.line.number-sign.cnn"),
        ("conv", "support.function.op.cnn"), ("(1, 7)", None), ("stride", "variable.parameter"
                                                                ".keyword.cnn"),
        ("same", "support.constant.padding.cnn"), ("relu", "support.constant.activation.cnn"),
        ("first", "entity.name.tag.layer.cnn"), ("identity", "support.function.op.cnn"),
        ("@first", "variable.other.reference.cnn"), ("dropout", "support.function.op.cnn"),
        ("0.5", "constant.numeric.cnn"), ("in", "variable.language.input.cnn"),
        ("and", "keyword.operator.logical.cnn"), ("==", "keyword.operator.comparison.cnn"),
        ("repeat", "keyword.control.cnn"), ("relu6", "support.function.op.cnn"),
        ("else", "keyword.control.cnn"), ("max", "support.function.builtin.cnn"),
        ("//", "keyword.operator.arithmetic.cnn"), ("net", "entity.name.type.network.cnn"),
        ("28x28x1", "constant.numeric.size.cnn"), ("@enc1", "variable.other.reference.cnn"),
        ("|", "punctuation.separator.path.cnn"), ("softmax", "support.constant.activation.cnn"),
    ]:
        if expected[1] is not None:
            assert expected in got, expected
    # `cell(` is a call, `input` an op after `{`, `dense` an op after `;`
    assert ("cell", "entity.name.function.call.cnn") in got
    assert ("input", "support.function.op.cnn") in got
    assert ("dense", "support.function.op.cnn") in got


def test_every_file_fully_scoped(tokens) -> None:
    """Each statement's op is an op, sizes are sizes, comments are comments, and no
    character is left without a scope of its own."""
    for path in FILES:
        for line, toks in zip(path.read_text().split("\n"), tokens[path.name], strict=True):
            for t in toks:
                assert not t["text"].strip() or len(t["scopes"]) > 1, (path.name, line, t)
            first = re.match(r"\s*\|?\s*([a-z_0-9]+)\b(?!\()", line)
            if first and first.group(1) in OPS and "=" not in line[first.end():first.end() + 2]:
                scoped = _scoped([toks])
                assert scoped[0 if not line.strip().startswith("|") else 1] == (
                    first.group(1), "support.function.op.cnn"), (path.name, line)
            comment = re.search(r"#.*$", line)
            if comment and '"' not in line:
                assert (comment.group().strip(), "comment.line.number-sign.cnn") in \
                    _scoped([toks]), (path.name, line)


def test_vscode_extension_uses_the_grammar() -> None:
    package = json.loads((EDITORS / "vscode" / "package.json").read_text())
    [grammar] = package["contributes"]["grammars"]
    assert (EDITORS / "vscode" / grammar["path"]).resolve() == GRAMMAR.resolve()
    assert json.loads(GRAMMAR.read_text())["scopeName"] == grammar["scopeName"]
    assert package["contributes"]["languages"][0]["extensions"] == [".cnn"]
    assert "lsp" in package["contributes"]["configuration"]["properties"][
        "cnndsl.server.args"]["default"]
    assert (EDITORS / "vscode" / package["main"]).is_file()
    if shutil.which("node"):
        check = subprocess.run(["node", "--check", str(EDITORS / "vscode" / package["main"])],
                               capture_output=True, text=True, timeout=60)
        assert check.returncode == 0, check.stderr


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_pygments_no_error_tokens(path: Path) -> None:
    text = path.read_text()
    tokens = list(CnnLexer().get_tokens(text))
    assert not [t for t in tokens if t[0] in Error]
    assert "".join(v for _, v in tokens).rstrip("\n") == text.rstrip("\n")


def test_pygments_entry_point_and_scopes() -> None:
    entry = re.search(r'\[project\.entry-points\."pygments\.lexers"\]\ncnn = "(.*)"',
                      (ROOT / "pyproject.toml").read_text())
    assert entry is not None
    module, _, name = entry.group(1).partition(":")
    assert getattr(import_module(module), name) is CnnLexer
    kinds = {v: str(t) for t, v in CnnLexer().get_tokens(SAMPLE) if v.strip()}
    assert kinds["conv"] == "Token.Name.Builtin" and kinds["@enc1"] == "Token.Name.Variable"
    assert kinds["stride"] == "Token.Name.Attribute"
    assert kinds["3"] == "Token.Literal.Number.Integer"
    assert kinds["# a comment with conv 3x3"] == "Token.Comment.Single"
    assert kinds["relu"] == "Token.Name.Constant" and kinds["cell"] == "Token.Name.Function"
