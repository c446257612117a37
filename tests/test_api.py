"""The Python API (cnndsl.load, loads, Network, CheckError) against its two oracles: the
`cnndsl` command, whose output the API's must equal, and Keras itself."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from conftest import EXAMPLES, ROOT, run_cnndsl

import cnndsl

NESTED = """
block pair(f) { conv f 3x3 same; batchnorm; relu }
block stage(f) { pair(f) as a; pair(2 * f) as b }
network nested {
  input 16x16x3
  stage(4) as s1
  repeat 2 { pair(8) }
  globalavgpool
  dense 10 softmax
}
"""
BROKEN = "network broken {\n  input 8x8x1\n  conv 4 9x9\n  dense 3\n}\n"
WARNS = "network warns {\n  input 8x8x3\n  conv 4 3x3 stride=2\n  dense 4\n}\n"
TWO = "network a { input 4x4x1 }\nnetwork b { input 8x8x1; flatten }\n"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# ----------------------------------------------------------------------------- the CLI as oracle


@pytest.mark.parametrize("example", ["mnist.cnn", "siamese.cnn", "googlenet_aux.cnn"])
def test_to_json_is_what_check_json_prints(example):
    path = EXAMPLES / example
    proc = run_cnndsl("check", str(path), "--json")
    assert proc.returncode == 0, proc.stderr
    assert cnndsl.load(path).to_json() == json.loads(proc.stdout)


@pytest.mark.filterwarnings("ignore::cnndsl.CnndslWarning")  # resnet50's own, as Keras's
@pytest.mark.parametrize(("example", "depth"), [("mnist.cnn", None), ("resnet50.cnn", 2)])
def test_summary_is_check_s_table(example, depth):
    path = EXAMPLES / example
    proc = run_cnndsl("check", str(path), *(["--depth", str(depth)] if depth else []))
    assert proc.returncode == 0, proc.stderr
    assert cnndsl.load(path).summary(depth) + "\n" == proc.stdout


def test_check_error_reads_as_check_prints_it(tmp_path):
    path = write(tmp_path, "broken.cnn", BROKEN)
    with pytest.raises(cnndsl.CheckError) as info:
        cnndsl.load(path)
    proc = run_cnndsl("check", str(path))
    assert proc.returncode == 1
    assert str(info.value) + "\n" == proc.stderr
    [d] = info.value.diagnostics
    assert (d.severity, d.line, d.column) == ("error", 3, 3)
    assert "9-wide window" in d.message and "smaller kernel" in d.hint


def test_keras_source_is_what_build_writes(tmp_path):
    path = EXAMPLES / "inception_module.cnn"
    proc = run_cnndsl("build", str(path), "-o", "-")
    assert proc.returncode == 0, proc.stderr
    assert cnndsl.load(path).keras_source() == proc.stdout


@pytest.mark.parametrize(("api_depth", "flags"), [(None, []), (1, ["--depth", "0"]),
                                                  (2, ["--depth", "1"])])
def test_draw_is_the_command_s_diagram(tmp_path, api_depth, flags):
    path = write(tmp_path, "nested.cnn", NESTED)
    out = tmp_path / "nested.dot"
    proc = run_cnndsl("draw", str(path), "-o", str(out), *flags)
    assert proc.returncode == 0, proc.stderr
    g = cnndsl.load(path).draw(depth=api_depth)
    assert type(g).__name__ == "Digraph" and hasattr(g, "_repr_mimebundle_")
    assert g.source == out.read_text()


# ----------------------------------------------------------------------------- Keras as oracle


@pytest.fixture(scope="module")
def keras_models():
    """Each network's Keras model, built once (siamese, 39M params, is the largest)."""
    nets = [cnndsl.load(EXAMPLES / "siamese.cnn"), cnndsl.load(EXAMPLES / "googlenet_aux.cnn"),
            cnndsl.loads(NESTED)]
    return [(net, net.keras_model()) for net in nets]


def weights(variables) -> int:
    return sum(int(np.prod(v.shape)) for v in variables)


