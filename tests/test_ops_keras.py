"""Every op's shape rule, parameter count, MACs and warnings against real Keras layers.

Each test writes a small .cnn network, analyses it with cnndsl, then builds the same graph
in Keras from each node's `op.to_keras(args)` (so the Keras mapping is under test too),
calling the layers on symbolic `keras.Input`s. For every layer the two must agree:

- Keras refuses the layer (raises) exactly when cnndsl reports an error for it;
- the output shape (batch left out), trainable and non-trainable parameter counts;
- MACs, computed with the formulas of the language reference from the Keras layer's own
  kernel shapes and output shape (never from cnndsl's code);
- the "uncovered" warning, derived from the Keras output size: the last window of a valid
  (or explicitly padded) window layer ends before the padded input does; and the
  "acts on the last axis" warning of `dense` on a tensor of rank above one.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from keras.src.applications.convnext import LayerScale as ConvNeXtLayerScale

from cnndsl.analysis.ops import OPS
from cnndsl.analysis.ops.activations import ACTIVATIONS
from cnndsl.analysis.pipeline import analyse
from cnndsl.backends.keras_layers import ChannelShuffle, LayerScale
from cnndsl.backends.runtime import keras_class
from cnndsl.common.diagnostics import ERROR, WARNING

# OPS_EXAMPLES=2000 for a long hunt; the default keeps the file well under a minute.
_EXAMPLES = int(os.environ.get("OPS_EXAMPLES", 60))
EXAMPLES = settings(max_examples=_EXAMPLES, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
FEW = settings(max_examples=max(_EXAMPLES // 2, 1), deadline=None,
               suppress_health_check=[HealthCheck.too_slow])

WINDOW_LAYERS = ("Conv2D", "DepthwiseConv2D", "SeparableConv2D", "MaxPooling2D",
                 "AveragePooling2D", "LocallyConnected2D")
KERAS_REFUSALS = (ValueError, IndexError)


# ----------------------------------------------------------------------------- the Keras side


@dataclass
class Step:
    """One Keras layer of a node, with the shapes it was called on and gave (batch included)."""

    layer: Any
    inputs: Any
    output: tuple


@dataclass
class KerasNode:
    tensor: Any = None  # None when Keras refused this node or an earlier one
    error: Exception | None = None
    steps: list[Step] = field(default_factory=list)

    @property
    def layers(self) -> list:
        return [s.layer for s in self.steps]


def _shape(t: Any) -> tuple:
    return tuple(t.shape)


def build_keras(analysis) -> dict[int, KerasNode]:
    """The analysed graph rebuilt in Keras, node by node, from the ops' `to_keras` records."""
    nodes: dict[int, KerasNode] = {}
    for layer in analysis.layers:
        node = layer.node
        records = node.op.to_keras(node.args)
        if node.op.arity == "source":
            (record,) = records
            assert record.cls == "Input"
            nodes[node.id] = KerasNode(keras.Input(**record.kwargs))
            continue
        ins = [nodes[i].tensor if i is not None else None for i in node.inputs]
        if any(t is None for t in ins):
            nodes[node.id] = KerasNode()
            continue
        x = ins if node.op.arity == "merge" else ins[0]
        done = KerasNode()
        try:
            for record in records:
                keras_layer = keras_class(keras, record)(**record.kwargs)
                before = [_shape(t) for t in x] if isinstance(x, list) else _shape(x)
                x = keras_layer(x)
                done.steps.append(Step(keras_layer, before, _shape(x)))
        except KERAS_REFUSALS as err:
            done.error = err
        else:
            done.tensor = x
        nodes[node.id] = done
    return nodes


def weight_counts(layers: list) -> tuple[int, int]:
    trainable = sum(math.prod(w.shape) for lay in layers for w in lay.trainable_weights)
    frozen = sum(math.prod(w.shape) for lay in layers for w in lay.non_trainable_weights)
    return trainable, frozen


def keras_macs(step: Step) -> int:
    """MACs by the language reference's formulas, from the Keras kernels and output shape."""
    layer, out = step.layer, step.output
    name = type(layer).__name__
    if name == "Conv2D":
        kh, kw, cin_per_group, cout = layer.kernel.shape
        return kh * kw * cin_per_group * cout * out[1] * out[2]
    if name == "DepthwiseConv2D":
        kh, kw, cin, mult = layer.kernel.shape
        return kh * kw * cin * mult * out[1] * out[2]
    if name == "SeparableConv2D":
        kh, kw, cin, mult = layer.depthwise_kernel.shape
        one, one_, mid, cout = layer.pointwise_kernel.shape
        assert (one, one_, mid) == (1, 1, cin * mult)
        return kh * kw * cin * mult * out[1] * out[2] + mid * cout * out[1] * out[2]
    if name == "Conv2DTranspose":  # every input value times a kh x kw x cout window
        kh, kw, cout, cin = layer.kernel.shape
        return kh * kw * cout * cin * step.inputs[1] * step.inputs[2]
    if name == "LocallyConnected2D":
        positions, patch, cout = layer.kernel.shape
        return positions * patch * cout
    if name == "Dense":
        units_in, units_out = layer.kernel.shape
        return units_in * units_out * math.prod(out[1:-1])
    # Pooling, activations, batch norm, reshaping and merges count 0; they have no kernel.
    assert not any(w.path.endswith("kernel") for w in layer.weights), name
    return 0


