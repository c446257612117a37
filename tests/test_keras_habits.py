"""Issue 17: what Keras users write by habit. The diagnostics themselves are golden files
(tests/golden/keras_*.cnn); here, the docs' "Coming from Keras" tables are checked."""

from __future__ import annotations

import re

import pytest
from conftest import ROOT

from cnndsl.analysis.pipeline import analyse
from cnndsl.common.diagnostics import did_you_mean
from cnndsl.lang.parser import parse

SECTION = (ROOT / "docs" / "language.md").read_text().split("## Coming from Keras")[1]
ROWS = re.findall(r"^\| `([^`]+)` \| `([^`]+)` \|$", SECTION.split("## ")[0], re.M)
CALLS = [(keras, cnn) for keras, cnn in ROWS if "(" in keras.split()[0]]
SPELLINGS = [(keras, cnn) for keras, cnn in ROWS if "(" not in keras.split()[0]]


def check(body: str, shape: str = "28x28x1"):
    head = "" if body.startswith("input") else f"input {shape}; "
    return analyse(f"network n {{ {head}{body} }}")


def errors(body: str, shape: str = "28x28x1") -> list[str]:
    return [d.message for d in check(body, shape).diagnostics if d.severity == "error"]


def test_tables_are_there():
    assert len(CALLS) >= 10 and len(SPELLINGS) == 4


@pytest.mark.parametrize("keras, cnn", CALLS)
def test_each_keras_call_is_refused_with_its_cnn_line(keras, cnn):
    result = check(keras, "28x28x3")
    hints = [d.hint for d in result.diagnostics if d.severity == "error"]
    assert f"`{cnn}`" in " ".join(h or "" for h in hints)
    assert not errors(cnn, "28x28x3")  # and the line given is valid


@pytest.mark.parametrize("keras_like, cnn", SPELLINGS)
def test_both_spellings_are_accepted_and_equal(keras_like, cnn):
    a, b = check(keras_like), check(cnn)
    assert not errors(keras_like) and not errors(cnn)
    assert [(x.node.args, x.shape, x.params) for x in a.analysis.layers] == \
        [(x.node.args, x.shape, x.params) for x in b.analysis.layers]


def test_keywords_do_not_take_names_that_start_with_them():
    program, diagnostics = parse("network n { input 4x4x1; conv notes + iffy 1 }")
    assert not diagnostics and program is not None


@pytest.mark.parametrize("typed, meant", [
    ("reLU", "relu"), ("ReLU", "relu"), ("MaxPool", "maxpool"), ("max_pool", "maxpool"),
    ("Max_Pool", "maxpool"), ("GlobalAvgPool", "globalavgpool"), ("Batch_Norm", "batchnorm"),
    ("maxpol", "maxpool"), ("BatchNorm", "batchnorm"), ("use_Bias", "use_bias"),
    ("usebias", "use_bias"), ("DWConv", "dwconv"),
])
def test_did_you_mean_ignores_case_and_underscores(typed, meant):
    choices = ["relu", "elu", "maxpool", "avgpool", "globalavgpool", "globalmaxpool",
               "batchnorm", "use_bias", "dwconv", "conv", "sepconv"]
    assert did_you_mean(typed, choices) == f"did you mean `{meant}`?"
    assert did_you_mean("qqqq", choices) is None


def test_train_settings_are_suggested_the_same_way():
    result = analyse("network n { input 4x4x1; flatten; dense 2 }\ntrain { Epochs 3 }")
    assert any(d.hint == "did you mean `epochs`?" for d in result.diagnostics)
