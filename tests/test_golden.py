"""Golden-file diagnostics: every tests/golden/NAME.cnn is checked and its stderr compared
with NAME.out (see tests/golden/README.md). The test never writes them: regenerate with
`python tests/golden/update.py`."""

from __future__ import annotations

from pathlib import Path

import pytest

from cnndsl.cli import app

GOLDEN = Path(__file__).parent / "golden"
CASES = sorted(p.stem for p in GOLDEN.glob("*.cnn"))


def run_check(name: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> str:
    """`cnndsl check NAME.cnn` in-process, from tests/golden, without colour: the .out text."""
    monkeypatch.chdir(GOLDEN)
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.delenv("CNNDSL_DEBUG", raising=False)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        app(["check", f"{name}.cnn"])
    code = exit_info.value.code
    return f"# exit: {0 if code is None else code}\n" + capsys.readouterr().err


@pytest.mark.parametrize("name", CASES)
def test_golden(name: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture):
    actual = run_check(name, monkeypatch, capsys)
    expected_path = GOLDEN / f"{name}.out"
    assert expected_path.exists(), f"{name}.out is missing: run tests/golden/update.py {name}"
    expected = expected_path.read_text()
    assert actual == expected, f"stderr of `cnndsl check {name}.cnn` changed"


def test_every_output_has_its_input():
    orphans = sorted(p.name for p in GOLDEN.glob("*.out") if p.stem not in CASES)
    assert not orphans, f"golden outputs without a .cnn: {orphans}"


def test_no_traceback_and_exit_codes_agree():
    """Every golden output ends in a summary that agrees with its exit code."""
    for name in CASES:
        path = GOLDEN / f"{name}.out"
        if not path.exists():
            continue
        text = path.read_text()
        first, _, rest = text.partition("\n")
        assert "Traceback" not in text and "internal error" not in text, name
        errors = "error: " in rest
        assert first == f"# exit: {1 if errors else 0}", name


TABLES = GOLDEN / "tables"
TABLE_CASES = sorted(p.stem for p in TABLES.glob("*.out"))


@pytest.mark.parametrize("case", TABLE_CASES)
def test_golden_folded_table(case: str, monkeypatch: pytest.MonkeyPatch,
                             capsys: pytest.CaptureFixture):
    """tables/NAME.depthN.out: the table `cnndsl check NAME.cnn --depth N` prints."""
    name, depth = case.rsplit(".depth", 1)
    monkeypatch.chdir(TABLES)
    monkeypatch.setenv("NO_COLOR", "1")
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        app(["check", f"{name}.cnn", "--depth", depth])
    actual = f"# exit: {exit_info.value.code or 0}\n" + capsys.readouterr().out
    expected = (TABLES / f"{case}.out").read_text()
    assert actual == expected, f"the table of `cnndsl check {name}.cnn --depth {depth}` changed"


def test_folded_tables_have_their_inputs():
    assert len(TABLE_CASES) >= 3
    assert all((TABLES / f"{case.rsplit('.depth', 1)[0]}.cnn").exists() for case in TABLE_CASES)
