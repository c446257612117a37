"""benchmarks/mutation.py breaks the code by replacing exact text: each mutation's text must
still be in its file exactly once, or the mutation score silently measures nothing."""

from __future__ import annotations

import sys

import pytest
from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
from mutation import MUTATIONS


@pytest.mark.parametrize("mutation", MUTATIONS, ids=lambda m: m.name)
def test_mutation_applies_to_the_current_code(mutation):
    text = (ROOT / mutation.path).read_text()
    assert text.count(mutation.old) == 1, f"update `{mutation.name}` in benchmarks/mutation.py"
    assert all((ROOT / t.split("::")[0]).is_file() for t in mutation.tests)
