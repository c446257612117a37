"""`cnndsl lsp` over a real protocol session: the server runs as `python -m cnndsl lsp` and
this test speaks JSON-RPC to it over stdio (tests/lsp_client.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from conftest import EXAMPLES
from lsp_client import LspClient

from cnndsl.analysis.pipeline import analyse

URI = "file:///work/net.cnn"
TEXT = """\
block unit(c, k=3) {
    conv c k same relu as inner
    batchnorm
}
network net {
    input 28x28x1
    conv 8 3x3 relu as first
    unit(16, k=5) as u1
    concat {
        | conv 4 1x1
        | maxpool 3x3 stride=1 same
    }
    flatten
    dense 10 softmax
}
"""
BROKEN = TEXT.replace("dense 10 softmax", "dense 10 sofmax").replace(
    "concat {", "add {")


def _doc(**extra) -> dict:
    return {"textDocument": {"uri": URI}, **extra}


def _at(line: int, character: int) -> dict:
    return _doc(position={"line": line - 1, "character": character - 1})


@pytest.fixture(scope="module")
def client() -> Iterator[LspClient]:
    c = LspClient()
    caps = c.initialize()["capabilities"]
    assert caps["hoverProvider"] and caps["inlayHintProvider"] and caps["completionProvider"]
    c.open(URI, TEXT)
    assert c.diagnostics(URI) == []
    yield c
    c.close()


def test_diagnostics_are_checks_own(client: LspClient) -> None:
    client.notify("textDocument/didChange", {
        "textDocument": {"uri": URI, "version": 2}, "contentChanges": [{"text": BROKEN}]})
    published = client.diagnostics(URI)
    expected = analyse(BROKEN).diagnostics
    assert len(published) == len(expected) > 0
    for got, want in zip(published, expected, strict=True):
        assert got["message"] == want.message + (f"\nhint: {want.hint}" if want.hint else "")
        start, end = got["range"]["start"], got["range"]["end"]
        assert (start["line"] + 1, start["character"] + 1) == (want.span.line, want.span.column)
        assert (end["line"] + 1, end["character"] + 1) == (want.span.end_line,
                                                          want.span.end_column)
        assert len(got.get("relatedInformation") or []) == len(want.labels)
    assert any("sofmax" in d["message"] and "softmax" in d["message"] for d in published)
    assert any(d.get("relatedInformation") for d in published)  # add's paths as labels
    client.notify("textDocument/didChange", {
        "textDocument": {"uri": URI, "version": 3}, "contentChanges": [{"text": TEXT}]})
    assert client.diagnostics(URI) == []


def test_hover_statement_and_op(client: LspClient) -> None:
    text = client.request("textDocument/hover", _at(7, 6))["contents"]["value"]
    assert "`first` → `26x26x8`" in text and "params 80" in text
    assert "receptive field 3" in text and "conv FILTERS KERNEL" in text


def test_hover_block_call(client: LspClient) -> None:
    text = client.request("textDocument/hover", _at(8, 6))["contents"]["value"]
    params = 16 * (8 * 25 + 1) + 4 * 16
    assert "**block unit** `u1` → `26x26x16`" in text and f"params {params:,}" in text


def test_inlay_hints(client: LspClient) -> None:
    hints = client.request("textDocument/inlayHint", _doc(range={
        "start": {"line": 0, "character": 0}, "end": {"line": 20, "character": 0}}))
    labels = {h["position"]["line"] + 1: h["label"].strip() for h in hints}
    assert labels[7] == "→ 26x26x8" and labels[8] == "→ 26x26x16" and labels[14] == "→ 10"
    assert 9 not in labels  # a merge's shape is given on its paths and after it


def test_completion(client: LspClient) -> None:
    def labels(line: int, character: int) -> set[str]:
        return {i["label"] for i in client.request("textDocument/completion",
                                                   _at(line, character))["items"]}

    client.notify("textDocument/didChange", {
        "textDocument": {"uri": URI, "version": 4},
        "contentChanges": [{"text": TEXT.replace(
            "    flatten\n", "    flatten\n    @\n    conv 8 3x3 s\n    unit(\n")}]})
    client.diagnostics(URI)
    starts = labels(13, 5)
    assert {"conv", "maxpool", "unit", "repeat"} <= starts
    conv = next(i for i in client.request("textDocument/completion", _at(13, 5))["items"]
                if i["label"] == "conv")
    assert conv["detail"] == "conv FILTERS KERNEL"
    assert labels(14, 6) == {"@first", "@u1"}  # named earlier in this network only
    assert {"same", "relu", "stride=", "dilation="} <= labels(15, 17)
    assert labels(16, 10) == {"c=", "k="}
    client.notify("textDocument/didChange", {
        "textDocument": {"uri": URI, "version": 5}, "contentChanges": [{"text": TEXT}]})
    client.diagnostics(URI)


def test_definition(client: LspClient) -> None:
    found = client.request("textDocument/definition", _at(8, 6))
    assert found["uri"] == URI and found["range"]["start"] == {"line": 0, "character": 6}
    client.notify("textDocument/didChange", {
        "textDocument": {"uri": URI, "version": 9},
        "contentChanges": [{"text": TEXT.replace("    flatten\n", "    add @first @u1\n")}]})
    client.diagnostics(URI)
    found = client.request("textDocument/definition", _at(13, 17))
    assert found["range"] == {"start": {"line": 7, "character": 21},
                              "end": {"line": 7, "character": 23}}  # `as u1`
    client.notify("textDocument/didChange", {
        "textDocument": {"uri": URI, "version": 10}, "contentChanges": [{"text": TEXT}]})
    client.diagnostics(URI)


def test_document_symbols(client: LspClient) -> None:
    symbols = client.request("textDocument/documentSymbol", _doc())
    assert [(s["name"], s["kind"]) for s in symbols] == [("unit", 12), ("net", 5)]
    assert [c["name"] for c in symbols[1]["children"]] == ["first", "u1"]


def test_formatting(client: LspClient) -> None:
    messy = "network n {\ninput 8x8x1\n  conv 4 3x3  stride = 2\n}\n"
    client.notify("textDocument/didChange", {
        "textDocument": {"uri": URI, "version": 6}, "contentChanges": [{"text": messy}]})
    client.diagnostics(URI)
    [edit] = client.request("textDocument/formatting", _doc(options={
        "tabSize": 4, "insertSpaces": True}))
    assert edit["newText"] == "network n {\n    input 8x8x1\n    conv 4 3x3 stride=2\n}\n"
    client.notify("textDocument/didChange", {
        "textDocument": {"uri": URI, "version": 7}, "contentChanges": [{"text": "network {"}]})
    client.diagnostics(URI)
    assert client.request("textDocument/formatting", _doc(options={
        "tabSize": 4, "insertSpaces": True})) == []
    client.notify("textDocument/didChange", {
        "textDocument": {"uri": URI, "version": 8}, "contentChanges": [{"text": TEXT}]})
    client.diagnostics(URI)


def test_resnet50_opens_with_checks_warnings() -> None:
    c = LspClient()
    try:
        c.initialize()
        text = (EXAMPLES / "resnet50.cnn").read_text()
        c.open("file:///resnet50.cnn", text)
        published = c.diagnostics("file:///resnet50.cnn")
        assert [d["message"].split("\n")[0] for d in published] == [
            d.message for d in analyse(text).diagnostics]
    finally:
        c.close()


def test_check_imports_no_editor_code(cnndsl) -> None:
    """`check` stays fast: the server's and the highlighter's libraries load only for `lsp`."""
    run = cnndsl("check", str(EXAMPLES / "mnist.cnn"), env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert run.returncode == 0 and "cnndsl.lang.parser" in run.stderr
    assert "pygls" not in run.stderr and "pygments" not in run.stderr
    assert "cnndsl.editor" not in run.stderr