def test_keras_counts_the_same_params(keras_models):
    for net, model in keras_models:
        assert model.count_params() == net.params.total, net.name
        assert weights(model.trainable_weights) == net.params.trainable, net.name
        assert weights(model.non_trainable_weights) == net.params.non_trainable, net.name
    nested = keras_models[-1][0]
    assert nested.params.non_trainable == 2 * (4 + 8 + 8 + 8)  # batchnorm's moving statistics


def test_keras_has_the_same_inputs_and_outputs(keras_models):
    for net, model in keras_models:
        assert [tuple(t.shape[1:]) for t in model.inputs] == [s for _, s in net.inputs]
        assert [tuple(t.shape[1:]) for t in model.outputs] == [s for _, s in net.outputs]
    siamese, model = keras_models[0]
    assert siamese.input_shape is None and siamese.output_shape == (1,)
    assert [name for name, _ in siamese.inputs] == ["left", "right"]


def test_keras_layers_have_the_shapes_and_params_of_net_layers(keras_models):
    net, model = keras_models[-1]
    by_name = {layer.name: layer for layer in model.layers}
    for layer in net.layers:
        keras_layer = by_name[layer.keras_name]
        assert tuple(keras_layer.output.shape[1:]) == layer.output_shape, layer.name
        assert keras_layer.count_params() == layer.params, layer.name


def test_keras_source_builds_the_same_model():
    net = cnndsl.load(EXAMPLES / "mnist.cnn")
    scope: dict = {}
    exec(compile(net.keras_source(), "mnist.py", "exec"), scope)
    assert scope["build_model"]().count_params() == net.params.total == 52138


# ----------------------------------------------------------------------------- the Network


def test_figures_and_layers():
    net = cnndsl.load(EXAMPLES / "mnist.cnn")
    assert (net.name, net.input_shape, net.output_shape) == ("mnist", (28, 28, 1), (10,))
    assert net.inputs == [("input", (28, 28, 1))] and net.outputs == [("output", (10,))]
    assert net.params == cnndsl.Params(52138, 52138, 0)
    assert net.flops == 2 * net.macs == 2 * sum(layer.macs for layer in net.layers)
    conv = net.layers[1]
    assert conv == cnndsl.Layer("conv_1", "conv", (), (26, 26, 8), 80, 80, 48672, (3, 3), 5,
                                "conv_1")
    data = net.to_json()["layers"]
    assert [(x.name, list(x.output_shape), x.params) for x in net.layers] == [
        (x["name"], x["output_shape"], x["params"]) for x in data]
    inner = cnndsl.loads(NESTED).layers[2]
    assert (inner.name, inner.scope) == ("s1/a/batchnorm_1", ("s1", "a"))


def test_repr_is_short_and_says_the_essentials():
    assert repr(cnndsl.load(EXAMPLES / "mnist.cnn")) == (
        "<cnndsl.Network mnist: 28x28x1 -> 10, 52,138 params>")
    text = repr(cnndsl.load(EXAMPLES / "googlenet.cnn"))
    assert len(text) < 100 and "googlenet" in text
    assert repr(cnndsl.load(EXAMPLES / "siamese.cnn")).startswith(
        "<cnndsl.Network siamese: (left 105x105x1, right 105x105x1) -> 1, ")


