"""Issue 13: examples/tour.ipynb runs top to bottom in a real Jupyter kernel (ipykernel,
through nbclient) and shows what it says; the `%%cnn` magic works in a real IPython shell."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import nbformat
import pytest
from conftest import EXAMPLES, ROOT
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from IPython.core.error import UsageError
from IPython.core.interactiveshell import ExecutionResult, InteractiveShell
from jupyter_client import KernelManager
from nbclient import NotebookClient

from cnndsl.common.limits import MAX_SOURCE_BYTES

TOUR = EXAMPLES / "tour.ipynb"
MNIST = (EXAMPLES / "mnist.cnn").read_text()
TWO = """
network small {
    input 8x8x1
    flatten
    dense 3 softmax
}
network wide {
    input 8x8x1
    conv 4 3x3
    flatten
    dense 5 softmax
}
"""
BAD = """network bad {
    input 8x8x1
    conv 4 11x11
    flatten
}
"""
STRIDED = """network strided {
    input 28x28x1
    conv 4 3x3 stride=2
    flatten
    dense 10 softmax
}
"""


# ---------------------------------------------------------------------- the notebook


def _cell(nb: nbformat.NotebookNode, cell_id: str) -> nbformat.NotebookNode:
    [cell] = [c for c in nb.cells if c.get("id") == cell_id]
    return cell


def _data(cell: nbformat.NotebookNode, mime: str) -> str:
    found = [o.data[mime] for o in cell.outputs if mime in o.get("data", {})]
    assert found, (mime, cell.outputs)
    return found[0]


def _stream(cell: nbformat.NotebookNode, name: str) -> str:
    return "".join(o.text for o in cell.outputs
                   if o.output_type == "stream" and o.name == name)


@pytest.fixture(scope="module")
def tour(tmp_path_factory: pytest.TempPathFactory) -> nbformat.NotebookNode:
    """The tour, executed as Jupyter runs it: a fresh kernel in the notebook's folder, this
    checkout first on its path (its run folder in a temporary folder of the test's). A cell
    that raises fails here, naming the cell."""
    nb = nbformat.read(TOUR, as_version=4)
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path, "NO_COLOR": "1",
           "TMPDIR": str(tmp_path_factory.mktemp("tour"))}
    # ipykernel's own kernel, run by this interpreter whatever kernelspecs are installed
    km = KernelManager(kernel_name="python3")
    km.kernel_spec.argv = [sys.executable, "-m", "ipykernel_launcher", "-f",
                           "{connection_file}"]
    client = NotebookClient(nb, km=km, timeout=180,
                            resources={"metadata": {"path": str(EXAMPLES)}})
    client.execute(env=env)
    return nb


def test_tour_is_stored_without_outputs():
    nb = nbformat.read(TOUR, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.id
    assert "widgets" not in nb.metadata


def test_tour_shows_no_traceback(tour):
    for cell in tour.cells:
        for output in cell.get("outputs", []):
            assert output.output_type != "error", (cell.id, output)
            assert "Traceback" not in json.dumps(output), cell.id


def test_tour_shows_the_table_as_html(tour):
    html = _data(_cell(tour, "table"), "text/html")
    assert "<table" in html
    for row in ("FC1", "output", "26x26x8", "52,138"):
        assert row in html, row


def test_tour_draws_an_svg(tour):
    svg = _data(_cell(tour, "diagram"), "image/svg+xml")
    assert "<svg" in svg and "FC1" in svg


def test_tour_magic_cell_binds_the_network(tour):
    assert "<table" in _data(_cell(tour, "magic"), "text/html")
    assert _stream(_cell(tour, "magic"), "stderr") == ""  # no warning either
    assert _stream(_cell(tour, "magic-use"), "stdout").split() == ["tiny", "(10,)"]


def test_tour_magic_error_is_rendered_as_check_renders_it(tour):
    cell = _cell(tour, "magic-error")
    err = _stream(cell, "stderr")
    assert "error:" in err and "^" in err, err
    assert "Traceback" not in err
    assert not [o for o in cell.outputs if "data" in o]  # no table for a failed cell


def test_tour_keras_model_has_the_checked_params(tour):
    out = _stream(_cell(tour, "keras"), "stdout")
    keras_count, ours = map(int, re.findall(r"\d+", out.replace(",", ""))[-2:])
    assert keras_count == ours == 52_138, out


def test_tour_trains_and_prints_the_accuracy(tour):
    out = _stream(_cell(tour, "train"), "stdout")
    accuracy = float(re.search(r"test accuracy: ([\d.]+)", out)[1])
    assert 0 < accuracy <= 1, out
    folder = Path(re.search(r"run folder: (.*)", out)[1].strip())
    assert (folder / "model.keras").is_file() and (folder / "metrics.json").is_file()


# ------------------------------------------------------------------------ the magic


@pytest.fixture(scope="module")
def shell() -> InteractiveShell:
    shell = InteractiveShell.instance()
    shell.run_cell("%load_ext cnndsl", store_history=False)
    yield shell
    InteractiveShell.clear_instance()


def _run(shell: InteractiveShell, line: str, cell: str) -> tuple[object, str]:
    """Run `%%cnn LINE` over CELL: the cell's result and its stderr. It must not raise."""
    result, out, err = _run_cell(shell, f"%%cnn {line}\n{cell}")
    assert result.error_before_exec is None and result.error_in_exec is None, (result, out)
    return result.result, err


def _run_cell(shell: InteractiveShell, text: str) -> tuple[ExecutionResult, str, str]:
    """The result of a cell, and what it printed on stdout (IPython's tracebacks too) and on
    stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        result = shell.run_cell(text, store_history=False)
    return result, out.getvalue(), err.getvalue()


def test_magic_binds_the_network_to_the_name(shell):
    shell.user_ns.pop("net", None)
    result, err = _run(shell, "net", MNIST)
    net = shell.user_ns["net"]
    assert result is net and err == ""
    assert (net.name, net.params.total) == ("mnist", 52_138)
    assert "FC1" in net._repr_html_()


def test_magic_without_a_name_binds_nothing(shell):
    before = set(shell.user_ns)
    result, err = _run(shell, "", MNIST)
    assert result.name == "mnist" and err == ""
    assert set(shell.user_ns) - before <= {"_", "__", "___"} | {f"_{i}" for i in range(99)}
    assert "mnist" not in shell.user_ns


@pytest.mark.parametrize("flag", ["--network", "-n"])
def test_magic_picks_one_network(shell, flag):
    _, err = _run(shell, f"wide {flag} wide", TWO)
    assert err == "" and shell.user_ns["wide"].output_shape == (5,)
    _, err = _run(shell, f"{flag} small small", TWO)
    assert err == "" and shell.user_ns["small"].output_shape == (3,)


def _cli_check(source: str, tmp_path: Path) -> str:
    """What `cnndsl check` prints on stderr for SOURCE, its file called as the magic calls
    a cell."""
    (tmp_path / "cell.cnn").write_text(source)
    cli = subprocess.run([sys.executable, "-m", "cnndsl", "check", "cell.cnn"], cwd=tmp_path,
                         capture_output=True, text=True, env={**os.environ, "NO_COLOR": "1"},
                         timeout=60)
    return cli.stderr.replace("cell.cnn", "<cell>")


def test_magic_errors_render_as_check_does_and_bind_nothing(shell, tmp_path):
    shell.user_ns["broken"] = "before"
    result, err = _run(shell, "broken", BAD)
    assert result is None and shell.user_ns["broken"] == "before"
    assert "11-wide window" in err and "^^^" in err and "Traceback" not in err
    assert err.strip() == _cli_check(BAD, tmp_path).strip()


def test_magic_warnings_render_as_check_does_and_the_network_is_bound(shell, tmp_path):
    shell.user_ns.pop("strided", None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the magic shows warnings itself, not as Python's
        result, err = _run(shell, "strided", STRIDED)
    assert result is shell.user_ns["strided"] and result.output_shape == (10,)
    assert "warning: stride 2 leaves" in err and "1 warning in `<cell>`" in err
    assert err.strip() == _cli_check(STRIDED, tmp_path).strip()


def test_magic_with_several_networks_and_no_choice_says_which(shell):
    result, err = _run(shell, "x", TWO)
    assert result is None and "x" not in shell.user_ns
    assert err.startswith("error: the cell defines 2 networks (small, wide)"), err
    assert "--network" in err
    _, err = _run(shell, "x --network nope", TWO)
    assert err.startswith("error: the cell has no network named `nope`") and "small" in err


def test_magic_refuses_a_cell_larger_than_a_file_may_be(shell):
    cell = MNIST + "#" * MAX_SOURCE_BYTES
    result, err = _run(shell, "huge", cell)
    assert result is None and "huge" not in shell.user_ns
    assert err == "error: the cell is larger than 1 MB, the limit for a .cnn file\n"


@pytest.mark.parametrize("line", [
    "1net", "a.b", "class", "a b", "--bogus", "net --network", '"unbalanced',
])
def test_magic_usage_errors_are_one_line(shell, line):
    before = dict(shell.user_ns)
    result, err = _run(shell, line, MNIST)
    assert result is None and err.startswith("error:") and "Traceback" not in err, err
    assert {k for k in shell.user_ns if not k.startswith("_")} == \
           {k for k in before if not k.startswith("_")}


def test_an_empty_cell_is_ipythons_one_line_usage_error(shell):
    """IPython itself refuses a cell magic with nothing under it, before calling it."""
    result, out, err = _run_cell(shell, "%%cnn net\n")
    assert isinstance(result.error_in_exec, UsageError)
    assert "UsageError: %%cnn is a cell magic, but the cell body is empty" in out + err
    assert "Traceback" not in out + err


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(line=st.text(alphabet=st.characters(blacklist_categories=["Cs"],
                                           blacklist_characters="\n\r"), max_size=20),
       cell=st.text(max_size=80) | st.sampled_from([MNIST, TWO, BAD, STRIDED]))
def test_magic_never_shows_a_traceback(shell, line, cell):
    result, out, err = _run_cell(shell, f"%%cnn {line}\n{cell}")
    assert result.error_before_exec is None
    if result.error_in_exec is not None:  # only IPython's refusal of an empty cell
        assert "cell body is empty" in str(result.error_in_exec), result.error_in_exec
    assert "Traceback" not in out + err


def test_import_cnndsl_does_not_import_ipython():
    code = "import sys, cnndsl; sys.exit('IPython' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0
