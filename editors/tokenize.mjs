// Tokenize .cnn files with editors/cnn.tmLanguage.json using VS Code's own TextMate engine
// (vscode-textmate + vscode-oniguruma). Prints, per file, every line's tokens as JSON:
// {"file": [[{"text": "conv", "scopes": ["source.cnn", "support.function.op.cnn"]}, ...], ...]}
// Usage: node editors/tokenize.mjs FILE...   (after `npm ci` in editors/)
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(join(here, "package.json"));
const oniguruma = require("vscode-oniguruma");
const textmate = require("vscode-textmate");

const wasm = readFileSync(require.resolve("vscode-oniguruma/release/onig.wasm"));
await oniguruma.loadWASM(wasm.buffer.slice(wasm.byteOffset, wasm.byteOffset + wasm.byteLength));
const registry = new textmate.Registry({
  onigLib: Promise.resolve({
    createOnigScanner: (patterns) => new oniguruma.OnigScanner(patterns),
    createOnigString: (s) => new oniguruma.OnigString(s),
  }),
  loadGrammar: async () =>
    textmate.parseRawGrammar(readFileSync(join(here, "cnn.tmLanguage.json"), "utf8"),
                             "cnn.tmLanguage.json"),
});
const grammar = await registry.loadGrammar("source.cnn");

const out = {};
for (const file of process.argv.slice(2)) {
  let stack = textmate.INITIAL;
  out[file] = readFileSync(file, "utf8").split("\n").map((line) => {
    const result = grammar.tokenizeLine(line, stack);
    stack = result.ruleStack;
    return result.tokens.map((t) => ({ text: line.slice(t.startIndex, t.endIndex), scopes: t.scopes }));
  });
}
process.stdout.write(JSON.stringify(out));
