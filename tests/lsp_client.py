"""A minimal LSP client speaking raw JSON-RPC to `python -m cnndsl lsp` over its stdio: the
real server in a real process (tests/test_lsp.py, benchmarks/lsp_latency.py)."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


class LspClient:
    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "cnndsl", "lsp"], cwd=ROOT,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.messages: queue.Queue[dict[str, Any]] = queue.Queue()
        self.next_id = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        out = self.proc.stdout
        assert out is not None
        while True:
            length = 0
            while (line := out.readline().strip()):
                name, _, value = line.decode().partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            if not length:
                return  # the server closed its output
            self.messages.put(json.loads(out.read(length)))

    def send(self, message: dict[str, Any]) -> None:
        body = json.dumps({"jsonrpc": "2.0", **message}).encode()
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.proc.stdin.flush()

    def notify(self, method: str, params: dict[str, Any]) -> None:
        self.send({"method": method, "params": params})

    def request(self, method: str, params: dict[str, Any], timeout: float = 30) -> Any:
        self.next_id += 1
        self.send({"id": self.next_id, "method": method, "params": params})
        reply = self.wait(lambda m: m.get("id") == self.next_id and "method" not in m, timeout)
        assert "error" not in reply, reply
        return reply["result"]

    def wait(self, match, timeout: float = 30) -> dict[str, Any]:
        """The next message that `match`es (others are dropped)."""
        while True:
            message = self.messages.get(timeout=timeout)
            if match(message):
                return message

    def diagnostics(self, uri: str, timeout: float = 30) -> list[dict[str, Any]]:
        return self.wait(lambda m: m.get("method") == "textDocument/publishDiagnostics"
                         and m["params"]["uri"] == uri, timeout)["params"]["diagnostics"]

    def initialize(self) -> dict[str, Any]:
        result = self.request("initialize", {"processId": None, "rootUri": None,
                                             "capabilities": {}})
        self.notify("initialized", {})
        return result

    def open(self, uri: str, text: str) -> None:
        self.notify("textDocument/didOpen", {"textDocument": {
            "uri": uri, "languageId": "cnn", "version": 1, "text": text}})

    def close(self) -> None:
        try:
            self.request("shutdown", {}, timeout=10)
            self.notify("exit", {})
            self.proc.wait(timeout=10)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
