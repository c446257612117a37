"""The README shows real programs and real output: keep them true."""

from __future__ import annotations

import re

import pytest
from conftest import EXAMPLES, ROOT, example_networks, run_cnndsl

from cnndsl.analysis.pipeline import analyse
from cnndsl.backends.report import human

README = (ROOT / "README.md").read_text()
PROGRAMS = [block for _, block in re.findall(r"```(\w*)\n(.*?)```", README, re.S)
            if re.search(r"^network \w+ \{", block, re.M)]


def test_readme_has_programs():
    assert len(PROGRAMS) >= 2


@pytest.mark.parametrize("program", PROGRAMS, ids=lambda p: p.split("{")[0][:30])
def test_readme_programs_check_without_errors(program):
    result = analyse(program)
    assert result.ok, result.diagnostics


def test_readme_check_sample_is_current_output():
    sample = README.split("$ cnndsl check examples/mnist.cnn\n", 1)[1].split("```", 1)[0]
    out = run_cnndsl("check", "examples/mnist.cnn").stdout
    assert sample.strip() == out.strip()


def _zoo_rows(first_cell: str) -> list[list[str]]:
    """The cells of docs/zoo.md's table rows that start with `first_cell` (a regex)."""
    zoo = (ROOT / "docs" / "zoo.md").read_text()
    return [[c.strip() for c in line.strip("|").split("|")]
            for line in re.findall(rf"^\| {first_cell} \|.*$", zoo, re.M)]


def _network_name(path, network):
    return network or analyse(path.read_text()).analysis.graph.network


def test_zoo_table_lists_every_example_with_its_totals():
    rows = {(cells[0].strip("`"), cells[1]): cells for cells in _zoo_rows(r"`\w+\.cnn`")
            if len(cells) == 9}  # the totals table, not the list of papers
    assert set(rows) == {(path.name, _network_name(path, network))
                         for path, network in example_networks()}
    for (name, network), cells in rows.items():
        a = analyse((EXAMPLES / name).read_text(), network).analysis
        assert cells[5] == f"{a.totals.params:,}", name
        assert cells[6] == f"{a.totals.non_trainable:,}", name
        assert cells[7] == human(a.totals.macs), name


def test_zoo_table_lists_every_keras_application():
    """One row per keras.applications constructor; a written one names its example
    network, with check's totals, equal to the Keras figures beside them (which
    tests/test_zoo.py proves layer by layer)."""
    import keras
    from test_zoo import keras_twins

    rows = {cells[0]: cells for cells in _zoo_rows(r"[A-Z]\w+") if len(cells) == 8}
    assert set(rows) == {n for n in dir(keras.applications) if n[0].isupper()}
    twins = {twin.constructor: (twin.example, twin.network) for twin in keras_twins()}
    for name, cells in rows.items():
        if name not in twins:
            assert cells[1:4] == ["", "", ""] and cells[6] == "" and cells[7], name
            continue
        file, network = twins[name]
        assert cells[1] == f"`{file}` {network}", name
        a = analyse((EXAMPLES / file).read_text(), network).analysis
        ours = [f"{a.totals.params:,}", f"{a.totals.non_trainable:,}"]
        assert cells[2:4] == ours and cells[4:6] == ours, name
        assert (cells[6], cells[7]) == (human(a.totals.macs), "exact"), name


# ------------------------------------------------------------- docs/api.md's examples

API_DOC = (ROOT / "docs" / "api.md").read_text()
API_BLOCKS = re.findall(r"^```(\w*)\n(.*?)^```", API_DOC, re.S | re.M)


def test_api_doc_has_examples():
    kinds = [kind for kind, _ in API_BLOCKS]
    assert kinds.count("python") >= 5 and kinds.count("ipython") >= 3


def test_api_doc_examples_run_and_print_what_they_show(monkeypatch):
    """Each python and ipython block runs, in order, in one namespace, from the root (the
    ipython ones through a real IPython shell); a `text` block right after an example is
    what it printed (the magic's diagnostics go to stderr, counted with stdout)."""
    import contextlib
    import io
    import warnings

    from IPython.core.interactiveshell import InteractiveShell

    monkeypatch.chdir(ROOT)
    InteractiveShell.clear_instance()
    shell = InteractiveShell.instance()
    namespace = shell.user_ns
    try:
        for i, (kind, block) in enumerate(API_BLOCKS):
            if kind not in ("python", "ipython"):
                continue
            out = io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(
                    out if kind == "ipython" else io.StringIO()), warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                if kind == "python":
                    exec(compile(block, f"docs/api.md block {i}", "exec"), namespace)
                else:
                    result = shell.run_cell(block, store_history=False, silent=True)
                    assert result.success, (block, out.getvalue())
            following = API_BLOCKS[i + 1] if i + 1 < len(API_BLOCKS) else ("", "")
            if following[0] == "text":
                assert out.getvalue().strip() == following[1].strip(), block
    finally:
        InteractiveShell.clear_instance()


def test_readme_python_example_runs_and_prints_its_comment(monkeypatch, capsys):
    """The README's Python sketch, but for its training line (one epoch of the file's full
    MNIST: docs/api.md's training example, on the bundled sample, runs instead)."""
    [block] = [b for kind, b in re.findall(r"^```(\w*)\n(.*?)^```", README, re.S | re.M)
               if kind == "python"]
    monkeypatch.chdir(ROOT)
    lines = block.splitlines()
    exec("\n".join(line for line in lines if ".train(" not in line), {})
    [shown] = [line.split("#", 1)[1].strip() for line in lines if line.startswith("print(")]
    assert capsys.readouterr().out.strip() == shown