def uncovered_axes(step: Step) -> int:
    """How many of height and width leave trailing input rows or columns no window reaches.

    Only windows at least as wide as their stride count: a narrower one (a 1x1 stride-2
    projection) skips rows between its windows by design, and cnndsl does not warn there.
    """
    layer = step.layer
    name = type(layer).__name__
    if name not in WINDOW_LAYERS:
        return 0
    config = layer.get_config()
    if config.get("padding", "valid") != "valid":  # LocallyConnected2D has valid only
        return 0
    kernel = config.get("kernel_size") or config["pool_size"]
    dilation = config.get("dilation_rate", (1, 1))
    strides = config["strides"]
    count = 0
    for axis in (0, 1):
        extent = step.inputs[1 + axis]
        effective = kernel[axis] + (kernel[axis] - 1) * (dilation[axis] - 1)
        last_end = (step.output[1 + axis] - 1) * strides[axis] + effective
        assert last_end <= extent
        count += last_end < extent and effective >= strides[axis]
    return count


# ----------------------------------------------------------------------------- the comparison


def check(text: str) -> Any:
    """Analyse `text` and assert that every layer agrees with Keras; returns the result."""
    result = analyse(text)
    assert result.analysis is not None, result.diagnostics
    analysis = result.analysis
    layers = analysis.layers
    errors = [d for d in result.diagnostics if d.severity == ERROR]
    refused = {lay.node.id for lay in layers if lay.shape is None and all(
        i is not None and layers[i].shape is not None for i in lay.node.inputs)}
    # Every error belongs to a refused layer: none comes from parsing or elaboration.
    assert len(errors) == len(refused), (text, result.diagnostics)

    keras_nodes = build_keras(analysis)
    for layer in layers:
        node, kn = layer.node, keras_nodes[layer.node.id]
        where = f"{node.name} ({node.op.name} {node.args})\n{text}"
        if node.id in refused:
            if node.op.name == "concat" and _batch_axis(node, layers):
                continue  # Keras would join along the batch; cnndsl must refuse
            if kn.tensor is not None and 0 in _shape(kn.tensor)[1:]:
                continue  # Keras builds an empty tensor (a `convt`); cnndsl refuses it
            assert kn.error is not None, f"cnndsl refused, Keras did not: {where}\n" + \
                "\n".join(d.message for d in errors)
            continue
        if layer.shape is None:  # after an earlier refusal
            assert kn.tensor is None, where
            continue
        assert kn.error is None, f"Keras refused ({kn.error}), cnndsl did not: {where}"
        assert layer.shape == _shape(kn.tensor)[1:], where
        assert (layer.trainable, layer.non_trainable) == weight_counts(kn.layers), where
        assert layer.params == sum(lay.count_params() for lay in kn.layers), where
        assert layer.macs == sum(keras_macs(s) for s in kn.steps), where

        warnings = [d.message for d in result.diagnostics
                    if d.severity == WARNING and d.span == node.span]
        uncovered = [w for w in warnings if "uncovered" in w]
        last_axis = [w for w in warnings if "acts on the last axis" in w]
        # One warning per layer, whichever of its axes leave input uncovered.
        expected = sum(bool(uncovered_axes(s)) for s in kn.steps)
        assert len(uncovered) == expected, (where, warnings)
        dense_on_tensor = any(type(s.layer).__name__ == "Dense" and len(s.inputs) > 2
                              for s in kn.steps)
        assert bool(last_axis) == dense_on_tensor, (where, warnings)
        # TensorFlow's CPU kernel refuses what Keras builds: a dilated Conv2DTranspose.
        cpu_only = [w for w in warnings if "GPUs only" in w]
        assert bool(cpu_only) == any(type(s.layer).__name__ == "Conv2DTranspose"
                                     and max(s.layer.dilation_rate) > 1 for s in kn.steps)
        assert len(uncovered) + len(last_axis) + len(cpu_only) == len(warnings), \
            (where, warnings)
    return result


def _batch_axis(node, layers) -> bool:
    """Whether a `concat`'s axis, counted as Keras counts it, names the batch axis."""
    ranks = {len(layers[i].shape) for i in node.inputs}
    return len(ranks) == 1 and node.args["axis"] % (ranks.pop() + 1) == 0


def network(input_shape: tuple[int, ...], *lines: str) -> str:
    body = "\n".join(f"  {line}" for line in lines)
    return f"network t {{\n  input {size_text(input_shape)}\n{body}\n}}\n"


def size_text(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape)) if len(shape) > 1 else str(shape[0])


