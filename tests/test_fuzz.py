"""No input whatever produces a Python traceback (docs: architecture, "Diagnostics").

Hypothesis feeds random text and mutated valid programs through the whole front end and
the renderers; every diagnostic must point inside the file. Explicit tests cover the
extremes: deep nesting, huge numbers, and expansions past the layer limit.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cnndsl.analysis.elaborate import MAX_LAYERS
from cnndsl.analysis.ops import OPS
from cnndsl.analysis.pipeline import NetworkChoiceError, Result, analyse
from cnndsl.backends import report
from cnndsl.common.diagnostics import ERROR, Renderer, Span
from cnndsl.lang.parser import parse

ROOT = Path(__file__).resolve().parent.parent
FILES = sorted([*(ROOT / "examples").glob("*.cnn"), *(ROOT / "tests" / "golden").glob("*.cnn")])

# A few programs that use every construct: blocks with defaults and keywords, nested
# paths, repeat, expressions, tuples, strings and a train section.
BUILT = [
    """\
block unit(c, k=3, s=1) {
  add {
    | conv c 1x1 stride=s; batchnorm
    | conv c//2 k same stride=s use_bias=false; relu
      conv c (k, k) same dilation=1; batchnorm
  }
  relu
}
network net {
  input 32x32x3
  rescale 1/255 offset=-1.0
  zeropad (1, 2)
  unit(16) as first
  repeat 2 { unit(c=16, k=3) }
  concat { | maxpool 2x2 same | avgpool 3 stride=2 same | sepconv 8 3x3 same stride=2 }
  dwconv 3x3 multiplier=2 pad=1 swish
  multiply { | identity | globalavgpool keepdims=true; dense 48 sigmoid }
  flatten; dropout 0.5
  reshape (-1, 4)
  dense 10 softmax as output
}
train { optimizer adam; epochs 2; batch 32; loss "categorical_crossentropy" }
""",
    """\
network small { input (8, 8, 1); conv 4 3 relu; maxpool; flatten; dense 2 }
""",
    """\
block b(x) { conv x 3x3 same; activation relu }
network n {
  input 16x16x4
  repeat 3 { b(4 * 2 + 1 - 1) }
  globalmaxpool
}
""",
    """\