class _Cells(HTMLParser):
    """The text of each table row, and the tags left open (none, for good HTML)."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.open: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.open.append(tag)
        if tag == "tr":
            self.rows.append([])

    def handle_endtag(self, tag):
        assert self.open.pop() == tag

    def handle_data(self, data):
        if self.open and self.open[-1] in ("td", "th"):
            self.rows[-1].append(data)


def test_html_is_the_table_escaped():
    net = cnndsl.loads(NESTED, filename="<cell & 1>")
    page = net._repr_html_()
    assert "&lt;cell &amp; 1&gt;" in page and "<cell" not in page
    parser = _Cells()
    parser.feed(page)
    assert parser.open == []
    text_rows = net.summary().splitlines()[4:-8]  # between the rules: one per layer or block
    header, *rows = parser.rows
    assert header == ["layer", "op", "output", "params", "MACs", "RF"]
    assert [r[0] for r in rows[:len(text_rows)]] == [r.split()[0] for r in text_rows]
    assert ["Total params", "1,778 (6.95 KiB)"] in rows
    assert page.count('<tr style="font-weight:bold">') == 5  # s1, a, b, pair_1, pair_2


def test_summary_depth_folds_block_instances():
    net = cnndsl.loads(NESTED)
    top = [line.split()[0] for line in net.summary(depth=1).splitlines()[4:-8]]
    assert top == ["input", "s1", "pair_1", "pair_2", "globalavgpool_1", "dense_1"]
    assert len(net.summary(depth=2).splitlines()) > len(net.summary(depth=1).splitlines())
    assert net.summary(depth=3) == net.summary()
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="depth"):
            net.summary(depth=bad)


def test_draw_arguments():
    net = cnndsl.loads(NESTED)
    assert "rankdir=LR" in net.draw(rankdir="LR").source
    with pytest.raises(ValueError, match="rankdir"):
        net.draw(rankdir="BT")
    with pytest.raises(ValueError, match="depth"):
        net.draw(depth=0)


# ----------------------------------------------------------------------------- errors, warnings


def test_a_file_of_several_networks_asks_for_one_in_python_words():
    with pytest.raises(cnndsl.CheckError) as info:
        cnndsl.loads(TWO)
    message = str(info.value)
    assert "defines 2 networks (a, b)" in message and 'network="NAME"' in message
    assert "--network" not in message and info.value.diagnostics == []
    assert cnndsl.loads(TWO, network="b").output_shape == (64,)
    with pytest.raises(cnndsl.CheckError, match=r"no network named 'c' .*a, b"):
        cnndsl.loads(TWO, network="c")
    assert cnndsl.load(EXAMPLES / "vgg.cnn", network="vgg19").name == "vgg19"


def test_unreadable_files_raise_python_s_own_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        cnndsl.load(tmp_path / "missing.cnn")
    with pytest.raises(IsADirectoryError):
        cnndsl.load(tmp_path)
    utf16 = tmp_path / "utf16.cnn"
    utf16.write_bytes("network n { input 4x4x1 }".encode("utf-16"))
    with pytest.raises(cnndsl.CheckError, match="UTF-16"):
        cnndsl.load(utf16)


def test_warnings_are_python_warnings_once_each():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        net = cnndsl.loads(WARNS, filename="warns.cnn")
        net.summary(), net.to_json(), net.layers, repr(net)
    assert [w.category for w in caught] == [cnndsl.CnndslWarning] * 2
    assert [w.filename for w in caught] == [__file__] * 2  # the caller's line, not cnndsl's
    first, second = (str(w.message) for w in caught)
    assert first.startswith("warns.cnn:3:3: stride 2 leaves") and "(hint: use `same`" in first
    assert second.startswith("warns.cnn:4:3: `dense` on 3x3x4")
    assert [d.severity for d in net.diagnostics] == ["warning", "warning"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cnndsl.load(EXAMPLES / "mnist.cnn")
    assert caught == []


def test_import_and_checking_never_import_tensorflow(tmp_path):
    code = (
        "import sys, cnndsl\n"
        "net = cnndsl.load(sys.argv[1])\n"
        "net.summary(depth=1), net.to_json(), net.draw().source, net.keras_source()\n"
        "net._repr_html_(), repr(net), net.layers, cnndsl.loads(open(sys.argv[1]).read())\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('tensorflow', 'keras', 'tf_keras')))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(EXAMPLES / "resnet50.cnn")],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


# ----------------------------------------------------------------------------- training


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # Keras's
def test_train_returns_the_run(tmp_path):
    session = pytest.importorskip("cnndsl.training.session", reason="needs session.train")
    if not hasattr(session, "train"):
        pytest.skip("cnndsl.training.session has no train() yet")
    from test_train import TINY, write_npz  # the training tests' small learnable task

    data = write_npz(tmp_path / "tiny.npz")
    net = cnndsl.loads(TINY)
    run = net.train(epochs=2, data=str(data), out=tmp_path / "run", verbose=0, batch=64)
    assert Path(run.folder) == tmp_path / "run" and (run.folder / "model.keras").exists()
    assert len(run.history) == 2 and {"loss", "accuracy"} <= run.history[-1].keys()
    assert "accuracy" in str(run.metrics)
    assert run.model.count_params() == net.params.total
