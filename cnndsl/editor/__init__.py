"""Editor support: the formatter (`cnndsl fmt`) and the language server (`cnndsl lsp`)."""