def analysed_last(text: str):
    result = check(text)
    return result, result.analysis.layers[-1]


# ----------------------------------------------------------------------------- strategies

dims = st.integers(1, 40)
channels = st.integers(1, 16)
images = st.tuples(dims, dims, channels)
small_images = st.tuples(st.integers(1, 12), st.integers(1, 12), st.integers(1, 8))
any_rank = st.one_of(
    images, images, st.tuples(channels), st.tuples(st.integers(1, 9), channels),
    st.tuples(st.integers(1, 5), st.integers(1, 5), st.integers(1, 5), st.integers(1, 5)))


@st.composite
def pair_text(draw, low: int, high: int) -> str:
    """A size2 value in one of the ways the language writes it: `3`, `3x5`, `(3, 5)`."""
    a, b = draw(st.integers(low, high)), draw(st.integers(low, high))
    if a == b and draw(st.booleans()):
        return str(a)
    return draw(st.sampled_from([f"{a}x{b}", f"({a}, {b})"]))


@st.composite
def pad_text(draw) -> str:
    """An explicit pad: `1`, `(1, 2)` or `((0, 1), (2, 3))`."""
    p = st.integers(0, 3)
    form = draw(st.sampled_from(["int", "pair", "pairs"]))
    if form == "int":
        return str(draw(p))
    if form == "pair":
        return f"({draw(p)}, {draw(p)})"
    return f"(({draw(p)}, {draw(p)}), ({draw(p)}, {draw(p)}))"


@st.composite
def padding_words(draw) -> list[str]:
    """Nothing (valid by default), `same`, `valid`, `padding=...`, or an explicit pad."""
    choice = draw(st.sampled_from(["default", "same", "valid", "keyword", "pad"]))
    if choice == "default":
        return []
    if choice == "keyword":
        return [f"padding={draw(st.sampled_from(['same', 'valid']))}"]
    if choice == "pad":
        return [f"pad={draw(pad_text())}"]
    return [choice]


@st.composite
def maybe(draw, strategy, default=None):
    return draw(st.one_of(st.just(default), strategy))


@st.composite
def conv_options(draw, max_kernel: int = 7) -> list[str]:
    """What every convolution shares: stride, padding, dilation, use_bias, activation."""
    words = draw(padding_words())
    if draw(st.booleans()):
        words.append(f"stride={draw(pair_text(1, 4))}")
    if draw(st.booleans()):
        words.append(f"dilation={draw(pair_text(1, 3))}")
    if draw(st.booleans()):
        words.append(f"use_bias={draw(st.sampled_from(['true', 'false']))}")
    activation = draw(maybe(st.sampled_from(ACTIVATIONS)))
    if activation:
        words.append(draw(st.sampled_from([activation, f"activation={activation}"])))
    return draw(st.permutations(words))


# ----------------------------------------------------------------------------- convolutions


@EXAMPLES
@given(shape=images, filters=channels, kernel=pair_text(1, 7), options=conv_options(),
       groups=maybe(st.integers(1, 4)))
def test_conv_matches_conv2d(shape, filters, kernel, options, groups):
    words = [*options, *([f"groups={groups}"] if groups else [])]
    check(network(shape, " ".join(["conv", str(filters), kernel, *words])))


@EXAMPLES
@given(shape=st.tuples(dims, dims, st.integers(1, 4)), groups=st.integers(1, 4),
       per_group=st.integers(1, 4), filters_per_group=st.integers(1, 4),
       kernel=pair_text(1, 3), use_bias=st.booleans())
def test_grouped_conv(shape, groups, per_group, filters_per_group, kernel, use_bias):
    """Grouped convolutions that divide evenly, so the grouped weights are really counted."""
    h, w, _ = shape
    text = network((h, w, groups * per_group),
                   f"conv {groups * filters_per_group} {kernel} groups={groups} same "
                   f"use_bias={str(use_bias).lower()}")
    _, layer = analysed_last(text)
    assert layer.shape is not None


@EXAMPLES
@given(shape=images, kernel=pair_text(1, 7), options=conv_options(),
       multiplier=maybe(st.integers(1, 3)))
def test_dwconv_matches_depthwiseconv2d(shape, kernel, options, multiplier):
    words = [*options, *([f"multiplier={multiplier}"] if multiplier else [])]
    check(network(shape, " ".join(["dwconv", kernel, *words])))


@EXAMPLES
@given(shape=images, filters=channels, kernel=pair_text(1, 7), options=conv_options(),
       multiplier=maybe(st.integers(1, 3)))
def test_sepconv_matches_separableconv2d(shape, filters, kernel, options, multiplier):
    words = [*options, *([f"multiplier={multiplier}"] if multiplier else [])]
    check(network(shape, " ".join(["sepconv", str(filters), kernel, *words])))


@FEW
@given(shape=any_rank, op=st.sampled_from(["conv 4 1x1", "dwconv 1x1", "sepconv 4 1x1",
                                           "maxpool 1x1", "avgpool 1x1", "zeropad 1",
                                           "globalavgpool", "globalmaxpool"]))
