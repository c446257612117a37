"""`cnndsl lsp`: the language server over stdio (pygls), a thin layer over editor.document.

Diagnostics are check's own (message, range, hint, secondary labels as related locations),
published on open at once and on change after a short pause in typing.
"""

from __future__ import annotations

import asyncio

from lsprotocol import types as lsp
from pygls.lsp.server import LanguageServer

from cnndsl.common.diagnostics import ERROR, Diagnostic, Span
from cnndsl.editor.document import Completion, Document, Symbol
from cnndsl.editor.fmt import FormatError, format_source
from cnndsl.version import __version__

DEBOUNCE_SECONDS = 0.15
_KINDS = {"op": lsp.CompletionItemKind.Function, "flag": lsp.CompletionItemKind.EnumMember,
          "keyword": lsp.CompletionItemKind.Property, "block": lsp.CompletionItemKind.Module,
          "ref": lsp.CompletionItemKind.Variable}
_SYMBOLS = {"network": lsp.SymbolKind.Class, "block": lsp.SymbolKind.Function,
            "layer": lsp.SymbolKind.Variable}


def to_range(span: Span) -> lsp.Range:
    return lsp.Range(lsp.Position(span.line - 1, span.column - 1),
                     lsp.Position(span.end_line - 1, span.end_column - 1))


def to_diagnostic(uri: str, d: Diagnostic) -> lsp.Diagnostic:
    span = d.span or Span.point(1, 1)
    message = d.message + (f"\nhint: {d.hint}" if d.hint else "")
    related = [lsp.DiagnosticRelatedInformation(lsp.Location(uri, to_range(lab.span)),
                                                lab.message or d.message) for lab in d.labels]
    severity = lsp.DiagnosticSeverity.Error if d.severity == ERROR \
        else lsp.DiagnosticSeverity.Warning
    return lsp.Diagnostic(to_range(span), message, severity=severity, source="cnndsl",
                          related_information=related or None)


class CnnServer(LanguageServer):
    """Keeps the last Document of every open file and one pending analysis per file."""

    def __init__(self) -> None:
        super().__init__("cnndsl", __version__)
        self.documents: dict[str, Document] = {}
        self.pending: dict[str, asyncio.TimerHandle] = {}

    def document(self, uri: str) -> Document:
        text = self.workspace.get_text_document(uri).source
        doc = self.documents.get(uri)
        if doc is None or doc.text != text:
            doc = self.documents[uri] = Document(text)
        return doc

    def publish(self, uri: str) -> None:
        self.pending.pop(uri, None)
        doc = self.document(uri)
        self.text_document_publish_diagnostics(lsp.PublishDiagnosticsParams(
            uri, [to_diagnostic(uri, d) for d in doc.diagnostics]))

    def publish_later(self, uri: str) -> None:
        if uri in self.pending:
            self.pending[uri].cancel()
        self.pending[uri] = asyncio.get_running_loop().call_later(
            DEBOUNCE_SECONDS, self.publish, uri)


server = CnnServer()


def _pos(position: lsp.Position) -> tuple[int, int]:
    return position.line + 1, position.character + 1


@server.feature(lsp.TEXT_DOCUMENT_DID_OPEN)
def did_open(ls: CnnServer, params: lsp.DidOpenTextDocumentParams) -> None:
    ls.publish(params.text_document.uri)


@server.feature(lsp.TEXT_DOCUMENT_DID_CHANGE)
async def did_change(ls: CnnServer, params: lsp.DidChangeTextDocumentParams) -> None:
    ls.publish_later(params.text_document.uri)


@server.feature(lsp.TEXT_DOCUMENT_DID_CLOSE)
def did_close(ls: CnnServer, params: lsp.DidCloseTextDocumentParams) -> None:
    uri = params.text_document.uri
    ls.documents.pop(uri, None)
    if uri in ls.pending:
        ls.pending.pop(uri).cancel()
    ls.text_document_publish_diagnostics(lsp.PublishDiagnosticsParams(uri, []))


@server.feature(lsp.TEXT_DOCUMENT_HOVER)
def hover(ls: CnnServer, params: lsp.HoverParams) -> lsp.Hover | None:
    found = ls.document(params.text_document.uri).hover(_pos(params.position))
    if found is None:
        return None
    text, span = found
    return lsp.Hover(lsp.MarkupContent(lsp.MarkupKind.Markdown, text), to_range(span))


@server.feature(lsp.TEXT_DOCUMENT_INLAY_HINT)
def inlay_hints(ls: CnnServer, params: lsp.InlayHintParams) -> list[lsp.InlayHint]:
    first, last = params.range.start.line + 1, params.range.end.line + 1
    return [lsp.InlayHint(lsp.Position(line - 1, column - 1), f"  {label}",
                          kind=lsp.InlayHintKind.Type)
            for (line, column), label in ls.document(params.text_document.uri).inlay_hints()
            if first <= line <= last]


def _item(c: Completion) -> lsp.CompletionItem:
    doc = lsp.MarkupContent(lsp.MarkupKind.Markdown, c.doc) if c.doc else None
    return lsp.CompletionItem(c.label, kind=_KINDS.get(c.kind), detail=c.detail or None,
                              documentation=doc, insert_text=c.insert)


@server.feature(lsp.TEXT_DOCUMENT_COMPLETION,
                lsp.CompletionOptions(trigger_characters=["@", "(", " "]))
def completion(ls: CnnServer, params: lsp.CompletionParams) -> lsp.CompletionList:
    items = ls.document(params.text_document.uri).complete(_pos(params.position))
    return lsp.CompletionList(is_incomplete=False, items=[_item(c) for c in items])


@server.feature(lsp.TEXT_DOCUMENT_DEFINITION)
def definition(ls: CnnServer, params: lsp.DefinitionParams) -> lsp.Location | None:
    uri = params.text_document.uri
    span = ls.document(uri).definition(_pos(params.position))
    return lsp.Location(uri, to_range(span)) if span is not None else None


def _symbol(s: Symbol) -> lsp.DocumentSymbol:
    return lsp.DocumentSymbol(s.name, _SYMBOLS[s.kind], to_range(s.span), to_range(s.selection),
                              children=[_symbol(c) for c in s.children] or None)


@server.feature(lsp.TEXT_DOCUMENT_DOCUMENT_SYMBOL)
def symbols(ls: CnnServer, params: lsp.DocumentSymbolParams) -> list[lsp.DocumentSymbol]:
    return [_symbol(s) for s in ls.document(params.text_document.uri).symbols()]


@server.feature(lsp.TEXT_DOCUMENT_FORMATTING)
def formatting(ls: CnnServer, params: lsp.DocumentFormattingParams) -> list[lsp.TextEdit]:
    text = ls.workspace.get_text_document(params.text_document.uri).source
    try:
        formatted = format_source(text)
    except FormatError:
        return []  # a file with syntax errors is left as it is; its diagnostics say why
    if formatted == text:
        return []
    end = lsp.Position(text.count("\n") + 1, 0)
    return [lsp.TextEdit(lsp.Range(lsp.Position(0, 0), end), formatted)]


def serve() -> int:
    server.start_io()
    return 0
