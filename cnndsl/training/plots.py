"""The run folder's pictures: learning curves and the first conv layer's filters.

matplotlib is imported here only, and only its Figure class: no pyplot, so no global state
and no display; each figure renders to PNG through Agg, safe to draw in a worker thread.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cnndsl.common.files import replacing


def _figure(**kwargs: Any) -> Any:
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def _save(fig: Any, path: Path) -> None:
    with replacing(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")


def curves(history: Sequence[Mapping[str, float]], path: Path) -> None:
    """Loss and accuracy per epoch, training against validation (when there is one)."""
    from matplotlib.ticker import MaxNLocator

    epochs = [int(row["epoch"]) for row in history]
    panels = [m for m in ("loss", "accuracy") if any(m in row for row in history)]
    fig = _figure(figsize=(5 * len(panels), 3.6))
    axes = fig.subplots(1, len(panels), squeeze=False)
    for ax, metric in zip(axes[0], panels, strict=True):
        for key, label in ((metric, "train"), (f"val_{metric}", "validation")):
            values = [row.get(key) for row in history]
            if any(v is not None and v == v for v in values):
                ax.plot(epochs, values, marker="o", label=label)
        ax.set(title=metric, xlabel="epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    _save(fig, path)


def filters(kernel: np.ndarray, path: Path, title: str) -> None:
    """Each output channel's kernel on the first input channel, in grey, as the seed shows them.

    `kernel` is Keras's (height, width, in_channels, out_channels).
    """
    count = kernel.shape[-1]
    cols = min(count, 8)
    rows = math.ceil(count / cols)
    fig = _figure(figsize=(1.3 * cols, 1.3 * rows + 0.4))
    axes = fig.subplots(rows, cols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i < count:
            ax.imshow(kernel[:, :, 0, i], cmap="gray", interpolation="nearest")
            ax.set_title(str(i), fontsize=8, pad=2)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    _save(fig, path)
