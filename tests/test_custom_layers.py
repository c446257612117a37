"""cnndsl's own Keras layers (cnndsl/backends/keras_layers.py), for what Keras 3 lacks.

`local` against its reference, Keras 2's LocallyConnected2D (the tf-keras package), with the
same weights; the runtime model and the module `build` writes equal `check` when a network
uses the custom layers, and the module defines exactly the classes it uses; models save and
load again (in a fresh process, as `cnndsl evaluate` does); the DeepFace-like example trains.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
import pytest
import tf_keras  # Keras 2 (the tf-keras package, in the `test` extra): the reference
from conftest import EXAMPLES, ROOT
from test_build import (
    RUFF_FORMAT,
    RUFF_STRICT,
    assert_matches_check,
    assert_ruff_clean,
    build,
    load_module,
)
from test_runtime import assert_matches

from cnndsl.analysis.pipeline import analyse
from cnndsl.backends.codegen import custom_sources, generate
from cnndsl.backends.runtime import build_model, keras_class
from cnndsl.training import datasets
from cnndsl.training.commands import evaluate_command, train_command

# Numpy 2 warns about Keras's tensor-to-numpy conversion on every call.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

CUSTOM = """
block shuffle_unit(c) {
  add {
    | identity
    | conv c 1x1 groups=2; channel_shuffle groups=2; dwconv 3x3 same; layerscale 1e-6
  }
}

network custom {
  input 16x16x3
  local 8 3x3 stride=2 pad=1 relu as L1
  shuffle_unit(8)
  gelu approximate=true
  local 4 2x2 use_bias=false
  flatten
  dense 10 softmax
}
"""

# (input, `local` line) pairs: strides, rectangular kernels, explicit pads, no bias.
LOCAL_CASES = [
    ((32, 32, 3), "local 20 8x8 stride=2 pad=1"),
    ((9, 11, 2), "local 5 (3, 2) stride=(2, 1) relu"),
    ((7, 7, 4), "local 3 1x1 use_bias=false"),
    ((6, 10, 1), "local 2 (2, 4) stride=(1, 3) pad=((0, 1), (2, 0)) tanh"),
    ((5, 5, 3), "local 4 5x5"),
]


def local_layers(shape: tuple[int, ...], line: str):
    """The Keras layers `check`'s `local` node becomes, and the node's analysed layer."""
    text = f"network t {{\n  input {'x'.join(map(str, shape))}\n  {line}\n}}\n"
    result = analyse(text)
    assert result.ok, result.diagnostics
    layer = result.analysis.layers[-1]
    records = layer.node.op.to_keras(layer.node.args)
    return [keras_class(keras, r)(**r.kwargs) for r in records], records[-1], layer


@pytest.mark.parametrize(("shape", "line"), LOCAL_CASES)
def test_local_equals_keras_2_locally_connected(shape, line):
    """Same weights, same outputs (to 1e-5) and the same params as tf_keras's layer."""
    ours, record, layer = local_layers(shape, line)
    x = np.random.default_rng(0).normal(size=(3, *shape)).astype("float32")
    padded = np.asarray(ours[0](x)) if len(ours) == 2 else x  # `pad=`: ZeroPadding2D first
    y = ours[-1](padded)
    reference = tf_keras.layers.LocallyConnected2D(**record.kwargs, implementation=1)
    reference.build((None, *padded.shape[1:]))
    assert reference.count_params() == ours[-1].count_params() == layer.params
    assert [w.shape for w in reference.get_weights()] == \
        [w.shape for w in ours[-1].get_weights()]
    reference.set_weights(ours[-1].get_weights())
    np.testing.assert_allclose(np.asarray(y), reference(padded).numpy(), rtol=1e-5,
                               atol=1e-5)


def test_local_layer_gets_random_weights_and_differs_from_a_conv():
    """Unshared for real: with each position's kernel different, no conv computes it."""
    (ours,), _, _ = local_layers((6, 6, 1), "local 1 3x3")
    x = np.ones((1, 6, 6, 1), "float32")
    out = np.asarray(ours(x))
    assert len(np.unique(out.round(5))) > 1  # a shared kernel on a constant input: one value


