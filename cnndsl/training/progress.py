"""Everything `train` and `evaluate` print: notes, diagnostics, the summary of a run."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cnndsl.common.diagnostics import Diagnostic, Renderer
from cnndsl.common.safetext import shown


def note(message: str) -> None:
    print(f"note: {shown(message)}", file=sys.stderr, flush=True)


def render(diagnostics: list[Diagnostic], name: str, source: str) -> None:
    colour = sys.stderr.isatty() and not os.environ.get("NO_COLOR")
    renderer = Renderer(name, source, colour)
    for block in renderer.blocks(diagnostics):
        print(block + "\n", file=sys.stderr)


def summary(metrics: Mapping[str, Any], folder: Path) -> str:
    acc = metrics.get("test_accuracy")
    rows = [
        ("test accuracy", f"{acc:.2%}" if acc is not None else "-"),
        ("test loss", f"{metrics['test_loss']:.4f}"),
        ("epochs run", str(metrics["epochs"])),
        ("seconds per epoch", f"{metrics['seconds_per_epoch']:.2f}"),
        ("params", f"{metrics['params']:,}"),
        ("strategy", f"{metrics['strategy']}, {metrics['replicas']} replica"
                     f"{'s' * (metrics['replicas'] != 1)}"),
        ("batch", f"{metrics['global_batch']} global = {metrics['batch_per_replica']} per "
                  f"replica x {metrics['replicas']}"),
        ("run folder", f"{shown(str(folder))}{os.sep}"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n" + "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