block unit(c, s=1, act=relu) {
  if s == 1 and in.c == c { add { | identity | conv c 3x3 same } } else if not s > 2 {
    conv max(8, round(c * 0.75 / 8) * 8) 3x3 stride=s same
  } else { conv ceil(c / 3) 1; conv floor(in.c / 2) 1 }
  if act == relu or c < 4 { activation function=act }
  repeat 0 { relu }
}
network n { input 16x16x8; unit(8); unit(16, 2, tanh); unit(min(4, 8), 3) }
""",
]
SEEDS = [*(p.read_text() for p in FILES), *BUILT]

# Words, numbers and sizes, `//`, runs of blanks, then any single character.
TOKEN = re.compile(r"\s+|[A-Za-z_][A-Za-z0-9_]*|[0-9][0-9xXeE.+-]*|//|.", re.S)
NUMBERS = ["0", "-1", "-0", "1", "2.5", "1e400", "-1e400", "0.0", str(10**30), str(2**63 - 1),
           str(2**63), str(-(2**63)), "1000000000000", "9" * 5000, "0" * 300 + "7",
           f"{10**30}x{10**30}x1", "0x0", "1x1x1x1x1x1x1x1x1x1", "1e-400", ".5", "3x3x"]
WORDS = [*sorted(OPS)[:40], "repeat", "block", "network", "train", "as", "same", "valid", "relu",
         "true", "false", "stride", "pad", "input", "identity", "|", "{", "}", "(", ")", ",",
         ";", "\n", "=", "#", '"', "\\\n", "x", ".", "-", "*", "//", "/", "+", "\t", "\r",
         "if", "else", "and", "or", "not", "==", "!=", "<", ">=", "max(", "round(", "in.c"]
ODD_TEXT = st.text(alphabet=st.sampled_from(
    [*"{}()|,;=+-*/#.\"\\x0123456789 \n\t\r\f\vabcrelu_", "\u2028", "é", "\x00", "\ufeff"]),
    max_size=30)

SETTINGS = dict(deadline=None, suppress_health_check=list(HealthCheck))


# ----------------------------------------------------------------------------- the check


def _within(span: Span, lines: list[str], what: str) -> None:
    """A span starts and ends inside the file (a column may sit just past a line's end)."""
    assert 1 <= span.line <= span.end_line <= len(lines), (what, span)
    assert 1 <= span.column <= len(lines[span.line - 1]) + 1, (what, span)
    assert 1 <= span.end_column <= len(lines[span.end_line - 1]) + 2, (what, span)
    assert (span.line, span.column) <= (span.end_line, span.end_column), (what, span)


def check_robust(text: str) -> Result:
    """Analyse and render `text`; fail on anything a user would see as a crash."""
    try:
        result = analyse(text)
    except NetworkChoiceError:  # several networks: check the first, as `--network` would
        program, _ = parse(text)
        assert program is not None and len(program.networks) > 1
        result = analyse(text, program.networks[0].name.id)
    lines = text.split("\n")
    for d in result.diagnostics:
        assert d.span is not None, d
        _within(d.span, lines, d.message)
        for label in d.labels:
            _within(label.span, lines, label.message)
        assert d.message and "Tree(" not in d.message and "Token(" not in d.message, d
    for colour in (False, True):
        rendered = Renderer("fuzz.cnn", text, colour).render_all(result.diagnostics)
        assert len(rendered.splitlines()) >= len(result.diagnostics)
    json.dumps(report.to_json(result, "fuzz.cnn"))
    if result.ok and result.analysis is not None:  # as `check` does: no table after errors
        report.table(result.analysis, "fuzz.cnn", colour=True)
    return result


# ----------------------------------------------------------------------------- mutations


def _tokens(text: str) -> list[str]:
    return TOKEN.findall(text)


def _pick(draw, items: list) -> int:
    return draw(st.integers(0, max(0, len(items) - 1)))


def _on_tokens(edit):
    def mutate(draw, text: str) -> str:
        tokens = _tokens(text) or [""]
        edit(draw, tokens)
        return "".join(tokens)
    return mutate


def _on_lines(edit):
    def mutate(draw, text: str) -> str:
        lines = text.split("\n")
        edit(draw, lines)
        return "\n".join(lines)
    return mutate


def _delete(draw, items: list) -> None:
    del items[_pick(draw, items)]


def _duplicate(draw, items: list) -> None:
    i = _pick(draw, items)
    items.insert(i, items[i])


def _swap(draw, items: list) -> None:
    i, j = _pick(draw, items), _pick(draw, items)
    items[i], items[j] = items[j], items[i]


def _replace_number(draw, tokens: list) -> None:
    numeric = [i for i, t in enumerate(tokens) if t[:1].isdigit()] or [_pick(draw, tokens)]
    tokens[draw(st.sampled_from(numeric))] = draw(st.sampled_from(NUMBERS))


def _insert_word(draw, tokens: list) -> None:
    tokens.insert(_pick(draw, tokens), f" {draw(st.sampled_from(WORDS + NUMBERS))} ")


def _insert_text(draw, text: str) -> str:
    at = draw(st.integers(0, len(text)))
    return text[:at] + draw(ODD_TEXT) + text[at:]


def _nest(draw, text: str) -> str:
    """Wrap a spot in deep nesting, balanced or not."""
    depth = draw(st.sampled_from([2, 50, 400, 3000]))
    opener, closer = draw(st.sampled_from(
        [("(", ")"), ("-(", ")"), ("1+(", ")"), ("concat { | ", " }"), ("repeat 2 { ", " }"),
         ("add { | identity | ", " }"), ("{", "}"), ("((", ""), ("", "}")]))
    tokens = _tokens(text) or [""]
    at = _pick(draw, tokens)
    tokens.insert(at, opener * depth + tokens[at] + closer * depth)
    del tokens[at + 1]
    return "".join(tokens)


MUTATIONS = [
    _on_tokens(_delete), _on_tokens(_duplicate), _on_tokens(_swap), _on_tokens(_replace_number),
    _on_tokens(_insert_word), _on_lines(_delete), _on_lines(_duplicate), _on_lines(_swap),
    _insert_text, _nest,
]


@st.composite
def mutated_programs(draw) -> str:
    text = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 5))):
        text = draw(st.sampled_from(MUTATIONS))(draw, text)
    return text


@st.composite
def token_soup(draw) -> str:
    """Random sequences of the language's own words: gets further than random characters."""
    words = draw(st.lists(st.sampled_from(WORDS + NUMBERS[:12]), max_size=40))
    return "network n {\n input 28x28x1\n" + " ".join(words) + "\n}\n"


