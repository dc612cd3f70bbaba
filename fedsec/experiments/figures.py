"""Matplotlib figures of the HTML report, each returned as PNG bytes (headless, Agg)."""

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


def curves(series: dict[str, list[tuple[int, float]]], title: str, ylabel: str = "%",
           percent: bool = True, bands: dict[str, list[float | None]] | None = None) -> bytes:
    """Lines of (round, value) points, one per named series; values 0..1 shown as % when ``percent``.

    ``bands``: per series, the half-width of an interval around each point (None where there is
    none), drawn as a shaded band of the line's colour.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 3.5))
    scale = 100.0 if percent else 1.0
    for label, points in series.items():
        if points:
            xs, ys = zip(*points)
            (line,) = ax.plot(xs, [scale * y for y in ys], marker="o", markersize=3, label=label)
            half = np.array([np.nan if h is None else h for h in (bands or {}).get(label, [])], dtype=float)
            if np.isfinite(half).any():
                centre = scale * np.asarray(ys, dtype=float)
                ax.fill_between(xs, centre - scale * half, centre + scale * half, color=line.get_color(), alpha=0.2,
                                linewidth=0)
    ax.set_xlabel("round")
    ax.set_ylabel(ylabel)
    if percent:
        ax.set_ylim(-2, 102)
    ax.grid(alpha=0.3)
    ax.set_title(title)
    if len(series) > 1:
        ax.legend(fontsize=7, loc="best")
    return _png(fig)


def stacked_bars(rounds: Sequence[int], parts: dict[str, list[float]], title: str, ylabel: str) -> bytes:
    """Stacked bars per round, one colour per part (e.g. seconds per phase)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 3.5))
    bottom = np.zeros(len(rounds))
    for label, values in parts.items():
        ax.bar(rounds, values, bottom=bottom, label=label, width=0.8)
        bottom += np.asarray(values, dtype=float)
    ax.set_xlabel("round")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=7)
    return _png(fig)


def label_histogram(label_counts: list[list[int]], max_clients: int = 100) -> bytes:
    """Stacked bars of each client's label counts (the first ``max_clients`` clients)."""
    plt = _pyplot()
    counts = np.asarray(label_counts, dtype=float)[:max_clients]
    fig, ax = plt.subplots(figsize=(max(6.5, 0.08 * len(counts) + 2), 3.5))
    bottom = np.zeros(len(counts))
    colors = plt.get_cmap("tab10")
    for label in range(counts.shape[1]):
        ax.bar(np.arange(len(counts)), counts[:, label], bottom=bottom, width=0.9, color=colors(label % 10),
               label=str(label))
        bottom += counts[:, label]
    ax.set_xlabel("client")
    ax.set_ylabel("examples")
    ax.set_title("Label histogram per client")
    ax.legend(title="label", ncol=2, fontsize=7, bbox_to_anchor=(1.01, 1), loc="upper left")
    return _png(fig)


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
