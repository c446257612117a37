"""`cnndsl fmt`: the canonical layout, idempotent and meaning-preserving (check's JSON is the
same before and after) on every example and on generated and mutated programs."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT
from hypothesis import given, settings
from hypothesis import strategies as st
from test_fuzz import FILES, SEEDS, SETTINGS, mutated_programs, programs

from cnndsl.analysis.pipeline import analyse
from cnndsl.backends import report
from cnndsl.editor.fmt import FormatError, format_source
from cnndsl.lang.parser import parse

FORMATTABLE = [p for p in FILES if parse(p.read_text())[0] is not None]


def _check_json(text: str) -> list[dict]:
    """`check --json` of every network; diagnostic columns move with spacing by design."""
    program, _ = parse(text)
    assert program is not None
    out = []
    for net in program.networks or [None]:
        data = report.to_json(analyse(text, net.name.id if net else None), "f.cnn")
        for d in data["diagnostics"]:
            d["column"] = d["end_column"] = None
            d["labels"] = [{**lab, "column": None} for lab in d["labels"]]
        out.append(data)
    return out


def assert_safe(text: str, align: bool = False) -> str:
    """fmt(text) means what text means, and formatting it again changes nothing."""
    try:
        once = format_source(text, align)
    except FormatError as err:
        assert err.diagnostics, f"refused a valid program: {err}\n{text}"
        return text
    assert _check_json(once) == _check_json(text)
    assert format_source(once, align) == once
    assert once.endswith("\n") and " \n" not in once
    return once


@pytest.mark.parametrize("path", FORMATTABLE, ids=lambda p: p.name)
def test_files_keep_meaning(path: Path) -> None:
    assert_safe(path.read_text())
    assert_safe(path.read_text(), align=True)


def test_examples_are_already_formatted() -> None:
    """The zoo is written in the canonical layout (inception_module.cnn, the README's own
    2-space example, aside)."""
    for path in sorted((Path(__file__).parent.parent / "examples").glob("*.cnn")):
        if path.name != "inception_module.cnn":
            assert format_source(path.read_text()) == path.read_text(), path.name


MESSY = """\
block f(c,k = 3) {
  add{|identity
  |conv c*2 k  stride = -1 ;relu   # keep me
     conv (c // 2) -1;zeropad -1
       }
}
network n {input 8x8x3   ;
\tf(c= 4,k=max( 2 , 3 ))as  x


 maxpool (3, 2)   # 3x3x12
conv 8 \\
  3x3
}
"""
CANONICAL = """\
block f(c, k=3) {
    add { | identity
        | conv c*2 k stride=-1; relu     # keep me
          conv (c // 2) - 1; zeropad -1
    }
}
network n { input 8x8x3
    f(c=4, k=max(2, 3)) as x


    maxpool (3, 2)   # 3x3x12
    conv 8 \\
        3x3
}
"""


def test_canonical_layout() -> None:
    assert format_source(MESSY) == CANONICAL
    assert_safe(MESSY)


def test_comment_lines_take_the_code_indentation() -> None:
    text = ("network n {\n input 8x8x1\n   # the stem\n concat {\n# first path\n  | relu\n"
            "        # second path\n  | relu\n      # still the second\n      relu\n"
            "    # last\n    }\n}\n")
    assert format_source(text) == (
        "network n {\n    input 8x8x1\n    # the stem\n    concat {\n        # first path\n"
        "        | relu\n        # second path\n        | relu\n          # still the second\n"
        "          relu\n          # last\n    }\n}\n")


def test_align_comments() -> None:
    text = "network n {\n    input 8x8x1 # a\n    conv 4 3x3 relu  # b\n\n    relu # c\n}\n"
    assert format_source(text, align_comments=True) == (
        "network n {\n    input 8x8x1      # a\n    conv 4 3x3 relu  # b\n\n"
        "    relu  # c\n}\n")


def test_comments_and_lines_stay_where_they_were() -> None:
    for path in FORMATTABLE:
        text = path.read_text()
        out = format_source(text)
        comments = lambda t: [re.sub(r"^.*?(#.*)$", r"\1", line).rstrip()  # noqa: E731
                              for line in t.splitlines() if "#" in line]
        assert comments(out) == comments(text), path.name
        assert len(out.rstrip("\n").split("\n")) == len(text.rstrip("\n").split("\n"))


def test_syntax_errors_refused() -> None:
    with pytest.raises(FormatError) as err:
        format_source("network n { conv 8 3x3\n")
    assert err.value.diagnostics


def test_refs_are_one_token() -> None:
    """`@name` (the graph language) is tokenized as one token, never split by spacing."""
    from cnndsl.editor.fmt import _tokenize

    assert [t.text for t in _tokenize("add @a  @b_2", 1)] == ["add", "@a", "@b_2"]


def _respace(draw, text: str) -> str:
    """The same program with random blanks between tokens and random indentation."""
    out = []
    for line in text.split("\n"):
        pad = draw(st.sampled_from(["", " ", "  ", "\t", "        "]))
        line = re.sub(r"([,=;|{}()])", lambda m: draw(st.sampled_from(
            ["", " ", "  "])) + m.group(1) + draw(st.sampled_from(["", " "])), line)
        out.append(pad + line.strip())
    return "\n".join(out)


@st.composite
def respaced(draw, source) -> str:
    return _respace(draw, draw(source))


@settings(max_examples=60, **SETTINGS)
@given(respaced(st.one_of(programs(), st.sampled_from(SEEDS))))
def test_generated_programs_keep_meaning(text: str) -> None:
    assert_safe(text)


@settings(max_examples=60, **SETTINGS)
@given(mutated_programs())
def test_mutated_programs_keep_meaning(text: str) -> None:
    assert_safe(text)


def test_command(tmp_path: Path, cnndsl) -> None:
    messy = tmp_path / "messy.cnn"
    messy.write_text(MESSY)
    assert cnndsl("fmt", "--check", str(messy)).returncode == 1
    diff = cnndsl("fmt", "--diff", str(messy))
    assert diff.returncode == 0 and "+    f(c=4, k=max(2, 3)) as x" in diff.stdout
    assert messy.read_text() == MESSY
    assert cnndsl("fmt", str(messy)).returncode == 0
    assert messy.read_text() == CANONICAL
    assert cnndsl("fmt", "--check", str(messy)).returncode == 0
    piped = subprocess.run([sys.executable, "-m", "cnndsl", "fmt", "-"], input=MESSY,
                           capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert piped.returncode == 0 and piped.stdout == CANONICAL


def test_command_leaves_broken_file(tmp_path: Path, cnndsl) -> None:
    broken = tmp_path / "broken.cnn"
    broken.write_text("network n {\n  conv   8 3x3\n")
    run = cnndsl("fmt", str(broken))
    assert run.returncode == 1 and "never closed" in run.stderr
    assert broken.read_text() == "network n {\n  conv   8 3x3\n"
    assert json.loads(cnndsl("check", "--json", str(broken)).stdout)["diagnostics"]


def test_command_leaves_non_utf8_file(tmp_path: Path, cnndsl) -> None:
    latin = tmp_path / "latin.cnn"
    data = "# caf\xe9\nnetwork n {\ninput 8x8x1\n}\n".encode("latin-1")
    latin.write_bytes(data)
    run = cnndsl("fmt", str(latin))
    assert run.returncode == 1 and "not UTF-8" in run.stderr
    assert latin.read_bytes() == data


def test_continued_header_keeps_its_alignment_and_opens_one_level():
    """A `\\` line keeps the author's deeper alignment; the `{` at its end opens a body one
    level in from the statement's first line, and the `}` goes back there."""
    source = ("block unit(f, \\\n"
              "           k=3) {\n"
              "            conv f k same\n"
              "        }\n"
              "network n {\n"
              "  input 8x8x1\n"
              "  unit(4)\n"
              "}\n")
    expected = ("block unit(f, \\\n"
                "           k=3) {\n"
                "    conv f k same\n"
                "}\n"
                "network n {\n"
                "    input 8x8x1\n"
                "    unit(4)\n"
                "}\n")
    assert format_source(source) == expected
    assert format_source(expected) == expected
    shallow = "block unit(f, \\\nk=3) {\n    conv f k same\n}\n"
    assert format_source(shallow).splitlines()[1] == "    k=3) {"
