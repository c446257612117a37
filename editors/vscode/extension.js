// The whole extension: start `cnndsl lsp` over stdio for .cnn files.
const vscode = require("vscode");
const { LanguageClient } = require("vscode-languageclient/node");

let client;

function activate() {
  const config = vscode.workspace.getConfiguration("cnndsl");
  const server = {
    command: config.get("server.command", "cnndsl"),
    args: config.get("server.args", ["lsp"]),
  };
  client = new LanguageClient("cnndsl", "cnndsl", server, {
    documentSelector: [{ scheme: "file", language: "cnn" }],
  });
  return client.start();
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };
