"""The README shows real programs and real output: keep them true."""

from __future__ import annotations

import re

import pytest
from conftest import EXAMPLES, ROOT, run_cnndsl

from cnndsl.pipeline import analyse

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


def test_zoo_table_lists_every_example_with_its_totals():
    zoo = (ROOT / "docs" / "zoo.md").read_text()
    lines = re.findall(r"^\| `(\w+\.cnn)` \|(.*)$", zoo, re.M)
    rows = {name: [c.strip() for c in rest.split("|")] for name, rest in lines
            if rest.count("|") == 8}  # the totals table, not the list of papers
    assert set(rows) >= {p.name for p in EXAMPLES.glob("*.cnn")}
    for name, cells in rows.items():
        totals = analyse((EXAMPLES / name).read_text()).analysis.totals
        assert cells[4] == f"{totals.params:,}", name
        assert cells[5] == f"{totals.non_trainable:,}", name
