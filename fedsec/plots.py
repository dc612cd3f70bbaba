"""PNG plots of a run (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def _pyplot():  # noqa: ANN202
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_label_histogram(histogram: np.ndarray, path: Path, max_clients: int = 100) -> None:
    """Stacked bars: label counts of each client (the first ``max_clients``)."""
    plt = _pyplot()
    counts = histogram[:max_clients]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.12 * len(counts) + 2), 3.5))
    bottom = np.zeros(len(counts))
    colors = plt.get_cmap("tab10")
    for label in range(counts.shape[1]):
        ax.bar(np.arange(len(counts)), counts[:, label], bottom=bottom, width=0.9,
               color=colors(label % 10), label=str(label))
        bottom += counts[:, label]
    ax.set_xlabel("client")
    ax.set_ylabel("examples")
    ax.set_title("Label histogram per client")
    ax.legend(title="label", ncol=2, fontsize=7, bbox_to_anchor=(1.01, 1), loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_rounds(rounds: list[dict[str, Any]], keys: dict[str, str], path: Path, title: str) -> None:
    """One line per metric key present in the round records (values 0..1 shown as %)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for key, label in keys.items():
        points = [(r["round"], r[key]) for r in rounds if r.get(key) is not None]
        if points:
            xs, ys = zip(*points)
            ax.plot(xs, [100 * y for y in ys], marker="o", markersize=3, label=label)
    ax.set_xlabel("round")
    ax.set_ylabel("%")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
