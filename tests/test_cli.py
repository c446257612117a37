"""The `check` command as a user meets it: output, JSON schema, exit codes, speed rules."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import EXAMPLES, ROOT, example_networks, network_id, run_cnndsl

LAYER_KEYS = {"name", "op", "keras", "scope", "output_shape", "params", "trainable_params",
              "macs", "receptive_field", "unshared_params", "line"}
DIAGNOSTIC_KEYS = {"severity", "message", "line", "column", "end_line", "end_column", "hint"}


def check_json(path) -> tuple[dict, int]:
    proc = run_cnndsl("check", str(path), "--json")
    return json.loads(proc.stdout), proc.returncode


@pytest.mark.parametrize("case", example_networks(), ids=network_id)
def test_examples_check_clean(case):
    example, network = case
    proc = run_cnndsl("check", str(example), *(["--network", network] if network else []))
    assert proc.returncode == 0, proc.stderr
    assert "Total params:" in proc.stdout
    assert "\033[" not in proc.stdout  # NO_COLOR and a pipe: plain text


def test_json_schema_and_totals():
    data, code = check_json(EXAMPLES / "mnist.cnn")
    assert code == 0
    assert {"file", "network", "input_shape", "output_shape", "params", "macs", "flops",
            "layers", "diagnostics"} <= data.keys()
    assert data["network"] == "mnist"
    assert data["input_shape"] == [28, 28, 1] and data["output_shape"] == [10]
    assert data["params"] == {"total": 52138, "trainable": 52138, "non_trainable": 0}
    assert data["flops"] == 2 * data["macs"]
    assert data["macs"] == sum(layer["macs"] for layer in data["layers"])
    for layer in data["layers"]:
        assert layer.keys() >= LAYER_KEYS
    names = [layer["name"] for layer in data["layers"]]
    assert names[-1] == "output" and "FC1" in names
    conv = data["layers"][1]
    assert (conv["op"], conv["keras"], conv["output_shape"], conv["params"]) == (
        "conv", "Conv2D", [26, 26, 8], 80)


def test_json_scopes_and_block_totals():
    data, _ = check_json(EXAMPLES / "resnet50.cnn")
    assert data["params"] == {"total": 25636712, "trainable": 25583592,
                              "non_trainable": 53120}
    nested = [x for x in data["layers"] if x["name"] == "conv3/block_1/conv_1"]
    assert nested and nested[0]["scope"] == ["conv3", "block_1"]
    blocks = {b["name"]: b for b in data["blocks"]}
    inner = [x["params"] for x in data["layers"] if x["scope"][:1] == ["conv3"]]
    assert blocks["conv3"]["params"] == sum(inner)


def test_json_reports_diagnostics_with_positions(tmp_path):
    bad = tmp_path / "bad.cnn"
    bad.write_text("network n {\n  input 8x8x1\n  conv 4 9x9\n}\n")
    data, code = check_json(bad)
    assert code == 1
    [d] = data["diagnostics"]
    assert d.keys() >= DIAGNOSTIC_KEYS
    assert (d["severity"], d["line"], d["column"]) == ("error", 3, 3)
    assert data["layers"][-1]["output_shape"] is None


def test_exit_codes(tmp_path):
    warn = tmp_path / "warn.cnn"
    warn.write_text("network n {\n  input 8x8x3\n  dense 4\n}\n")
    assert run_cnndsl("check", str(warn)).returncode == 0
    missing = run_cnndsl("check", str(tmp_path / "missing.cnn"))
    assert missing.returncode == 2
    assert missing.stderr.strip().count("\n") == 0 and "no such file" in missing.stderr
    bad_option = run_cnndsl("check", "--nope", str(warn))
    assert bad_option.returncode == 2 and "Traceback" not in bad_option.stderr
    assert bad_option.stderr.strip().count("\n") == 0


def test_network_choice(tmp_path):
    two = tmp_path / "two.cnn"
    two.write_text("network a { input 4x4x1 }\nnetwork b { input 8x8x1; flatten }\n")
    both = run_cnndsl("check", str(two))  # the text report checks every network in turn
    assert both.returncode == 0 and "network a " in both.stdout and "network b " in both.stdout
    ambiguous = run_cnndsl("check", str(two), "--json")
    assert ambiguous.returncode == 2 and "--network" in ambiguous.stderr
    data = json.loads(run_cnndsl("check", str(two), "--json", "--network", "b").stdout)
    assert data["output_shape"] == [64]
    assert run_cnndsl("check", str(two), "--network", "c").returncode == 2


def test_colour_only_when_asked(tmp_path):
    proc = run_cnndsl("check", str(EXAMPLES / "mnist.cnn"),
                      env={"NO_COLOR": "", "FORCE_COLOR": "1"})
    assert "\033[" in proc.stdout


def test_python_m_and_version():
    proc = run_cnndsl("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("cnndsl ")


def test_check_never_imports_tensorflow():
    code = (
        "import sys\n"
        "from cnndsl.cli import app\n"
        "try:\n"
        f"    app(['check', {str(EXAMPLES / 'resnet50.cnn')!r}, '--json'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')]\n"
        "sys.stderr.write(repr(heavy))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)
    assert proc.stderr.strip().endswith("[]"), proc.stderr[-500:]


def test_check_without_network_reports_every_network_of_the_file():
    proc = run_cnndsl("check", str(EXAMPLES / "vgg.cnn"))
    assert proc.returncode == 0, proc.stderr
    tables = [line.split()[1] for line in proc.stdout.splitlines()
              if line.startswith("network ")]
    assert tables == ["vgg16", "vgg19"]
    totals = [line for line in proc.stdout.splitlines() if line.startswith("Total params:")]
    for network, line in zip(tables, totals, strict=True):
        one = run_cnndsl("check", str(EXAMPLES / "vgg.cnn"), "--network", network).stdout
        assert line in one


def test_check_json_of_several_networks_needs_network():
    proc = run_cnndsl("check", str(EXAMPLES / "vgg.cnn"), "--json")
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "choose one with --network NAME" in proc.stderr
