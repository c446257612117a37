"""Issue 11, part 2: `min`, `max`, `round`, `ceil`, `floor`, comparisons, `and`/`or`/`not`,
`if ... else ...` blocks (on parameters and on `in.c`), `repeat 0`; and `build` writing
them faithfully (a Python `if` in a block's function), compared layer by layer with check."""

from __future__ import annotations

import math
import random
import subprocess
import sys

import pytest
from test_build import assert_matches_check, build, keras, load_module  # noqa: F401

from cnndsl.analysis.pipeline import analyse
from cnndsl.backends.codegen import generate


def layers(text: str) -> dict[str, tuple]:
    result = analyse(text)
    assert not result.diagnostics, [d.message for d in result.diagnostics]
    return {layer.node.name: layer.shape for layer in result.analysis.layers}


def errors(text: str) -> list[str]:
    return [d.message for d in analyse(text).diagnostics]


def filters(expr: str, channels: int = 16) -> int:
    """The filter count `check` gives `conv EXPR 1x1` on an input with `channels`."""
    shapes = layers(f"network n {{ input 8x8x{channels}; conv {expr} 1x1 }}")
    return shapes["conv_1"][-1]


@pytest.mark.parametrize("expr, python", [
    ("max(8, in.c // 4)", lambda c: max(8, c // 4)),
    ("min(in.c, 24, 40)", lambda c: min(c, 24, 40)),
    ("round(in.c * 2.5 / 4)", lambda c: round(c * 2.5 / 4)),  # banker's rounding: 10.0, 12.5
    ("round(in.c / 32 + 2)", lambda c: round(c / 32 + 2)),
    ("ceil(in.c / 5)", lambda c: math.ceil(c / 5)),
    ("floor(in.c / 5)", lambda c: math.floor(c / 5)),
    ("max(8, round(in.c * 0.75 / 8) * 8)", lambda c: max(8, round(c * 0.75 / 8) * 8)),
])
@pytest.mark.parametrize("channels", [16, 20, 48])
def test_functions_are_pythons(expr, python, channels):
    assert filters(expr, channels) == python(channels)


def test_round_is_bankers():
    assert [filters(f"round({x})") for x in ("2.5", "3.5", "4.5")] == [2, 4, 4]


@pytest.mark.parametrize("cond, expected", [
    ("1 < 2", True), ("2 <= 2", True), ("3 > 4", False), ("4 >= 5", False),
    ("3 == 3.0", True), ("3 != 3", False), ("same == same", True), ("same != valid", True),
    ("(1, 2) == (1, 2)", True), ("not 1 == 1", False), ("1 == 1 and 2 == 3", False),
    ("1 == 2 or 2 == 2", True), ("not (1 == 2 or 2 == 3) and true", True),
    ("1 == 2 and 1 // 0 == 1", False),  # `and` does not read what cannot matter
    ("1 == 1 or 1 // 0 == 1", True),
])
def test_conditions_choose_a_branch(cond, expected):
    eval_cond = eval(cond.replace("same", "'same'").replace("valid", "'valid'")
                     .replace("true", "True").replace(" // 0", " // 1"))
    assert eval_cond == expected  # Python agrees
    shapes = layers(f"network n {{ input 8x8x1; if {cond} {{ conv 2 1 }} else {{ conv 3 1 }} }}")
    assert shapes["conv_1"][-1] == (2 if expected else 3)


def test_comparison_results_are_flag_values():
    shapes = layers("network n { input 8x8x1; conv 2 1 use_bias=(in.c == 1) }")
    assert analyse("network n { input 8x8x1; conv 2 1 use_bias=(in.c == 1) }"
                   ).analysis.layers[1].trainable == 4
    assert shapes["conv_1"] == (8, 8, 2)


def test_else_if_chain_and_names_continue_per_op():
    source = """
block pick(n) {
  if n == 1 { conv 1 1 } else if n == 2 { conv 2 1; conv 2 1 } else { relu }
  conv 9 1
}
network net { input 4x4x1; pick(1) as a; pick(2) as b; pick(3) as c }
"""
    shapes = layers(source)
    assert [k for k in shapes if k.startswith(("a/", "b/", "c/"))] == [
        "a/conv_1", "a/conv_2", "b/conv_1", "b/conv_2", "b/conv_3", "c/relu_1", "c/conv_1"]


MOBILENET_V2_UNIT = """
block inverted(filters, stride=1, expand=6) {
  # the residual only when stride 1 and channels equal: a condition on the input's shape
  if stride == 1 and in.c == filters {
    add { | identity | body(filters, stride, expand) }
  } else {
    body(filters, stride, expand)
  }
}
block body(filters, stride, expand) {
  if expand != 1 { conv in.c * expand 1x1 same; batchnorm; relu6 }
  dwconv 3x3 stride=stride same; batchnorm; relu6
  conv filters 1x1; batchnorm
}
network net {
  input 32x32x16
  inverted(16, expand=1)
  inverted(24, 2)
  inverted(24)
  repeat 0 { inverted(24) }
  inverted(32)
  conv max(8, round(in.c * 0.75 / 8) * 8) 1x1
  if in.c > 100 { relu } else if in.c == 16 { tanh } else { sigmoid }
}
"""


def test_conditions_on_the_input_shape_are_decided_at_elaboration():
    shapes = layers(MOBILENET_V2_UNIT)
    assert "inverted_1/add_1" in shapes and "inverted_1/body_1/conv_1" in shapes
    assert "inverted_2/add_1" not in shapes  # stride 2
    assert "inverted_3/add_1" in shapes  # 24 channels in, 24 out
    assert "inverted_4/add_1" not in shapes  # 24 in, 32 out
    assert "inverted_1/body_1/batchnorm_3" not in shapes  # expand 1: no expansion conv
    assert "inverted_3/body_1/batchnorm_3" in shapes
    assert shapes["tanh_1"] == (16, 16, 16)


def test_repeat_zero_is_empty():
    shapes = layers("network n { input 4x4x1; repeat 0 { conv 2 1 }; repeat 2 { conv 3 1 } }")
    assert list(shapes) == ["input", "repeat_1/conv_1", "repeat_2/conv_1"]


def test_condition_after_an_error_stays_silent():
    assert errors("network n { input 4x4x1; conv 0 1; if in.c == 1 { relu } }") == [
        "`filters` must be positive, not 0"]


def test_keywords_are_not_names_but_longer_names_are():
    assert layers("block b(android, iffy) { conv android + iffy 1 }\n"
                  "network n { input 4x4x1; b(1, 2) }")["b_1/conv_1"][-1] == 3


def test_build_writes_python_ifs_and_matches_check(tmp_path, keras):  # noqa: F811
    code, _ = generate(MOBILENET_V2_UNIT, "net.cnn")
    assert "def inverted(" in code and "def body(" in code  # functions, not expansions
    assert "if stride == 1 and inputs.shape[-1] == filters:" in code
    assert 'name=f"{name}-conv_{(1 if expand != 1 else 0) + 1}"' in code
    model = load_module(build(tmp_path, MOBILENET_V2_UNIT)).build_model()
    assert_matches_check(keras, model, MOBILENET_V2_UNIT)


ALIASED_IN_ONE_BRANCH = """
block pick(n) {
  if n == 1 { conv 1 1 as conv_1 } else { relu }
  conv 9 1
  if n == 2 { conv 2 1 } else { conv 3 1; conv 3 1 }
  conv 4 1
}
network net { input 4x4x1; pick(1) as a; pick(2) as b }
"""


def test_build_names_after_an_alias_taken_in_one_branch(tmp_path, keras):  # noqa: F811
    """`as conv_1` in one branch shifts the numbers after it in that branch only."""
    shapes = layers(ALIASED_IN_ONE_BRANCH)
    assert [n for n in shapes if n.startswith("b/")] == ["b/relu_1", "b/conv_1", "b/conv_2",
                                                         "b/conv_3"]
    model = load_module(build(tmp_path, ALIASED_IN_ONE_BRANCH)).build_model()
    assert_matches_check(keras, model, ALIASED_IN_ONE_BRANCH)


WORD_CONDITIONS = """
block unit(act, bias, k=3) {
  if act == relu and not bias { conv 4 k same use_bias=false } else { conv 4 k same }
  if bias { batchnorm }
  activation function=act
  conv max(2, k - 1) 1
}
network net {
  input 8x8x3
  unit(relu, false)
  unit(tanh, true, 5)
  unit(relu, true, k=1)
}
"""


def test_build_conditions_on_word_parameters(tmp_path, keras):  # noqa: F811
    code, _ = generate(WORD_CONDITIONS, "net.cnn")
    assert "def unit(" in code and 'act == "relu"' in code
    model = load_module(build(tmp_path, WORD_CONDITIONS)).build_model()
    assert_matches_check(keras, model, WORD_CONDITIONS)


def random_program(rng) -> str:
    """Blocks whose `if`s read their parameters and their input's shape, called with
    different arguments: the branches taken and the names counted differ per call."""
    def stmts(depth: int) -> str:
        out = []
        for _ in range(rng.randint(1, 3)):
            kind = rng.choice(["conv", "conv", "relu", "batchnorm", "if", "if", "add", "named"])
            if kind == "if" and depth < 2:
                cond = rng.choice(["a == 1", "b > a", "in.c == a * 4", "not a < 2",
                                   "in.c > 8 and b != 2", "a == 2 or in.h == 8", "act == relu"])
                tail = rng.choice(["", f" else {{ {stmts(depth + 1)} }}",
                                   f" else if b == 1 {{ {stmts(depth + 1)} }}"])
                out.append(f"if {cond} {{ {stmts(depth + 1)} }}{tail}")
            elif kind == "add":
                out.append("add { | identity | conv in.c 1 same }")
            elif kind == "named":
                out.append(f"conv 4 1 as {rng.choice(['c', 'conv_'])}{rng.randint(1, 4)}")
            elif kind in ("relu", "batchnorm"):
                out.append(kind)
            else:
                width = rng.choice(["a * 4", "max(4, b * 2)", "round(in.c / 3) + 1", "in.c"])
                out.append(f"conv {width} 1 same")
        return "; ".join(out)

    calls = "\n  ".join(f"unit({rng.randint(1, 3)}, {rng.randint(1, 3)}, "
                        f"{rng.choice(['relu', 'tanh'])})" for _ in range(rng.randint(2, 4)))
    return (f"block unit(a, b, act) {{\n  {stmts(0)}\n  activation function=act\n}}\n"
            f"network net {{\n  input 8x8x4\n  {calls}\n}}\n")


def test_random_conditional_blocks_build_what_check_reports(tmp_path, keras):  # noqa: F811
    rng = random.Random(15)
    built = functions = elifs = 0
    while built < 12:
        source = random_program(rng)
        if analyse(source).diagnostics:
            continue  # a duplicate name, a branch that leaves 0 channels...
        code, _ = generate(source, "net.cnn")
        functions += "def unit(" in code
        elifs += "    elif " in code
        module = build(tmp_path, source, f"net{built}.cnn")
        assert_matches_check(keras, load_module(module, f"net{built}").build_model(), source)
        built += 1
    assert functions >= 4 and elifs >= 1  # most as functions with Python `if`s
    files = sorted(str(p) for p in tmp_path.glob("*.py"))
    for args in (["format", "--isolated", "--check"],
                 ["check", "--isolated", "--select", "E,F,W,I,B,UP,SIM,RUF"]):
        proc = subprocess.run([sys.executable, "-m", "ruff", *args, *files],
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_condition_on_in_before_the_input_is_an_error():
    assert errors("network n { if in.c == 1 { relu }; input 4x4x1 }")[0] == \
        "this condition reads `in` before the network's `input`"


def test_conditions_on_shapes_analyse_each_layer_once_more_at_most(monkeypatch):
    """`check` stays linear: elaboration infers the shapes it needs once each, in order."""
    from cnndsl.analysis import infer
    calls = []
    original = infer._layer
    monkeypatch.setattr(infer, "_layer", lambda node, *a: calls.append(node.id) or
                        original(node, *a))
    source = """
block unit(c) { if in.c == c and in.h > 1 { add { | identity | conv c 1 } } else { conv c 1 } }
network n { input 8x8x4; repeat 300 { unit(8) } }
"""
    result = analyse(source)
    layers_made = len(result.analysis.layers)
    assert not result.diagnostics and layers_made == 899
    assert len(calls) <= 2 * layers_made  # once while elaborating, once in `infer`


@pytest.mark.parametrize("expr, hinted", [
    ("72/16*in.c", True), ("in.c / 2", True), ("-(7 / 2) + 8", True), ("max(1, 9 / 2)", True),
    ("2.5", False), ("in.c * 1.5", False), ("floor(9 / 2) + 0.5", False),
])
def test_the_floor_division_hint_is_for_results_of_true_division(expr, hinted):
    [d] = analyse(f"network n {{ input 4x4x3; conv {expr} 1 }}").diagnostics
    assert d.message.startswith("`filters` must be a whole number")
    assert ("`//` is the integer one" in (d.hint or "")) == hinted
