"""Language features end to end: names and scopes, blocks, repeat, and `in` shape reads."""

from __future__ import annotations

from cnndsl.analysis.pipeline import analyse


def layers(text: str) -> dict[str, tuple]:
    result = analyse(text)
    assert result.ok, result.diagnostics
    return {layer.node.name: layer.shape for layer in result.analysis.layers}


def errors(text: str) -> list[str]:
    return [d.message for d in analyse(text).diagnostics if d.severity == "error"]


def test_generated_names_count_per_op_and_scope():
    names = list(layers("""
block pair(c) { conv c 3x3 same; conv c 1x1 }
network n { input 8x8x3; conv 4 1x1; pair(8); pair(8) as second; relu }
"""))
    assert names == ["input", "conv_1", "pair_1/conv_1", "pair_1/conv_2", "second/conv_1",
                     "second/conv_2", "relu_1"]


def test_repeat_scopes_each_repetition():
    names = list(layers("network n { input 8x8x3; repeat 2 { conv 4 1x1; relu } }"))
    assert names == ["input", "repeat_1/conv_1", "repeat_1/relu_1", "repeat_2/conv_1",
                     "repeat_2/relu_1"]
    aliased = list(layers("network n { input 8x8x3; repeat 2 as stage { relu } }"))
    assert aliased[1:] == ["stage_1/relu_1", "stage_2/relu_1"]
    calls = list(layers("block b() { relu }\nnetwork n { input 8x8x3; repeat 3 { b() } }"))
    assert calls[1:] == ["b_1/relu_1", "b_2/relu_1", "b_3/relu_1"]


def test_block_defaults_keywords_and_expressions():
    shapes = layers("""
block conv_pair(c, k=3, mult=2) { conv c*mult k same; conv c // 2 + 1 1x1 }
network n { input 8x8x3; conv_pair(8, mult=3) }
""")
    assert shapes["conv_pair_1/conv_1"] == (8, 8, 24)
    assert shapes["conv_pair_1/conv_2"] == (8, 8, 5)


def test_words_pass_through_block_parameters():
    shapes = layers("""
block c(filters, padding=same) { conv filters 3x3 padding }
network n { input 8x8x3; c(4); c(4, valid) }
""")
    assert shapes["c_1/conv_1"] == (8, 8, 4) and shapes["c_2/conv_1"] == (6, 6, 4)


def test_in_reads_the_block_input_shape():
    shapes = layers("""
block half() { conv in.c // 2 1x1; maxpool in.h // 4 }
block widen(c=in.c * 2) { conv c 1x1 }
network n { input 16x16x12; half(); widen(); conv in.w 1x1 }
""")
    assert shapes["half_1/conv_1"] == (16, 16, 6)
    assert shapes["half_1/maxpool_1"] == (4, 4, 6)  # in.h is the block's input: 16
    assert shapes["widen_1/conv_1"] == (4, 4, 12)
    assert shapes["conv_1"] == (4, 4, 16)  # at the top level, `in` is the network input


def test_in_passed_down_keeps_the_callers_meaning():
    shapes = layers("""
block proj(c) { conv c 1x1 }
block outer() { conv 3 1x1; proj(in.c) }
network n { input 4x4x7; outer() }
""")
    assert shapes["outer_1/proj_1/conv_1"] == (4, 4, 7)


def test_in_errors():
    assert errors("network n { input 4x4x3; repeat in.c { relu } }") == [
        "a repeat count cannot depend on a tensor's shape"]
    assert errors("network n { input 4x4x3; conv in.x 1x1 }") == ["a tensor has no `x`"]
    assert errors("network n { input 4x4x3; conv in 1x1 }") == [
        "`in` is a tensor; use its `in.h`, `in.w` or `in.c`"]
    assert errors("block b() { conv in.h 1x1 }\nnetwork n { input 4x4x3; flatten; b() }") == [
        "`in` has no height and width: it is 48"]
    assert errors("block b(in) { relu }\nnetwork n { input 4x4x3; b(1) }") == [
        "a parameter cannot be called `in`"]
    assert errors("block b() { conv in.c - 3 1x1 }\nnetwork n { input 4x4x3; b() }") == [
        "`filters` must be positive, not 0"]


def test_in_after_an_error_stays_silent():
    assert errors("network n { input 4x4x3; conv 8 9x9; conv in.c 1x1; conv 2 1x1 }") == [
        "the 9-wide window does not fit in the input's height (4)"]
