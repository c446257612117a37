"""Everything `train` and `evaluate` print: notes, diagnostics, the lines that say what is
trained where, the progress of every epoch, the summary of a run.

The progress of an epoch takes one of four forms (`Reporter.mode`), as Keras's `verbose`:
    0           nothing
    1, a terminal        a bar redrawn in place, never past its total
    1, a notebook kernel  the same bar as HTML, updated in place in the cell's output
    1, anything else     (a log, CI, `!cnndsl train` in Jupyter) a line every 10 seconds
                         (CNNDSL_PROGRESS_SECONDS), then a line at the end of the epoch
    2           one line at the end of every epoch
The default (None) is 1. A clock thread redraws the bar and writes the timed lines, so they
come on time even while TensorFlow runs 32 steps without returning to Python.
"""

from __future__ import annotations

import html
import os
import shutil
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

from cnndsl.common.diagnostics import Diagnostic, Renderer
from cnndsl.common.safetext import shown

SILENT, BAR, NOTEBOOK, LINES, EPOCHS = "silent", "bar", "notebook", "lines", "epochs"
LINE_SECONDS = 10.0  # off a terminal: a progress line at least this often
BAR_SECONDS = 0.2  # a terminal redraws its bar this often
NOTEBOOK_SECONDS = 0.5  # each redraw of a notebook's bar is a message to the browser


def note(message: str) -> None:
    print(f"note: {shown(message)}", file=sys.stderr, flush=True)


