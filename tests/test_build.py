"""`cnndsl build`: the generated Keras module builds exactly the model `check` describes,
reads as Python (ruff-clean), and cannot be made to run anything by the .cnn file."""

from __future__ import annotations

import ast
import importlib.util
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import EXAMPLES, ROOT, example_networks, example_params
from keras_models import module_model

from cnndsl.analysis.pipeline import analyse
from cnndsl.backends import report
from cnndsl.backends.codegen import (
    call_lines,
    generate,
    identifier,
    literal,
    string_literal,
)
from cnndsl.cli import build_command

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
EXAMPLE_NETWORKS = example_networks()


@pytest.fixture(scope="module")
def keras():
    keras = pytest.importorskip("keras")
    yield keras
    keras.backend.clear_session()


def load_module(path: Path, name: str = "generated"):
    spec = importlib.util.spec_from_file_location(f"{name}_{abs(hash(path))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build(tmp_path: Path, source: str, filename: str = "net.cnn", **kw) -> Path:
    code, diagnostics = generate(source, filename, **kw)
    assert code is not None, [d.message for d in diagnostics]
    out = tmp_path / (Path(filename).stem + ".py")
    out.write_text(code)
    return out


def expected_layers(source: str, network: str | None = None) -> tuple[dict, dict]:
    """check --json for the source, and {keras layer name: check layer} with the `-pad`
    layers of explicit padding (0 params) added."""
    result = analyse(source, network)
    data = report.to_json(result, "net.cnn")
    by_node = {layer.node.name: layer.node for layer in result.analysis.layers}
    names = {}
    for layer in data["layers"]:
        node = by_node[layer["name"]]
        if node.shares is not None:
            continue  # `reuse`: the same Keras layer as the one it shares
        keras_name = layer["keras_name"]
        assert keras_name == layer["name"].replace("/", "-") == node.keras_name
        for spec in node.op.to_keras(node.args):
            if spec.suffix:
                names[keras_name + spec.suffix] = {"params": 0, "trainable_params": 0,
                                                   "output_shape": None, "op": "pad"}
        names[keras_name] = layer
    return data, names


def assert_matches_check(keras, model, source: str, network: str | None = None) -> None:
    data, names = expected_layers(source, network)
    trainable = sum(math.prod(w.shape) for w in model.trainable_weights)
    non_trainable = sum(math.prod(w.shape) for w in model.non_trainable_weights)
    assert (model.count_params(), trainable, non_trainable) == (
        data["params"]["total"], data["params"]["trainable"], data["params"]["non_trainable"])
    assert [list(t.shape[1:]) for t in model.outputs] == [p["shape"] for p in data["outputs"]]
    assert [(t.name, list(t.shape[1:])) for t in model.inputs] == [
        (p["name"].replace("/", "-"), p["shape"]) for p in data["inputs"]]
    got = {layer.name: layer for layer in model.layers}
    inputs = [n for n, layer in names.items() if layer["op"] == "input"]
    assert set(got) | set(inputs) == set(names), (
        f"missing: {sorted(set(names) - set(got) - set(inputs))[:5]}, "
        f"extra: {sorted(set(got) - set(names))[:5]}")
    for name, want in names.items():
        if want["op"] == "input":
            continue  # compared with model.inputs above
        layer = got[name]
        assert layer.count_params() == want["params"], name
        assert sum(math.prod(w.shape) for w in layer.trainable_weights) == \
            want["trainable_params"], name
        if want["output_shape"] is not None:
            assert list(layer.output.shape[1:]) == want["output_shape"], name


# ----------------------------------------------------------------------------- every example


@pytest.mark.parametrize("case", example_params())
def test_example_model_matches_check(case, keras):
    example, network = case
    source = example.read_text()
    model = module_model(source, network)  # built once per session, shared with the others
    assert isinstance(model, keras.Model)
    assert_matches_check(keras, model, source, network)


RUFF_FORMAT = ["format", "--isolated", "--check"]
RUFF_STRICT = ["check", "--isolated", "--select", "E,F,W,I,B,UP,SIM,RUF", "--line-length", "88"]


def assert_ruff_clean(files: list[str], *checks: list[str]) -> None:
    for args in checks:
        proc = subprocess.run([sys.executable, "-m", "ruff", *args, *files],
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_generated_code_passes_ruff(tmp_path):
    for example, network in EXAMPLE_NETWORKS:
        name = example.name if network is None else f"{example.stem}_{network}.cnn"
        build(tmp_path, example.read_text(), name, network=network)
    files = sorted(str(p) for p in tmp_path.glob("*.py"))
    assert len(files) == len(EXAMPLE_NETWORKS)
    assert_ruff_clean(files, RUFF_FORMAT, ["check", "--isolated"], RUFF_STRICT)


def test_long_tuple_arguments_wrap_as_ruff_format_does():
    """U-Net's symbolic crop and NASNet's correct_pad do not fit on a line: a bracketed
    argument is split one element a line, recursively; a parenthesised group is not (a
    comma would make it a tuple)."""
    wide = "(skip.shape[1] - 2 * inputs.shape[1]) // 2"
    lines = call_lines("x = layers.Cropping2D", [f"cropping=(({wide}, {wide}), (1, 1))",
                                                 'name=f"{name}-crop_1"'], "(x)", 1)
    assert lines == ["x = layers.Cropping2D(", "    cropping=(", "        (",
                     f"            {wide},", f"            {wide},", "        ),",
                     "        (1, 1),", "    ),", '    name=f"{name}-crop_1",', ")(x)"]
    group = "units=(" + " + ".join(["inputs.shape[-1]"] * 6) + ")"
    assert call_lines("x = layers.Dense", [group], "(x)", 1)[1] == f"    {group},"


def test_plain_chain_is_sequential_and_compiles_as_train_does(tmp_path, keras):
    source = (EXAMPLES / "mnist.cnn").read_text()
    path = build(tmp_path, source, "mnist.cnn")
    code = path.read_text()
    assert "keras.Sequential(" in code and "def compile_model(model):" in code
    module = load_module(path)
    keras.backend.clear_session()
    model = module.compile_model(module.build_model())
    assert isinstance(model, keras.Sequential)
    assert_matches_check(keras, model, source)
    assert type(model.optimizer).__name__ == "Adam"
    assert model.loss == "categorical_crossentropy"
    import numpy as np

    x = np.zeros((4, 28, 28, 1), "float32")
    y = np.eye(10, dtype="float32")[[0, 1, 2, 3]]
    history = model.fit(x, y, epochs=1, verbose=0)
    assert {"loss", "accuracy"} <= set(history.history)
    keras.backend.clear_session()


def test_optimizer_options_and_metric_classes_are_rendered(tmp_path):
    source = ("network n { input 4x4x1; flatten; dense 2 softmax }\n"
              "train { optimizer sgd lr=0.01 momentum=0.9 nesterov=true\n"
              "        loss mse; metrics accuracy auc }")
    code = build(tmp_path, source).read_text()
    assert ("optimizer=keras.optimizers.SGD(learning_rate=0.01, momentum=0.9, "
            "nesterov=True)") in code
    assert 'loss="mse"' in code and 'metrics=["accuracy", keras.metrics.AUC()]' in code
    no_train = build(tmp_path, "network n { input 4x4x1; flatten }").read_text()
    assert "compile_model" not in no_train


def test_running_the_module_prints_the_summary_alone(tmp_path):
    """No TensorFlow start-up log lines: the module quiets them itself, with no help from
    the environment (TF_CPP_MIN_LOG_LEVEL unset)."""
    path = build(tmp_path, (EXAMPLES / "lenet5.cnn").read_text(), "lenet5.cnn")
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL",
                                                            "KERAS_BACKEND")}
    proc = subprocess.run([sys.executable, str(path)], capture_output=True, text=True,
                          timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    total = analyse((EXAMPLES / "lenet5.cnn").read_text()).analysis.totals.params
    assert "Total params" in proc.stdout and f"{total:,}" in proc.stdout


def test_build_imports_neither_keras_nor_tensorflow():
    code = ("import sys; from cnndsl.backends.codegen import generate; "
            "generate(open('examples/resnet50.cnn').read(), 'r.cnn'); "
            "print([m for m in sys.modules if m.split('.')[0] in ('keras', 'tensorflow')])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=EXAMPLES.parent)
    assert proc.stdout.strip() == "[]", proc.stderr


def test_header_and_imports(tmp_path):
    code = build(tmp_path, (EXAMPLES / "resnet50.cnn").read_text(), "resnet50.cnn").read_text()
    from cnndsl import __version__

    assert f"cnndsl {__version__}" in code and '"resnet50.cnn"' in code
    assert "params 25,636,712 (trainable 25,583,592, non-trainable 53,120)" in code
    assert "MACs " in code
    assert "tensorflow" not in code
    imports = [line.strip() for line in code.splitlines()
               if line.strip().startswith(("import", "from"))]
    assert imports == ["import os", "import keras", "from keras import layers"]


# ----------------------------------------------------------------------------- blocks as functions

EDGE = """
block b(act) { conv 8 3x3 same act }
block names(n) {
  conv 8 1x1 as conv_2
  conv 8 1x1
  conv 8 1x1
  relu as repeat_1
  repeat 2 { relu }
}
block r(c) { conv c 1x1 same; batchnorm }
block s(n) {
  repeat n { r(4) }
  r(8)
  repeat n { conv 8 1x1; relu }
  repeat 2 { conv 8 1x1 }
  repeat n as stage { repeat 2 { conv 4 1x1 } }
}
block d(c, d=c*2, e=in.c, f=c, g=(2, 1)) { conv d 1x1; conv e 1x1; conv f 1x1; maxpool g }
block z(p) { zeropad p; conv 8 3x3 pad=p }
block zz(p) { conv 8 3x3 pad=p; maxpool 2 stride=p same }
block t(act) { activation act; conv in.c // 2 1x1 }
block e() {}
block cb(f, k=3x3, stride=1, padding=same) { conv f k stride=stride padding=padding }
block lambda(class, x, name, inputs, i, layers) { conv class+x+name+inputs+i+layers 1x1 as import }
block k(k) { conv 8 k same; reshape (1, in.h * in.w * 8) ; reshape (in.h, in.w, 8) }

network edge {
  input 16x16x3
  conv in.c * 2 1x1
  b(relu)
  b(swish)
  names(1)
  s(3)
  d(4)
  z(1)
  zz(2)
  t(relu)
  concat { | t(relu) | identity | conv 4 1x1 }
  repeat 3 { e() }
  repeat 2 { conv 8 1x1 pad=1 }
  identity as repeat_4
  repeat 3 { repeat 2 { k(3x3) } }
  cb(8); cb(8, 1x3, padding=valid); cb(f=4, stride=2)
  lambda(1, 2, 3, 4, 5, 6) as import
  concat axis=-1 { | identity | add { | identity | conv 21 1x1 } }
  globalavgpool; dense 10 softmax
}
"""


def test_blocks_become_functions_with_exact_names(tmp_path, keras):
    path = build(tmp_path, EDGE, "edge.cnn")
    code = path.read_text()
    # numbers, sizes and flag words are parameters; `act` is written positionally (a flag)
    # at its calls, so `b` and `t` are expanded in place, and say so
    for signature in ("def s(inputs, n, *, name):",
                      "def d(inputs, c, d_=None, e_=None, f=None, g=(2, 1), *, name):",
                      'def cb(inputs, f, k__=(3, 3), stride=1, padding="same", *, name):',
                      "def lambda_(inputs, class_, x_, name_, inputs_, i_, layers_, *, name):"):
        assert signature in code
    assert "def b(" not in code and "def t(" not in code and "`b`, `t`" in code
    assert 'name=f"{name}-r_{n + 1}"' in code  # a counter after a symbolic repeat
    assert 'name=f"{name}-repeat_{n + i + 1}-conv_1"' in code
    assert "for j in range(2):" in code  # nested loops
    # unrolled around names taken by hand, as the elaborator skips them
    assert 'name=f"{name}-repeat_3-relu_1"' in code
    assert 'name=f"repeat_5-k_{i + 1}"' in code and 'name=f"repeat_6-k_{i + 1}"' in code
    assert "inputs.shape[-1] // 2" in code or "x1.shape[-1] // 2" in code
    keras.backend.clear_session()
    assert_matches_check(keras, load_module(path).build_model(), EDGE)
    keras.backend.clear_session()


ALL_OPS_CHAIN = """
network seq {
  input 32x32x3 as img
  rescale 1/255 offset=-0.5
  zeropad ((1, 0), (0, 1))
  conv 8 3x3 stride=(2, 1) pad=(1, 2) dilation=1 use_bias=false
  conv 16 3x3 same groups=2 dilation=2 relu
  dwconv 3x3 multiplier=2 same relu6
  sepconv 16 3x3 multiplier=2 pad=1 swish
  maxpool 3 stride=2 pad=1
  avgpool 2x2 same
  batchnorm momentum=0.9 epsilon=0.01 center=false
  activation tanh
  sigmoid
  identity
  dropout 0.1
  globalmaxpool keepdims=true
  reshape (-1, 16)
  flatten
  dense 10 use_bias=false softmax
}
"""

ALL_OPS_BLOCK = """
block all(f, k, s, d, g, m, r, mom, p, u, act=relu, pad_mode=same) {
  zeropad p
  conv f k stride=s pad=p dilation=1 use_bias=false
  conv f*2 k padding=pad_mode groups=g dilation=d activation=act
  dwconv k multiplier=m padding=same
  sepconv f k multiplier=m pad=p activation=act
  maxpool k stride=s pad=p
  avgpool 2x2 same
  batchnorm momentum=mom epsilon=0.01 center=false
  dropout r
  multiply { | identity | globalavgpool keepdims=true; dense f sigmoid }
  add { | identity | conv f 1x1 }
  concat axis=3 { | identity | conv f 1x1 }
  globalmaxpool keepdims=true
  reshape (-1, 2*f)
  flatten
  dense u use_bias=false
}
block s2(f) { all(f, 3x3, 1, 2, 2, 2, 0.1, 0.9, 1, 10) }
network fn {
  input 32x32x3
  rescale 1/255 offset=-0.5
  all(8, 3, 2, 1, 1, 1, 0.2, 0.95, 1, 10, act=swish, pad_mode=valid) as a
  reshape 1x1x10
  s2(4)
  reshape 1x1x10
  s2(6)
  reshape 1x1x10
}
"""


@pytest.mark.parametrize("source", [ALL_OPS_CHAIN, ALL_OPS_BLOCK], ids=["chain", "block"])
def test_every_op_literal_and_symbolic(source, tmp_path, keras):
    path = build(tmp_path, source)
    code = path.read_text()
    if source is ALL_OPS_CHAIN:
        assert "keras.Sequential(" in code
    else:  # every argument of every op given by a parameter, and still one function
        assert ("def all_(inputs, f, k_, s, d, g, m, r, mom, p, u, act=\"relu\", "
                "pad_mode=\"same\", *, name):") in code
        assert "Expanded" not in code and "padding=((p, p), (p, p))" in code
    keras.backend.clear_session()
    assert_matches_check(keras, load_module(path).build_model(), source)
    keras.backend.clear_session()
    assert_ruff_clean([str(path)], RUFF_FORMAT, ["check", "--isolated"])


REPEAT_INDEX = """
block unit(c, rate) {
  conv c 3x3 same
  conv max(8, floor(c * 1.5 + 4) // 8 * 8) + ceil(c / 4) 1x1
  dropout rate noise_shape=(1, 1, 1)
}
block stage(n, first, blocks) {
  repeat n index=b { unit(4 + b, 0.2 * (first + b) / blocks) }
}
network idx {
  input 16x16x3
  repeat 1 index=i { conv 8 + i 1x1 }
  stage(3, 0, 5)
  stage(2, 3, 5)
  repeat 2 index=i { repeat 2 index=j { conv 2 + 2 * i + j 1x1 } }
}
"""


def test_repeat_index_becomes_the_loop_variable(tmp_path, keras):
    """`repeat N index=i`: the loop variable in the generated `for`, the repetition's
    number when unrolled; every layer and every dropout rate as `check` has them."""
    path = build(tmp_path, REPEAT_INDEX)
    code = path.read_text()
    assert "for b in range(n):" in code
    assert "x = unit(x, 4 + b, 0.2 * (first + b) / blocks, name=" in code
    assert "filters=2 + 2 * i + j," in code and "\nimport math\n" in code
    assert "filters=max(8, math.floor(c * 1.5 + 4) // 8 * 8) + math.ceil(c / 4)," in code
    keras.backend.clear_session()
    model = load_module(path).build_model()
    assert_matches_check(keras, model, REPEAT_INDEX)
    rates = [layer.get_config()["rate"] for layer in model.layers
             if isinstance(layer, keras.layers.Dropout)]
    assert rates == [0.2 * b / 5 for b in range(5)]
    filters = [layer.filters for layer in model.layers
               if isinstance(layer, keras.layers.Conv2D)]
    assert filters == [8, 4, 9, 5, 10, 6, 10, 4, 9, 5, 10, 2, 3, 4, 5]
    keras.backend.clear_session()
    assert_ruff_clean([str(path)], RUFF_FORMAT, ["check", "--isolated"])


@pytest.mark.parametrize("example", ["inception_module.cnn", "mobilenet_v2.cnn"])
def test_flat_fallback_is_exact(example, tmp_path, keras):
    source = (EXAMPLES / example).read_text()
    path = build(tmp_path, source, example, force_flat=True)
    code = path.read_text()
    assert "Written layer by layer" in code and "\ndef build_model" in code
    assert code.count("\ndef ") == 1
    keras.backend.clear_session()
    assert_matches_check(keras, load_module(path).build_model(), source)
    keras.backend.clear_session()


def test_edge_and_flat_code_pass_ruff(tmp_path):
    build(tmp_path, EDGE, "edge.cnn")
    (tmp_path / "flat.py").write_text(generate(EDGE, "edge.cnn", force_flat=True)[0])
    (tmp_path / "hostile.py").write_text(generate(HOSTILE, HOSTILE_FILE)[0])
    assert_ruff_clean([str(p) for p in tmp_path.glob("*.py")], RUFF_FORMAT, RUFF_STRICT)


def test_deeply_nested_repeats_stay_valid_python():
    depth = 10
    source = ("network n { input 2x2x1\n" + "repeat 2 { " * depth + "relu"
              + " }" * depth + "\n}\n")
    code, _ = generate(source, "deep.cnn")
    compile(code, "deep.py", "exec")
    assert "Written layer by layer" in code and "for " not in code
    assert code.count('name="repeat_2-repeat_1-repeat_2') > 0


def test_several_networks_pick_one(tmp_path, keras):
    source = ("block c(f) { conv f 1x1 }\n"
              "network a { input 4x4x1; c(2) }\nnetwork b { input 4x4x1; c(3); c(5) }")
    code, _ = generate(source, "two.cnn", "b")
    assert 'name="network b"' not in code and 'name="b")' in code
    with pytest.raises(Exception, match="choose one"):
        generate(source, "two.cnn")


# ----------------------------------------------------------------------------- injection

HOSTILE_FILE = 'evil"\n__import__("os").system("touch PWNED")\n#\'\\\u2028.cnn'
HOSTILE = """
block __import__(exec, eval, os, print) { conv exec+eval+os+print 1x1 as __import__ }
block exec() { relu as eval }
block build_model(compile_model) { dense compile_model as open }
block keras(layers) { conv layers 1x1 }
network __builtins__ {
  input 8x8x1
  __import__(1, 2, 3, 4) as system
  exec() as getattr
  keras(2) as keras
  flatten as sys
  build_model(3) as __class__
}
"""


QUIET_IMPORT = ("import os\n\n", """
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
_devnull, _stderr = os.open(os.devnull, os.O_WRONLY), os.dup(2)
os.dup2(_devnull, 2)
try:
    import keras
    from keras import layers
finally:
    os.dup2(_stderr, 2)
    os.close(_devnull)
    os.close(_stderr)
""")


def assert_inert(code: str) -> None:
    """Only keras is imported, in the fixed quiet import (the only use of `os`); every
    call is keras's, a function of the module, or range; no builtin but range is named."""
    import ast as pyast
    import builtins

    head, quiet = QUIET_IMPORT
    assert code.count(head) == 1 and code.count(quiet) == 1
    tree = pyast.parse(code.replace(head, "").replace(quiet, "\n" + textwrap.dedent(
        quiet.split("try:\n")[1].split("finally:")[0])))
    imports = [pyast.unparse(n) for n in pyast.walk(tree)
               if isinstance(n, pyast.Import | pyast.ImportFrom)]
    assert imports == ["import keras", "from keras import layers"]
    defined = {f.name for f in tree.body if isinstance(f, pyast.FunctionDef)}
    for node in pyast.walk(tree):
        if isinstance(node, pyast.Call):
            f = node.func
            while isinstance(f, pyast.Attribute | pyast.Call):
                f = f.value if isinstance(f, pyast.Attribute) else f.func
            assert isinstance(f, pyast.Name), pyast.unparse(node)
            assert f.id in defined | {"keras", "layers", "range", "model"}, pyast.unparse(node)
        if isinstance(node, pyast.Name):
            assert node.id in ("range", "None", "__name__") or not hasattr(builtins, node.id), \
                node.id
        if isinstance(node, pyast.FunctionDef):
            names = [a.arg for a in node.args.args + node.args.kwonlyargs]
            assert not any(hasattr(builtins, n) for n in [node.name, *names]), node.name


def test_hostile_names_are_renamed_and_inert(tmp_path, keras, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _ = generate(HOSTILE, HOSTILE_FILE)
    assert_inert(code)
    assert "def __import___(inputs, exec__, eval_, os, print_, *, name):" in code
    assert "def build_model_(inputs, compile_model_, *, name):" in code
    path = tmp_path / "hostile.py"
    path.write_text(code)
    keras.backend.clear_session()
    model = load_module(path).build_model()
    assert_matches_check(keras, model, HOSTILE)
    assert model.name == "__builtins__"
    assert not (tmp_path / "PWNED").exists()
    keras.backend.clear_session()


@pytest.mark.parametrize("line", [
    'dense 10 "softmax\\"); __import__(\'os\')#"',
    'activation "relu\\n__import__(\'os\')"',
    'conv 8 3x3 padding="same\\"\\nimport os"',
    'dropout "0.5"',
    'reshape "1x2"',
])
def test_hostile_strings_are_refused_by_check(line):
    source = f"network n {{\n  input 8x8x2\n  flatten\n  {line}\n}}\n"
    code, diagnostics = generate(source, "n.cnn")
    assert code is None and any(d.severity == "error" for d in diagnostics)


@pytest.mark.parametrize("entry", [
    'dataset "mnist\\"); __import__(\'os\')#"',
    'optimizer "adam()\\nimport os"',
    'loss "mse\\" + __import__(\'os\').name + \\""',
    'metrics accuracy "x\\nimport os"',
    "optimizer adam lr=\"0.1)\\nimport os#\"",
])
def test_hostile_train_entries_are_refused(entry):
    source = f"network n {{ input 4x4x1; flatten; dense 2 softmax }}\ntrain {{ {entry} }}\n"
    code, diagnostics = generate(source, "n.cnn")
    assert code is None and any(d.severity == "error" for d in diagnostics)


def test_literals_and_identifiers():
    for s in ['a"b', "a'b", "a'\"b", "back\\slash", "new\nline", "\u2028", "{x}", ""]:
        assert ast.literal_eval(string_literal(s)) == s
        assert "\n" not in string_literal(s)
    assert string_literal("relu") == '"relu"'
    assert literal((1, (2, 3), -1.5e-05, True, None)) == "(1, (2, 3), -1.5e-05, True, None)"
    assert literal((1e16, 2.5e300, 1e-05)) == "(1e16, 2.5e300, 1e-05)"
    assert ast.literal_eval(literal((1e16, 2.5e300))) == (1e16, 2.5e300)
    assert identifier("class") == "class_" and identifier("match") == "match_"
    assert identifier("print") == "print_" and identifier("x1") == "x1_"
    assert identifier("c", {"c", "c_"}) == "c__"
    for bad in ["a b", "a-b", "1a", "a\n", "a.b", ""]:
        with pytest.raises(ValueError):
            identifier(bad)


# ----------------------------------------------------------------------------- the command


def test_build_command_writes_next_to_the_input(tmp_path, capsys):
    src = tmp_path / "net.cnn"
    src.write_text((EXAMPLES / "mnist.cnn").read_text())
    assert build_command(src, None, None) == 0
    out = tmp_path / "net.py"
    assert out.exists() and "def build_model" in out.read_text()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp
    assert build_command(src, str(tmp_path / "other.py"), None) == 0
    assert (tmp_path / "other.py").read_text() == out.read_text()
    capsys.readouterr()
    assert build_command(src, "-", None) == 0
    assert capsys.readouterr().out == out.read_text()


def test_build_command_refuses_a_file_with_errors(tmp_path, capsys):
    src = tmp_path / "bad.cnn"
    src.write_text("network n {\n  input 8x8x1\n  conv 8 9x9\n}\n")
    assert build_command(src, None, None) == 1
    err = capsys.readouterr().err
    assert "error:" in err and "bad.cnn:3" in err and "has 1 error" in err
    assert not (tmp_path / "bad.py").exists()
    # an existing output is left as it was
    (tmp_path / "bad.py").write_text("old")
    assert build_command(src, None, None) == 1
    assert (tmp_path / "bad.py").read_text() == "old"


def test_self_referential_input_is_not_built(tmp_path, capsys):
    src = tmp_path / "self.cnn"
    src.write_text("network n {\n  input in.c // 2\n  flatten\n}\n")
    assert build_command(src, None, None) == 1
    assert "the input's sizes must be numbers" in capsys.readouterr().err
    assert not (tmp_path / "self.py").exists()


def test_build_command_usage_errors(tmp_path, capsys):
    src = tmp_path / "two.cnn"
    src.write_text("network a { input 4x4x1 }\nnetwork b { input 4x4x1 }\n")
    assert build_command(src, None, None) == 2
    assert "--network" in capsys.readouterr().err
    assert build_command(src, None, "c") == 2
    assert build_command(src, None, "b") == 0 and (tmp_path / "two.py").exists()
    assert build_command(tmp_path / "missing.cnn", None, None) == 2
    assert build_command(src, str(tmp_path / "x.txt"), "a") == 2
    py = tmp_path / "net.py"
    py.write_text("network a { input 4x4x1 }\n")
    assert build_command(py, None, None) == 2  # would overwrite its own input
    assert build_command(src, str(tmp_path / "no" / "dir.py"), "a") == 2


def test_docs_before_and_after_is_current_output():
    doc = (ROOT / "docs" / "build.md").read_text()
    after = doc.split("```python\n", 1)[1].split("```", 1)[0]
    source = (EXAMPLES / "inception_module.cnn").read_text()
    assert source in doc
    assert after == generate(source, "examples/inception_module.cnn")[0]


# ----------------------------------------------------------------------------- random programs


def random_program(rng) -> str:
    """Blocks with parameters, calls, aliases that collide with generated names, repeats
    with symbolic counts, nested paths: the naming rules' corners."""
    def stmt(params: list[str], depth: int, blocks: list[tuple[str, int]]) -> str:
        c = rng.random()
        alias = (f" as {rng.choice(['conv_2', 'repeat_1', 'relu_1', 'foo', 'b0_1'])}"
                 if rng.random() < 0.15 else "")
        num = rng.choice([str(rng.randint(1, 4)), *(params or ["2"]), "in.c", "in.c // 2",
                          *([f"{rng.choice(params)}+1"] if params else [])])
        if c < 0.25:
            return f"conv {num} {rng.choice(['1x1', '3x3', '(1, 3)'])} same{alias}"
        if c < 0.35:
            return rng.choice(["relu", "batchnorm", "identity", "dropout 0.1",
                               "zeropad 1; conv 2 3x3"]) + alias
        if c < 0.5 and blocks:
            b, n = rng.choice(blocks)
            args = ", ".join(rng.choice([str(rng.randint(1, 3)), *(params or ["1"])])
                             for _ in range(n))
            return f"{b}({args}){alias}"
        if c < 0.65 and depth < 2:
            body = "; ".join(stmt(params, depth + 1, blocks) for _ in range(rng.randint(1, 2)))
            return (f"repeat {rng.choice(['1', '2', *(params or ['2'])])}"
                    f"{rng.choice(['', '', ' as stage'])} {{ {body} }}")
        if c < 0.8 and depth < 2:
            paths = " ".join("| " + "; ".join(stmt(params, depth + 1, blocks)
                                              for _ in range(rng.randint(1, 2)))
                             for _ in range(rng.randint(2, 3)))
            return f"concat {{ {paths} }}"
        return f"conv {num} 1x1"

    blocks: list[tuple[str, int]] = []
    text = []
    for k in range(rng.randint(1, 3)):
        params = [f"p{j}" for j in range(rng.randint(0, 2))]
        body = "\n  ".join(stmt(params, 0, blocks) for _ in range(rng.randint(1, 4)))
        text.append(f"block b{k}({', '.join(params)}) {{\n  {body}\n}}")
        blocks.append((f"b{k}", len(params)))
    net = "\n  ".join(stmt([], 0, blocks) for _ in range(rng.randint(2, 5)))
    return "\n".join([*text, f"network n {{\n  input 8x8x2\n  {net}\n  globalavgpool\n}}\n"])


def test_random_programs_build_what_check_reports(tmp_path, keras):
    import random

    rng = random.Random(4)
    built = 0
    while built < 8:
        source = random_program(rng)
        result = analyse(source)
        if not result.ok or len(result.analysis.layers) > 200:
            continue
        path = build(tmp_path, source, f"r{built}.cnn")
        assert_inert(path.read_text())
        keras.backend.clear_session()
        assert_matches_check(keras, load_module(path).build_model(), source)
        built += 1
    keras.backend.clear_session()
    files = [str(p) for p in tmp_path.glob("*.py")]
    proc = subprocess.run([sys.executable, "-m", "ruff", "format", "--isolated", "--check",
                           *files], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout
