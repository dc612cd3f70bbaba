"""Per-round plots of watermark statistics (one line per run)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

STATISTICS = ("match", "ber", "wdr")


def plot_watermark(runs: dict[str, list[dict[str, Any]]], path: Path, false_alarm: float | None = None) -> None:
    """Two panels per round: the scheme's statistic (%) and the evidence in bits (−log2 p-value),
    one line per run label; embedding rounds are marked with dots, the false-alarm bound dashed."""
    import math

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6.5, 5.5), sharex=True)
    for label, records in runs.items():
        rows = [r for r in records if r.get("wm_bits") is not None]
        if not rows:
            continue
        name = next((s for s in STATISTICS if f"wm_{s}" in rows[0]), "match")
        rounds = [r["round"] for r in rows]
        line, = top.plot(rounds, [100 * r[f"wm_{name}"] for r in rows], label=f"{label} ({name})")
        bottom.plot(rounds, [r["wm_bits"] for r in rows], color=line.get_color(), label=label)
        embedded = [r for r in rows if r.get("wm_embedded")]
        bottom.plot([r["round"] for r in embedded], [r["wm_bits"] for r in embedded], "o",
                    color=line.get_color(), markersize=3)
    if false_alarm is not None:
        bottom.axhline(-math.log2(false_alarm), linestyle="--", color="grey", label="false-alarm bound")
    top.set_ylabel("statistic (%)")
    top.set_ylim(0, 100)
    bottom.set_ylabel("bits = −log2 p-value")
    bottom.set_xlabel("round (dots: embedding rounds)")
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    top.set_title("Owner watermark per round")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