def error(message: str) -> None:
    print(f"error: {shown(message)}", file=sys.stderr, flush=True)


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
        ("backend", f"{metrics['backend']} {metrics['backend_version']} (Keras "
                    f"{metrics['keras_version']})"),
        ("strategy", f"{metrics['strategy']}, {metrics['replicas']} replica"
                     f"{'s' * (metrics['replicas'] != 1)}"),
        ("batch", f"{metrics['global_batch']} global = {metrics['batch_per_replica']} per "
                  f"replica x {metrics['replicas']}"),
        ("run folder", f"{shown(str(folder))}{os.sep}"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n" + "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def in_notebook() -> bool:
    """Whether this process is a Jupyter kernel (IPython with a kernel, not a terminal)."""
    if "IPython" not in sys.modules:  # never import IPython just to ask
        return False
    from IPython import get_ipython

    return getattr(get_ipython(), "kernel", None) is not None


def line_seconds() -> float:
    """CNNDSL_PROGRESS_SECONDS, or 10: how often a progress line comes off a terminal."""
    try:
        seconds = float(os.environ.get("CNNDSL_PROGRESS_SECONDS", LINE_SECONDS))
    except ValueError:
        return LINE_SECONDS
    return seconds if 0 < seconds <= 3600 else LINE_SECONDS


class Reporter:
    """Where training's output goes and how much of it: `verbose` 0, 1, 2 or None (1).
    `headers`: the lines around the epochs (device, data, summary) — the command always
    prints them; `session.train` leaves them out at verbose 0."""

    def __init__(self, verbose: int | None, *, headers: bool = True) -> None:
        self.stream = sys.stdout
        self.headers = headers
        if verbose == 0:
            self.mode = SILENT
        elif verbose == 2:
            self.mode = EPOCHS
        elif in_notebook():
            self.mode = NOTEBOOK
        else:
            # a dumb terminal cannot clear the rest of a line: it gets the lines
            terminal = self.stream.isatty() and os.environ.get("TERM") != "dumb"
            self.mode = BAR if terminal else LINES

    def say(self, text: str) -> None:
        if self.headers:
            try:
                print("\n".join(map(shown, text.split("\n"))), file=self.stream, flush=True)
            except (OSError, ValueError):  # closed (`| head`): the run goes on unseen
                self.headers = False

    def epochs(self, total: int) -> Epochs:
        return Epochs(self.mode, total, self.stream)


# ----------------------------------------------------------------------------- an epoch


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _numbers(logs: Mapping[str, Any]) -> str:
    return ", ".join(f"{shown(k)} {float(v):.4f}" for k, v in logs.items())


class Epochs:
    """The progress of the epochs of one fit: `begin`, `step`... `end`, for each epoch;
    `close` when the fit ends however it ends."""

    def __init__(self, mode: str, total: int, stream: TextIO) -> None:
        self.mode, self.total, self.stream = mode, total, stream
        self.lock = threading.Lock()  # the clock thread and the training thread both draw
        self.clock: threading.Thread | None = None
        self.stop = threading.Event()
        self.handle: Any = None  # the notebook's display of this epoch

    def begin(self, epoch: int, steps: int | None) -> None:
        """`epoch` counts from 0; `steps` in the epoch, when known."""
        self.epoch, self.steps, self.done = epoch, steps, 0
        self.logs: dict[str, float] = {}
        self.started = time.monotonic()
        self.first: tuple[int, float] | None = None  # the first step seen and its time
        self.validating = False
        if self.mode == NOTEBOOK:
            from IPython.display import display

            self.handle = display(self._mime(), raw=True, display_id=True)
        interval = {BAR: BAR_SECONDS, NOTEBOOK: NOTEBOOK_SECONDS, LINES: line_seconds()}
        if self.mode in interval:
            self.stop.clear()
            self.clock = threading.Thread(target=self._tick, args=(interval[self.mode],),
                                          daemon=True, name="cnndsl-progress")
            self.clock.start()

    def step(self, done: int, logs: Mapping[str, Any] | None) -> None:
        """`done` steps of the epoch finished: Keras counts a whole `steps_per_execution`
        even when the epoch's last run of steps is shorter, so it is held to the total."""
        now = time.monotonic()
        with self.lock:
            self.done = min(done, self.steps) if self.steps else done
            self.logs = {k: float(v) for k, v in (logs or {}).items()}
            if self.first is None:
                self.first = (self.done, now)

    def validate(self) -> None:
        with self.lock:
            self.validating = True

    def end(self, logs: Mapping[str, Any] | None, seconds: float) -> None:
        self._stop_clock()
        if self.mode == SILENT:
            return
        steps = f"{self.steps} steps in " if self.steps else ""
        text = (f"epoch {self.epoch + 1}/{self.total}: {steps}{_duration(seconds)}, "
                f"{_numbers(logs or {})}")
        with self.lock:
            if self.mode == NOTEBOOK:
                self.handle.update({"text/plain": text}, raw=True)
            elif self.mode == BAR:
                self._write(f"\r{text}\x1b[K\n")
            else:
                self._write(f"{text}\n")

    def close(self) -> None:
        """The fit ended without ending its epoch (Ctrl-C, an error): a bar ends its line,
        a notebook's says it stopped."""
        if self.clock is None:
            return
        self._stop_clock()
        with self.lock:
            if self.mode == BAR:
                self._write("\n")
            elif self.mode == NOTEBOOK:
                self.handle.update({"text/plain": f"{self._status(bar=False)}; stopped"},
                                   raw=True)

    # -------------------------------------------------------------------------- drawing

    def _stop_clock(self) -> None:
        if self.clock is not None:
            self.stop.set()
            self.clock.join()
            self.clock = None

    def _tick(self, interval: float) -> None:
        while not self.stop.wait(interval) and self.mode != SILENT:
            with self.lock:
                if self.mode == NOTEBOOK:
                    self.handle.update(self._mime(), raw=True)
                elif self.mode == BAR:
                    self._write(f"\r{self._fit(self._status(bar=True))}\x1b[K")
                else:
                    self._write(f"{self._status(bar=False)}\n")

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # closed (`| head`): the run goes on unseen
            self.mode = SILENT

    def _fit(self, text: str) -> str:
        """One terminal row: a line that wraps would not be redrawn in place."""
        return text[:max(20, shutil.get_terminal_size().columns - 1)]

    def _rate(self) -> float | None:
        """Steps a second since the first step seen (which waited for TensorFlow's
        tracing), else since the epoch began."""
        now = time.monotonic()
        if self.first is not None and self.done > self.first[0] and now > self.first[1]:
            return (self.done - self.first[0]) / (now - self.first[1])
        return self.done / (now - self.started) if self.done and now > self.started else None

    def _status(self, bar: bool) -> str:
        """`epoch 2/5 [=====>    ] 320/891, 46s left at 12.3 steps/s, loss 0.4321`: the
        time before the numbers, which a narrow terminal cuts off first."""
        parts = []
        if self.steps:
            count = f"{self.done}/{self.steps}"
            filled = 20 * self.done // self.steps
            parts.append(("[" + "=" * filled + (">" if filled < 20 else "") + " " * (19 - filled)
                          + "] " + count) if bar else f"{count} steps")
        rate = self._rate()
        elapsed = time.monotonic() - self.started
        if self.validating:
            parts.append(f"validating, {_duration(elapsed)}")
        elif rate and self.steps:
            speed = f"{rate:.1f} steps/s" if rate >= 1 else f"{1 / rate:.1f} s/step"
            parts.append(f"{_duration((self.steps - self.done) / rate)} left at {speed}")
        else:
            parts.append(_duration(elapsed))
        if self.logs:
            parts.append(_numbers(self.logs))
        return f"epoch {self.epoch + 1}/{self.total}" + (" " if bar else ": ") + ", ".join(parts)

    def _mime(self) -> dict[str, str]:
        text = self._status(bar=False)
        done, steps = self.done, self.steps or 0
        meter = f'<progress value="{done}" max="{steps}" style="width:16em"></progress> ' \
            if steps else ""
        return {"text/plain": text,
                "text/html": f'<div style="font-family:monospace">{meter}{html.escape(text)}'
                             "</div>"}


def keras_callback(keras: Any, epochs: Epochs) -> Any:
    """The Keras callback that feeds `epochs`; put last, after the epoch is committed."""

    class Progress(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.started = time.monotonic()
            epochs.begin(epoch, self.params.get("steps"))

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            epochs.step(batch + 1, logs)

        def on_test_begin(self, logs: Any = None) -> None:
            epochs.validate()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            epochs.end(logs, time.monotonic() - self.started)

        def on_train_end(self, logs: Any = None) -> None:
            epochs.close()

    return Progress()
