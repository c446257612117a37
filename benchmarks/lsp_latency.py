"""How quickly `cnndsl lsp` answers on ResNet-50 (issue 15's goals: first diagnostics within
300 ms of opening examples/resnet50.cnn, a hover within 20 ms).

1. Start-up: from launching `python -m cnndsl lsp` to the first published diagnostics of
   resnet50.cnn (initialize, initialized, didOpen), split into the server's start-up (until
   `initialize` is answered) and didOpen -> diagnostics. Best of N processes.
2. Hover: round trips of `textDocument/hover` on every statement line, median and worst.
3. Python itself: `python -c pass`, for scale on this machine.

Run: python benchmarks/lsp_latency.py [--repeat N]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from lsp_client import LspClient  # noqa: E402  (the tests' real JSON-RPC client)

RESNET = ROOT / "examples" / "resnet50.cnn"
URI = RESNET.as_uri()


def start_up() -> tuple[float, float, float]:
    """Seconds: launch -> initialize answered, didOpen -> diagnostics, and the total."""
    start = time.perf_counter()
    client = LspClient()
    try:
        client.initialize()
        ready = time.perf_counter()
        client.open(URI, RESNET.read_text())
        client.diagnostics(URI)
        done = time.perf_counter()
    finally:
        client.close()
    return ready - start, done - ready, done - start


def hovers() -> list[float]:
    """Seconds per hover round trip, one per line that holds a statement."""
    client = LspClient()
    times = []
    try:
        client.initialize()
        client.open(URI, RESNET.read_text())
        client.diagnostics(URI)
        for number, line in enumerate(RESNET.read_text().split("\n")):
            column = len(line) - len(line.lstrip())
            if line.strip() and not line.lstrip().startswith(("#", "}", "|")):
                start = time.perf_counter()
                client.request("textDocument/hover", {
                    "textDocument": {"uri": URI},
                    "position": {"line": number, "character": column + 1}})
                times.append(time.perf_counter() - start)
    finally:
        client.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    repeat = parser.parse_args().repeat
    runs = [start_up() for _ in range(repeat)]
    ready, opened, total = (min(r[i] for r in runs) for i in range(3))
    python = min(_python() for _ in range(repeat))
    print(f"start-up to first diagnostics (best of {repeat}): {total * 1000:.0f} ms "
          f"(goal 300 ms)")
    print(f"  server start-up until `initialize` is answered: {ready * 1000:.0f} ms")
    print(f"  didOpen -> diagnostics (no debounce on open): {opened * 1000:.0f} ms")
    print(f"  for scale, `python -c pass`: {python * 1000:.0f} ms")
    times = hovers()
    print(f"hover round trip over {len(times)} lines: median {statistics.median(times) * 1000:.1f}"
          f" ms, worst {max(times) * 1000:.1f} ms (goal 20 ms)")


def _python() -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