def test_runtime_and_built_module_equal_check(tmp_path):
    analysis = analyse(CUSTOM).analysis
    assert_matches(analysis)
    module = load_module(build(tmp_path, CUSTOM, "custom.cnn"))
    keras.backend.clear_session()
    assert_matches_check(keras, module.build_model(), CUSTOM)
    keras.backend.clear_session()


def test_built_module_defines_only_the_classes_it_uses(tmp_path):
    used = {"LocallyConnected2D", "ChannelShuffle", "LayerScale", "GELU"}
    assert set(custom_sources()) == used  # every class of keras_layers.py is used here
    code = generate(CUSTOM, "custom.cnn")[0]
    assert {c for c in used if f"\nclass {c}(keras.layers.Layer):" in code} == used
    assert code.count('@keras.saving.register_keras_serializable(package="cnndsl")') == 4
    assert "cnndsl" not in code.split("import keras", 1)[1].split("@keras.saving")[0]
    plain = generate((EXAMPLES / "mnist.cnn").read_text(), "mnist.cnn")[0]
    assert "class " not in plain and "register_keras_serializable" not in plain
    only_local = generate("network n {\n  input 4x4x1\n  local 2 3x3\n}\n", "n.cnn")[0]
    assert "class LocallyConnected2D" in only_local and "class GELU" not in only_local
    assert "from keras import layers" not in only_local  # nothing else would use it
    for name, code_ in (("custom", code), ("only_local", only_local)):
        (tmp_path / f"{name}.py").write_text(code_)
    assert_ruff_clean([str(p) for p in tmp_path.glob("*.py")], RUFF_FORMAT, RUFF_STRICT)
    keras.backend.clear_session()
    model = load_module(tmp_path / "only_local.py").build_model()
    assert model.count_params() == analyse(
        "network n {\n  input 4x4x1\n  local 2 3x3\n}\n").analysis.totals.params


LOAD = """
import sys
import numpy as np
from cnndsl.backends.runtime import import_keras
keras = import_keras()
model = keras.models.load_model(sys.argv[1])
x = np.load(sys.argv[2])
np.save(sys.argv[3], model.predict(x, verbose=0))
"""


def test_saved_models_load_in_a_fresh_process(tmp_path):
    """Both the runtime's model and the built module's save to .keras and load again where
    only cnndsl's runtime registered the classes, computing the same outputs."""
    x = np.random.default_rng(2).normal(size=(2, 16, 16, 3)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    keras.backend.clear_session()
    runtime_model = build_model(analyse(CUSTOM).analysis)
    built_model = load_module(build(tmp_path, CUSTOM, "custom.cnn")).build_model()
    for name, model in (("runtime", runtime_model), ("built", built_model)):
        model.save(tmp_path / f"{name}.keras")
        out = tmp_path / f"{name}.npy"
        proc = subprocess.run([sys.executable, "-c", LOAD, str(tmp_path / f"{name}.keras"),
                               str(tmp_path / "x.npy"), str(out)], capture_output=True,
                              text=True, cwd=ROOT, timeout=300,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert proc.returncode == 0, proc.stderr[-2000:]
        np.testing.assert_allclose(np.load(out), model.predict(x, verbose=0), rtol=1e-5,
                                   atol=1e-6)
    keras.backend.clear_session()


def test_deepface_example_trains_one_epoch_and_evaluates_again(tmp_path):
    run = tmp_path / "run"
    assert train_command(EXAMPLES / "deepface.cnn", out=run, data=datasets.BUNDLED_MNIST,
                         epochs=1, verbose=0) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["params"] == analyse(
        (EXAMPLES / "deepface.cnn").read_text()).analysis.totals.params
    assert metrics["test_accuracy"] > 0.5
    assert evaluate_command(run) == 0  # reloads model.keras with its LocallyConnected2D
    keras.backend.clear_session()