# Values for each kind of argument (cnndsl.analysis.ops.base.ArgSpec), mostly valid.
VALUES = {
    "count": ["1", "8", "16", "3", "c", "c * 2", "0", "2.5", "1000000000000", "max(c, 2)",
              "round(c / 3)", "ceil(in.c / 2)", "min(in.c, 0)", "floor(1 / 0)"],
    "size2": ["3x3", "1", "2", "(1, 2)", "5x5", "3", "k", "1x7", "0x3", str(2**62)],
    "pad": ["1", "(1, 2)", "((0, 1), (2, 3))", "0", "2"],
    "shape": ["4x4x1", "(-1,)", "(2, -1)", "(-1, 2, 2)", "8", "0x2"],
    "rate": ["0.5", "0", "0.1", "1.5"],
    "float": ["0.5", "1e-3", "-1", "1/255"],
    "bool": ["true", "false", "maybe"],
    "activation": ["relu", "softmax", "nope"],
    "padding": ["same", "valid"],
    "int": ["-1", "0", "1", "2", "5"],
    "floats": ["0.5", "(1, 2, 3)", "(0.5,)", "-1", "(1, x)"],
    "pair": ["0", "1", "(0, 1)", "-1", "(1, 2, 3)"],
    "choice": ["nearest", "bilinear", "bicubic", "cubic", "1"],
}
ODD_VALUES = ["1 / 0", '"text"', "(1, 2, 3)", "x", "-1", str(2**63)]


@st.composite
def statements(draw, depth: int = 0) -> str:
    """One statement built from real op names, argument names and values: gets past the
    parser into elaboration and shape inference far more often than mutations do."""
    op = draw(st.sampled_from([*OPS, "repeat", "unit", "unit()", "unit(4)", "unit(k=3)", "if"]))
    if op == "if":
        cond = draw(st.sampled_from(["c == 2", "in.c > 3 and k != 1", "not in.h < 4", "c",
                                     "same == valid or true", "relu < 1", "in.c // 0 == 1"]))
        branches = [" { " + "; ".join(draw(st.lists(statements(depth + 1), max_size=2))) + " }"
                    for _ in range(draw(st.integers(1, 2)) if depth < 3 else 0)]
        return "if " + cond + " else".join(branches or [" { }"])
    spec = OPS.get(op)
    parts = [op]
    if spec is not None:
        for arg in spec.positional:
            if draw(st.integers(0, 7)):
                parts.append(draw(st.sampled_from(VALUES[arg.kind])))
        for arg in draw(st.lists(st.sampled_from(spec.args), max_size=2)) if spec.args else ():
            parts.append(f"{arg.name}={draw(st.sampled_from(VALUES[arg.kind]))}")
        if spec.flags and draw(st.booleans()):
            parts.append(draw(st.sampled_from(["same", "valid", "relu", "softmax"])))
    elif op == "repeat":
        parts.append(draw(st.sampled_from(["1", "2", "3", "0", "c"])))
    if draw(st.integers(0, 9)) == 0:
        parts.insert(draw(st.integers(1, len(parts))), draw(st.sampled_from(ODD_VALUES)))
    if draw(st.integers(0, 5)) == 0:
        parts.append(f"as {draw(st.sampled_from(['a', 'b', 'output']))}")
    merge = op in ("concat", "add", "multiply")
    if depth < 3 and (merge or op == "repeat" or draw(st.integers(0, 19)) == 0):
        if op == "repeat" or (not merge and draw(st.booleans())):
            parts.append("{ " + "; ".join(draw(st.lists(statements(depth + 1), max_size=3)))
                         + " }")
        else:
            paths = draw(st.lists(st.lists(statements(depth + 1), min_size=0, max_size=3),
                                  min_size=1, max_size=3))
            parts.append("{ " + " ".join("| " + "; ".join(path) for path in paths) + " }")
    return " ".join(parts)


@st.composite
def programs(draw) -> str:
    shape = draw(st.sampled_from(["28x28x1", "8x8x3", "1x1x1", "5x7x2", "(10,)", "(4, 6)",
                                  "32x32x64", "3x3x3x3"]))
    block = "block unit(c=2, k=1) { " + "; ".join(draw(st.lists(statements(1), max_size=3))) + " }"
    body = draw(st.lists(statements(), min_size=1, max_size=8))
    return block + "\nnetwork n {\n  input " + shape + "\n  " + "\n  ".join(body) + "\n}\n"


# ----------------------------------------------------------------------------- fuzz tests


@settings(max_examples=40, **SETTINGS)
@given(st.text(max_size=200))
def test_random_text(text: str) -> None:
    check_robust(text)


@settings(max_examples=20, **SETTINGS)
@given(token_soup())
def test_token_soup(text: str) -> None:
    check_robust(text)


@settings(max_examples=60, **SETTINGS)
@given(programs())
def test_generated_programs(text: str) -> None:
    check_robust(text)


@settings(max_examples=80, **SETTINGS)
@given(mutated_programs())
def test_mutated_programs(text: str) -> None:
    check_robust(text)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_seed_files(path: Path) -> None:
    check_robust(path.read_text())


# ----------------------------------------------------------------------------- extremes


