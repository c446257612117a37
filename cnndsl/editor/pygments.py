"""A Pygments lexer for .cnn files (entry point `pygments.lexers`: `cnn`), so that Sphinx,
MkDocs and Jupyter highlight the language. Imported only by Pygments itself."""

from __future__ import annotations

from pygments.lexer import RegexLexer, bygroups, words
from pygments.token import (
    Comment,
    Keyword,
    Name,
    Number,
    Operator,
    Punctuation,
    String,
    Text,
    Whitespace,
)

from cnndsl.analysis.ops import OPS
from cnndsl.analysis.ops.activations import ACTIVATIONS
from cnndsl.analysis.values import FUNCTIONS

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"


class CnnLexer(RegexLexer):
    name = "cnn"
    aliases = ["cnn", "cnndsl"]  # noqa: RUF012 (Pygments reads these class attributes)
    filenames = ["*.cnn"]  # noqa: RUF012

    tokens = {  # noqa: RUF012
        "root": [
            # A statement's first word is its op, even when it is also a flag (`relu`).
            (rf"(^|[;{{|])([ \t]*)({'|'.join(sorted(OPS, key=len, reverse=True))})\b(?!\()",
             bygroups(Punctuation, Whitespace, Name.Builtin)),
            (r"[ \t\r\f]+", Whitespace),
            (r"\n", Whitespace),
            (r"\\\n", Text),
            (r"#.*?$", Comment.Single),
            (r'"([^"\\\n]|\\.)*"', String.Double),
            (rf"\b(network)(\s+)({_NAME})", bygroups(Keyword.Declaration, Whitespace, Name.Class)),
            (rf"\b(block)(\s+)({_NAME})", bygroups(Keyword.Declaration, Whitespace,
                                                    Name.Function)),
            (r"\btrain\b(?=\s*\{)", Keyword.Declaration),
            (words(("repeat", "if", "else", "as"), suffix=r"\b"), Keyword),
            (words(("and", "or", "not"), suffix=r"\b"), Operator.Word),
            (words(("true", "false"), suffix=r"\b"), Keyword.Constant),
            (rf"({_NAME})(\s*)(=)(?!=)", bygroups(Name.Attribute, Whitespace, Operator)),
            (rf"@{_NAME}", Name.Variable),
            (words(tuple(FUNCTIONS), suffix=r"(?=\()"), Name.Builtin),
            (rf"{_NAME}(?=\()", Name.Function),
            (r"\b(in)(\s*)(\.)(\s*)(h|w|c)\b", bygroups(Name.Builtin.Pseudo, Whitespace,
                                                        Punctuation, Whitespace, Name.Attribute)),
            (words(tuple(set(OPS) - set(ACTIVATIONS)), prefix=r"\b", suffix=r"\b"), Name.Builtin),
            (words(("same", "valid", *ACTIVATIONS), prefix=r"\b", suffix=r"\b"), Name.Constant),
            (r"[0-9]+(x[0-9]+)+(?![A-Za-z0-9_])", Number.Integer),
            (r"([0-9]+\.[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?|[0-9]+[eE][-+]?[0-9]+", Number.Float),
            (r"[0-9]+", Number.Integer),
            (r"==|!=|<=|>=|//|[<>+\-*/]", Operator),
            (r"[{}()|,;.]", Punctuation),
            (_NAME, Name),
        ],
    }