def test_spatial_ops_need_a_rank_3_input(shape, op):
    result = check(network(shape, op))
    assert result.ok == (len(shape) == 3)


@pytest.mark.parametrize("op", ["conv 4 3x3", "dwconv 3x3", "sepconv 4 3x3",
                                "maxpool 2x2", "avgpool 3x3"])
def test_same_and_explicit_pad_conflict(op):
    result = analyse(network((9, 9, 3), f"{op} same pad=1"))
    assert not result.ok
    assert any("pad" in d.message for d in result.diagnostics if d.severity == ERROR)


@pytest.mark.parametrize(("stride", "dilation"), [("2", "2"), ("(2, 1)", "(1, 2)"),
                                                  ("(1, 3)", "(2, 1)")])
def test_conv_refuses_stride_with_dilation_like_keras(stride, dilation):
    result = check(network((20, 20, 3), f"conv 4 3x3 stride={stride} dilation={dilation}"))
    assert not result.ok


# ----------------------------------------------------------------------------- pooling


@EXAMPLES
@given(shape=images, op=st.sampled_from(["maxpool", "avgpool"]),
       pool=maybe(pair_text(1, 6)), stride=maybe(pair_text(1, 4)), padding=padding_words())
def test_pooling_matches_keras(shape, op, pool, stride, padding):
    words = [op, *([pool] if pool else []), *([f"stride={stride}"] if stride else []), *padding]
    _, layer = analysed_last(network(shape, " ".join(words)))
    if stride is None and layer.shape is not None and not padding:
        # The stride defaults to the pool size, as Keras's does.
        ph, pw = layer.node.args["pool"]
        assert layer.shape[:2] == (shape[0] // ph, shape[1] // pw)


@FEW
@given(shape=any_rank, op=st.sampled_from(["globalavgpool", "globalmaxpool"]),
       keepdims=maybe(st.sampled_from(["true", "false"])))
def test_global_pooling_matches_keras(shape, op, keepdims):
    words = [op, *([f"keepdims={keepdims}"] if keepdims else [])]
    check(network(shape, " ".join(words)))


# ----------------------------------------------------------------------------- core layers


@EXAMPLES
@given(shape=any_rank, units=channels, use_bias=maybe(st.sampled_from(["true", "false"])),
       activation=maybe(st.sampled_from(ACTIVATIONS)))
def test_dense_matches_keras(shape, units, use_bias, activation):
    words = ["dense", str(units), *([f"use_bias={use_bias}"] if use_bias else []),
             *([activation] if activation else [])]
    check(network(shape, " ".join(words)))


@FEW
@given(shape=any_rank)
def test_flatten_matches_keras(shape):
    check(network(shape, "flatten"))


@FEW
@given(shape=any_rank, rate=st.floats(0, 0.99).map(lambda r: round(r, 3)))
def test_dropout_matches_keras(shape, rate):
    check(network(shape, f"dropout {rate!r}"))


@FEW
@given(shape=any_rank, center=maybe(st.booleans()), scale=maybe(st.booleans()),
       momentum=maybe(st.sampled_from(["0.9", "0.99", "0.5"])),
       epsilon=maybe(st.sampled_from(["1e-3", "1.001e-5", "0.1"])))
def test_batchnorm_matches_keras(shape, center, scale, momentum, epsilon):
    words = ["batchnorm"]
    for key, value in (("center", center), ("scale", scale)):
        if value is not None:
            words.append(f"{key}={str(value).lower()}")
    for key, value in (("momentum", momentum), ("epsilon", epsilon)):
        if value is not None:
            words.append(f"{key}={value}")
    _, layer = analysed_last(network(shape, " ".join(words)))
    # Keras: gamma and beta are trainable, the moving mean and variance are not.
    c = shape[-1]
    assert layer.non_trainable == 2 * c


@FEW
@given(shape=any_rank)
def test_identity_matches_keras(shape):
    check(network(shape, "identity"))


@FEW
@given(shape=any_rank, scale=st.sampled_from(["1/255", "2", "0.5", "-1.5", "1/127.5"]),
       offset=maybe(st.sampled_from(["-1", "0.5", "0"])))
def test_rescale_matches_keras(shape, scale, offset):
    check(network(shape, f"rescale {scale}" + (f" offset={offset}" if offset else "")))


@EXAMPLES
@given(shape=images, pad=pad_text(), keyword=st.booleans())
def test_zeropad_matches_keras(shape, pad, keyword):
    result, layer = analysed_last(network(shape, f"zeropad {'pad=' if keyword else ''}{pad}"))
    assert result.ok and layer.shape[2] == shape[2]


@st.composite
def reshape_case(draw):
    """An input and a target shape: a factorisation of its size (maybe one -1), or not."""
    shape = draw(any_rank)
    size = math.prod(shape)
    target: list[int] = []
    rest = size
    for _ in range(draw(st.integers(0, 3))):
        divisors = [d for d in range(1, rest + 1) if rest % d == 0]
        d = draw(st.sampled_from(divisors))
        target.append(d)
        rest //= d
    target.append(rest)
    target = draw(st.permutations(target))
    if draw(st.booleans()):
        target[draw(st.integers(0, len(target) - 1))] = -1
    if draw(st.integers(0, 3)) == 0:  # a wrong size now and then: both must refuse
        i = draw(st.integers(0, len(target) - 1))
        target[i] = draw(st.integers(1, 7)) if target[i] != -1 else target[i]
    return shape, tuple(target)


@EXAMPLES
@given(case=reshape_case(), form=st.sampled_from(["tuple", "size"]))
def test_reshape_matches_keras(case, form):
    shape, target = case
    if form == "size" and -1 not in target and len(target) > 1:
        text = "x".join(map(str, target))
    elif len(target) == 1:
        text = f"({target[0]},)" if target[0] == -1 else str(target[0])
    else:
        text = "(" + ", ".join(map(str, target)) + ")"
    check(network(shape, f"reshape {text}"))


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_ops_match_keras(name):
    for line in (name, f"activation {name}"):
        result, layer = analysed_last(network((5, 7, 3), line))
        assert result.ok and layer.shape == (5, 7, 3)
    result, layer = analysed_last(network((5, 7, 3), f"conv 4 3x3 {name}", f"dense 2 {name}"))
    assert result.ok


# ----------------------------------------------------------------------------- merges


@st.composite
def concat_case(draw):
    h, w, c = draw(small_images)
    path_ops = st.sampled_from([
        "identity", "conv {k} 1x1", "conv {k} 3x3", "conv {k} 1x1 stride=2", "avgpool 2x2",
        "maxpool 3x3 stride=1 same", "globalavgpool keepdims=true", "globalmaxpool",
        "flatten", "dense {k}"])
    paths = []
    for _ in range(draw(st.integers(2, 3))):
        ops = draw(st.lists(path_ops, min_size=1, max_size=2))
        paths.append("; ".join(op.format(k=draw(st.integers(1, 6))) for op in ops))
    axis = draw(maybe(st.integers(-4, 4)))
    return (h, w, c), paths, axis


@EXAMPLES
@given(case=concat_case())
def test_concat_matches_keras(case):
    shape, paths, axis = case
    head = "concat" + (f" axis={axis}" if axis is not None else "") + " {"
    check(network(shape, head, *(f"  | {p}" for p in paths), "}"))


@pytest.mark.parametrize(("axis", "expected"), [(1, (12, 5, 4)), (2, (6, 10, 4)),
                                                (3, (6, 5, 8)), (-1, (6, 5, 8)),
                                                (-2, (6, 10, 4)), (-3, (12, 5, 4))])
def test_concat_axis_counts_as_keras_does(axis, expected):
    _, layer = analysed_last(network((6, 5, 4), f"concat axis={axis} {{ | identity | relu }}"))
    assert layer.shape == expected


@pytest.mark.parametrize("axis", [0, -4])
def test_concat_refuses_the_batch_axis(axis):
    result = analyse(network((6, 5, 4), f"concat axis={axis} {{ | identity | relu }}"))
    assert not result.ok


@st.composite
def broadcast_case(draw):
    h, w, c = draw(st.tuples(st.integers(1, 5), st.integers(1, 5), st.integers(1, 5)))
    path_ops = st.sampled_from([
        "identity", f"avgpool ({h}, 1)", f"avgpool (1, {w})", "conv 1 1x1", f"conv {c} 1x1",
        "conv {k} 1x1", "globalavgpool keepdims=true", "globalmaxpool", "dense {k}",
        "dense 1", "flatten"])
    paths = []
    for _ in range(draw(st.integers(2, 3))):
        ops = draw(st.lists(path_ops, min_size=1, max_size=3))
        paths.append("; ".join(op.format(k=draw(st.integers(1, 5))) for op in ops))
    return (h, w, c), paths


@EXAMPLES
@given(case=broadcast_case(), op=st.sampled_from(["add", "multiply"]))
def test_add_and_multiply_broadcast_as_keras(case, op):
    shape, paths = case
    check(network(shape, op + " {", *(f"  | {p}" for p in paths), "}"))


@EXAMPLES
@given(case=broadcast_case())
def test_subtract_matches_keras(case):
    """Keras's Subtract takes exactly two inputs: three paths must be refused too."""
    shape, paths = case
    check(network(shape, "subtract {", *(f"  | {p}" for p in paths), "}"))


# ----------------------------------------------------------------------------- new spatial ops


@EXAMPLES
@given(shape=images, filters=channels, kernel=pair_text(1, 5),
       padding=st.sampled_from([[], ["same"], ["valid"], ["padding=same"]]),
       stride=maybe(pair_text(1, 3)), dilation=maybe(pair_text(1, 3)),
       output_padding=maybe(pair_text(0, 2)), use_bias=st.booleans(),
       activation=maybe(st.sampled_from(ACTIVATIONS)))
def test_convt_matches_conv2dtranspose(shape, filters, kernel, padding, stride, dilation,
                                       output_padding, use_bias, activation):
    words = ["convt", str(filters), kernel, *padding,
             *([f"stride={stride}"] if stride else []),
             *([f"dilation={dilation}"] if dilation else []),
             *([f"output_padding={output_padding}"] if output_padding else []),
             f"use_bias={str(use_bias).lower()}", *([activation] if activation else [])]
    check(network(shape, " ".join(words)))


@EXAMPLES
@given(shape=st.tuples(st.integers(1, 14), st.integers(1, 14), st.integers(1, 4)),
       filters=st.integers(1, 5), kernel=pair_text(1, 5), stride=maybe(pair_text(1, 3)),
       pad=maybe(pad_text()), use_bias=st.booleans(),
       activation=maybe(st.sampled_from(["relu", "tanh", "linear"])))
def test_local_matches_its_keras_layer(shape, filters, kernel, stride, pad, use_bias,
                                       activation):
    words = ["local", str(filters), kernel, *([f"stride={stride}"] if stride else []),
             *([f"pad={pad}"] if pad else []), f"use_bias={str(use_bias).lower()}",
             *([activation] if activation else [])]
    check(network(shape, " ".join(words)))


def test_convt_that_leaves_nothing_is_refused():
    """Keras builds a 0x0 output here; cnndsl says so instead."""
    result = check(network((1, 1, 2), "convt 1 4x4 same output_padding=0"))
    assert [d.message for d in result.diagnostics] == [
        "the output would be 0x0: nothing is left"]
    node = result.analysis.layers[-1].node
    (record,) = node.op.to_keras(node.args)
    out = keras_class(keras, record)(**record.kwargs)(keras.Input((1, 1, 2)))
    assert tuple(out.shape) == (None, 0, 0, 1)


def test_dilated_convt_runs_on_gpus_only_as_the_warning_says():
    """Keras builds it; TensorFlow's CPU kernel refuses to run it."""
    result, layer = analysed_last(network((6, 6, 2), "convt 2 3x3 dilation=2"))
    assert [d.message for d in result.diagnostics if d.severity == WARNING] == [
        "TensorFlow runs a dilated `convt` on GPUs only: its CPU kernel refuses dilation "
        "above 1"]
    (record,) = layer.node.op.to_keras(layer.node.args)
    with pytest.raises(Exception, match="dilation rates larger than 1"):
        keras_class(keras, record)(**record.kwargs)(np.ones((1, 6, 6, 2), "float32"))


def test_local_has_only_valid_padding_as_keras_2():
    result = analyse(network((9, 9, 3), "local 4 3x3 same"))
    assert not result.ok
    assert "only `valid` padding" in result.diagnostics[0].message


@FEW
@given(shape=any_rank, size=maybe(pair_text(1, 4)),
       interpolation=st.sampled_from(["", "nearest", "bilinear", "interpolation=bicubic",
                                      "interpolation=area"]))
def test_upsample_matches_upsampling2d(shape, size, interpolation):
    check(network(shape, " ".join(["upsample", *([size] if size else []), interpolation])))


@EXAMPLES
@given(shape=st.tuples(st.integers(1, 9), st.integers(1, 9), channels), crop=pad_text())
def test_crop_matches_cropping2d(shape, crop):
    check(network(shape, f"crop {crop}"))


@FEW
@given(shape=any_rank)
def test_crop_needs_a_rank_3_input(shape):
    check(network(shape, "crop 0"))


# ----------------------------------------------------------------------------- normalisation


@st.composite
def affine_words(draw) -> list[str]:
    words = []
    for key in ("center", "scale"):
        if draw(st.booleans()):
            words.append(f"{key}={draw(st.sampled_from(['true', 'false']))}")
    if draw(st.booleans()):
        words.append(f"epsilon={draw(st.sampled_from(['1e-6', '0.001', '0.1']))}")
    return words


@FEW
@given(shape=any_rank, words=affine_words())
def test_layernorm_matches_keras(shape, words):
    check(network(shape, " ".join(["layernorm", *words])))


@EXAMPLES
@given(shape=any_rank, groups=maybe(st.integers(1, 8)), words=affine_words())
def test_groupnorm_matches_keras(shape, groups, words):
    """Keras refuses more groups than channels, and channels that do not split evenly."""
    if groups is None and draw_default_fit(shape):
        shape = (*shape[:-1], 32)  # the default 32 groups fit 32 channels
    check(network(shape, " ".join(["groupnorm", *([f"groups={groups}"] if groups else []),
                                   *words])))


def draw_default_fit(shape: tuple[int, ...]) -> bool:
    return shape[-1] % 2 == 0


@FEW
@given(shape=any_rank, mean=maybe(st.sampled_from(["0.5", "(1, 2, 3)"])))
def test_normalization_matches_keras(shape, mean):
    """Mean and variance adapted: 2C + 1 non-trainable weights; given: none at all."""
    if mean == "(1, 2, 3)":
        shape = (*shape[:-1], 3)
    words = [f"mean={mean} variance={mean}"] if mean else []
    _, layer = analysed_last(network(shape, " ".join(["normalization", *words])))
    assert layer.non_trainable == (0 if mean else 2 * shape[-1] + 1)


def test_normalization_is_efficientnets_7_parameters():
    _, layer = analysed_last(network((224, 224, 3), "rescale 1/255", "normalization"))
    assert (layer.trainable, layer.non_trainable) == (0, 7)


# ----------------------------------------------------------------------------- per channel


@pytest.mark.parametrize("line", ["rescale (1, 2) offset=0", "rescale 1 offset=(1, 2)",
                                  "normalization mean=(1, 2) variance=(1, 2)",
                                  "normalization mean=(0, 0, 0, 0) variance=(1, 2, 3, 4)"])
def test_per_channel_tuples_must_fit_the_channels(line):
    """Keras only fails when the model runs: cnndsl says so when it checks."""
    text = network((4, 4, 3), line)
    result = analyse(text)
    assert not result.ok and "channels" in result.diagnostics[0].message
    node = result.analysis.layers[-1].node
    (record,) = node.op.to_keras(node.args)
    with pytest.raises(Exception, match=r"(?i)incompatible|broadcast"):
        keras_class(keras, record)(**record.kwargs)(np.ones((1, 4, 4, 3), "float32"))


@FEW
@given(shape=any_rank, scale=st.sampled_from(["1/255", "(1, 2, 3)", "(0.5,)"]),
       offset=maybe(st.sampled_from(["(-1, 0, 1)", "-1"])))
def test_per_channel_rescale_matches_keras(shape, scale, offset):
    shape = (*shape[:-1], 3)
    check(network(shape, f"rescale {scale}" + (f" offset={offset}" if offset else "")))


@FEW
@given(shape=any_rank, words=st.sampled_from(["mean=1 variance=2", "mean=1", "variance=1",
                                              "mean=(1,) variance=1",
                                              "mean=(1, 2) variance=(1, 2, 3)"]))
def test_normalization_takes_mean_and_variance_together(shape, words):
    """Keras refuses one without the other, or the two of different shapes."""
    check(network(shape, f"normalization {words}"))


# ----------------------------------------------------------------------------- scaling, dropout


@FEW
@given(shape=any_rank, init=maybe(st.sampled_from(["1e-6", "0.5"])))
def test_layerscale_matches_convnexts(shape, init):
    check(network(shape, " ".join(["layerscale", *([init] if init else [])])))
    _, layer = analysed_last(network(shape, " ".join(["layerscale", *([init] if init else [])])))
    reference = ConvNeXtLayerScale(float(init or 1e-6), shape[-1])
    reference.build((None, *shape))
    assert (layer.trainable, layer.non_trainable) == weight_counts([reference])


def test_layerscale_computes_convnexts():
    x = np.random.default_rng(1).normal(size=(2, 3, 3, 4)).astype("float32")
    ours, reference = LayerScale(0.5), ConvNeXtLayerScale(0.5, 4)
    ours.build(x.shape)
    reference.build(x.shape)
    ours.set_weights([np.arange(4, dtype="float32")])
    reference.set_weights([np.arange(4, dtype="float32")])
    np.testing.assert_array_equal(ours(x), reference(x))
    np.testing.assert_array_equal(LayerScale(0.5)(x), ConvNeXtLayerScale(0.5, 4)(x))


@FEW
@given(shape=any_rank, rate=st.sampled_from(["0", "0.1", "0.5"]))
def test_spatial_dropout_matches_keras(shape, rate):
    check(network(shape, f"spatial_dropout {rate}"))


@FEW
@given(shape=any_rank, data=st.data())
def test_dropout_noise_shape_matches_keras(shape, data):
    noise = tuple(data.draw(st.sampled_from([1, d])) for d in shape)
    text = f"({noise[0]},)" if len(noise) == 1 else "(" + ", ".join(map(str, noise)) + ")"
    result = check(network(shape, f"dropout 0.2 noise_shape={text}"))
    node = result.analysis.layers[-1].node
    (record,) = node.op.to_keras(node.args)
    assert record.kwargs["noise_shape"] == (None, *noise)


@pytest.mark.parametrize("noise", ["(1, 1)", "(2, 1, 1)", "(1, 1, 1, 1)"])
def test_dropout_noise_shape_must_fit(noise):
    result = analyse(network((4, 4, 3), f"dropout 0.2 noise_shape={noise}"))
    assert not result.ok and "noise_shape" in result.diagnostics[0].message


def test_per_sample_dropout_drops_whole_samples():
    """EfficientNet's drop-connect: noise_shape=(1, 1, 1) zeroes a sample or keeps it all."""
    result = analyse(network((4, 4, 3), "dropout 0.5 noise_shape=(1, 1, 1)"))
    node = result.analysis.layers[-1].node
    (record,) = node.op.to_keras(node.args)
    out = keras_class(keras, record)(**record.kwargs)(np.ones((64, 4, 4, 3), "float32"),
                                                      training=True)
    per_sample = {float(v) for v in np.unique(np.asarray(out).reshape(64, -1), axis=1).ravel()}
    assert per_sample == {0.0, 2.0}
    assert all(len(np.unique(sample)) == 1 for sample in np.asarray(out))


# ----------------------------------------------------------------------------- reordering


@st.composite
def permute_case(draw):
    shape = draw(any_rank)
    dims = draw(st.permutations(range(1, len(shape) + 1)))
    if draw(st.integers(0, 3)) == 0:  # now and then a wrong order: both must refuse
        dims[draw(st.integers(0, len(dims) - 1))] = draw(st.integers(1, len(dims) + 1))
    return shape, dims


@EXAMPLES
@given(case=permute_case())
def test_permute_matches_keras(case):
    shape, dims = case
    text = f"({dims[0]},)" if len(dims) == 1 else "(" + ", ".join(map(str, dims)) + ")"
    check(network(shape, f"permute {text}"))


@FEW
@given(shape=any_rank, groups=st.integers(1, 6))
def test_channel_shuffle_shapes_match_keras(shape, groups):
    check(network(shape, f"channel_shuffle groups={groups}"))


@pytest.mark.parametrize(("channels_", "groups"), [(6, 2), (6, 3), (12, 4), (5, 1)])
def test_channel_shuffle_equals_keras_reshape_permute_reshape(channels_, groups):
    """ShuffleNet's shuffle as Keras layers compute it (Reshape, Permute, Reshape)."""
    x = np.random.default_rng(0).normal(size=(2, 3, 5, channels_)).astype("float32")
    reference = keras.Sequential([
        keras.layers.Reshape((3, 5, groups, channels_ // groups)),
        keras.layers.Permute((1, 2, 4, 3)),
        keras.layers.Reshape((3, 5, channels_)),
    ])
    np.testing.assert_array_equal(ChannelShuffle(groups)(x), reference(x))
    if groups not in (1, channels_):
        assert not np.array_equal(ChannelShuffle(groups)(x), x)


# ----------------------------------------------------------------------------- activations


@st.composite
def activation_setting(draw) -> str:
    name = draw(st.sampled_from(["relu", "leaky_relu", "elu", "gelu"]))
    numbers = st.sampled_from(["0", "0.1", "6", "-1", "0.5"])
    if name == "relu":
        words = [f"{key}={draw(numbers)}" for key in ("max_value", "negative_slope",
                                                      "threshold") if draw(st.booleans())]
    elif name == "gelu":
        words = [f"approximate={draw(st.sampled_from(['true', 'false']))}"]
    else:
        words = [f"alpha={draw(numbers)}"]
    return " ".join([name, *words])


@EXAMPLES
@given(shape=any_rank, line=activation_setting())
def test_activation_settings_match_keras(shape, line):
    check(network(shape, line))


@pytest.mark.parametrize(("line", "function"), [
    ("leaky_relu alpha=0.1", lambda x: keras.activations.leaky_relu(x, negative_slope=0.1)),
    ("leaky_relu", keras.activations.leaky_relu),
    ("relu max_value=6", lambda x: keras.activations.relu(x, max_value=6.0)),
    ("relu threshold=0.5 negative_slope=0.1",
     lambda x: keras.activations.relu(x, negative_slope=0.1, threshold=0.5)),
    ("elu alpha=0.5", lambda x: keras.activations.elu(x, alpha=0.5)),
    ("gelu approximate=true", lambda x: keras.activations.gelu(x, approximate=True)),
    ("gelu", lambda x: keras.activations.gelu(x, approximate=False)),
    ("hard_swish", keras.activations.hard_swish),
    ("hard_sigmoid", keras.activations.hard_sigmoid),
])
def test_activation_settings_compute_keras_functions(line, function):
    """The layers the settings become compute Keras's activation with those settings."""
    result = analyse(network((50,), line))
    node = result.analysis.layers[-1].node
    (record,) = node.op.to_keras(node.args)
    x = np.linspace(-8, 8, 50, dtype="float32")[None]
    got = keras_class(keras, record)(**record.kwargs)(x)
    np.testing.assert_allclose(got, function(x), rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------------------- coverage

COVERED = {"input", "conv", "dwconv", "sepconv", "maxpool", "avgpool", "globalavgpool",
           "globalmaxpool", "dense", "flatten", "dropout", "batchnorm", "identity", "rescale",
           "zeropad", "reshape", "activation", "concat", "add", "multiply", "subtract",
           *ACTIVATIONS, "convt", "local", "upsample", "crop", "layernorm", "groupnorm",
           "normalization", "layerscale", "spatial_dropout", "permute", "channel_shuffle"}


def test_every_op_is_compared_with_keras():
    """A new op fails here until a test above compares it with Keras."""
    assert set(OPS) == COVERED