def _net(body: str, shape: str = "28x28x1") -> str:
    return f"network n {{\n  input {shape}\n  {body}\n}}\n"


def test_deeply_nested_braces() -> None:
    deep = _net("concat { | " * 2000 + "relu" + " }" * 2000)
    result = check_robust(deep)
    assert not result.ok
    [d] = result.diagnostics
    assert "nest" in d.message


DEEP = {
    "braces": "{" * 5000, "closing": "}" * 5000, "parens": "(" * 5000,
    "open_parens": "network n { input 28x28x1\n conv " + "(" * 5000,
    "open_concat": _net("concat { | " * 5000), "bars": _net("| " * 5000),
    "repeats": _net("repeat 2 { " * 2000 + "relu" + " }" * 2000),
}


@pytest.mark.parametrize("name", DEEP)
def test_deep_unbalanced_input(name: str) -> None:
    result = check_robust(DEEP[name])
    assert not result.ok


def test_deeply_parenthesised_expression() -> None:
    result = check_robust(_net("flatten; dense " + "(" * 5000 + "10" + ")" * 5000))
    assert result.ok, result.diagnostics
    assert result.analysis.output_shape == (10,)


ARITHMETIC = {f"{kind}_{n}": (expr, value) for n in (200, 5000) for kind, expr, value in [
    ("negations", "-(" * n + "10" + ")" * n, 10),
    ("right_sums", "(1 + " * n + "9" + ")" * n, n + 9),
    ("left_sums", "1" + " + 1" * n, n + 1),
]}


@pytest.mark.parametrize("name", ARITHMETIC)
def test_deep_arithmetic(name: str) -> None:
    """Too deep to analyse is a diagnostic; 200 deep is the exact value."""
    expr, value = ARITHMETIC[name]
    result = check_robust(_net(f"flatten; dense {expr}"))
    if result.ok or name.endswith("_200"):
        assert result.ok, result.diagnostics
        assert result.analysis.output_shape == (value,)
    else:
        assert any("nest" in d.message for d in result.diagnostics), result.diagnostics


def test_huge_dense_is_exact() -> None:
    units = 1000000000000
    result = check_robust(_net(f"flatten\n  dense {units}"))
    assert result.ok, result.diagnostics
    layers = result.analysis.layers
    inputs = layers[-2].shape[-1]
    assert inputs == 28 * 28
    assert layers[-1].shape == (units,)
    assert layers[-1].params == units * inputs + units
    assert layers[-1].macs == units * inputs
    assert result.analysis.totals.params == units * inputs + units
    assert f"{units * inputs + units:,}" in report.table(result.analysis, "huge.cnn")


@pytest.mark.parametrize("body", [
    str(10**30), "9" * 5000, "1e400", f"{2**62} * 4", f"({2**62} + {2**62}) // 1", "2.0 ** 2",
], ids=lambda body: body[:24])
def test_numbers_too_large_are_diagnostics(body: str) -> None:
    result = check_robust(_net(f"flatten; dense {body}"))
    assert not result.ok


def test_tensors_too_large_are_diagnostics() -> None:
    dims = ", ".join([str(2**62)] * 40)
    result = check_robust(_net("flatten; dense 2", shape=f"({dims})"))
    assert not result.ok
    assert any("2**63" in d.message for d in result.diagnostics)


@pytest.mark.parametrize("body", [
    "repeat 1000 { repeat 1000 { relu } }",
    f"repeat {10**18} {{ identity }}",
    "big()",
], ids=["nested_repeats", "huge_count", "in_a_block"])
def test_expansion_past_the_layer_limit(body: str) -> None:
    text = "block big() { repeat 1000 { repeat 1000 { relu } } }\n" + _net(body)
    start = time.perf_counter()
    result = check_robust(text)
    elapsed = time.perf_counter() - start
    errors = [d for d in result.diagnostics if d.severity == ERROR]
    assert any(f"{MAX_LAYERS:,} layers" in d.message for d in errors), errors
    assert len(errors) == 1
    assert elapsed < 10, elapsed  # about 2 s; generous for a loaded machine


@pytest.mark.parametrize("body", ["conv 8 3x3 stirde=2", "relu; conv 8 3x3 stirde=2",
                                  "relu; unit(0)", "unit(8, 1)"])
def test_repeat_with_errors_says_them_once(body: str) -> None:
    """A repetition that fails stops the repeat: its errors would only come back."""
    text = "block unit(c) { conv c 1x1 }\n" + _net(f"repeat {10**18} {{ {body} }}")
    start = time.perf_counter()
    result = check_robust(text)
    assert len(result.diagnostics) == 1, result.diagnostics
    assert time.perf_counter() - start < 5
