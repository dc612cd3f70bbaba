"""Static matplotlib figures (the reference matrix's heat-map PNG), returned as PNG bytes (headless, Agg)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np


def _pyplot():  # noqa: ANN202
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=100)
    _pyplot().close(fig)
    return buffer.getvalue()


def heatmap(matrix: np.ndarray, rows: Sequence[str], columns: Sequence[str], row_name: str, column_name: str,
            title: str, percent: bool = True) -> bytes:
    """A matrix with its values written in the cells (NaN cells left blank)."""
    plt = _pyplot()
    shown = 100 * matrix if percent else matrix
    fig, ax = plt.subplots(figsize=(max(4.5, 0.9 * len(columns) + 2.5), max(2.5, 0.45 * len(rows) + 1.5)))
    image = ax.imshow(shown, cmap="viridis", aspect="auto",
                      vmin=0 if percent else None, vmax=100 if percent else None)
    ax.set_xticks(range(len(columns)), [str(c) for c in columns], rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)), [str(r) for r in rows], fontsize=8)
    ax.set_xlabel(column_name)
    ax.set_ylabel(row_name)
    ax.set_title(title)
    for (i, j), value in np.ndenumerate(shown):
        if np.isfinite(value):
            ax.text(j, i, f"{value:.1f}" if percent else f"{value:.3g}", ha="center", va="center", fontsize=8,
                    color="white" if image.norm(value) < 0.5 else "black")
    fig.colorbar(image, ax=ax, fraction=0.04)
    return _png(fig)
