"""Interactive charts of the HTML report as Plotly figure specs (plain JSON-able dicts).

A spec is ``{"data": [traces], "layout": {...}}``, what ``Plotly.newPlot`` takes; the page embeds
each one as JSON and draws it with the Plotly library embedded once per page. Rates (0..1) stay
fractions in the data and are shown as % by the axis and hover formats, so the numbers in a
spec are the numbers of the run files.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")

Spec = dict[str, Any]
Points = list[tuple[int, float]]


def _rgba(hex_colour: str, alpha: float) -> str:
    r, g, b = (int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def _layout(title: str, x_title: str, y_title: str, percent: bool) -> dict[str, Any]:
    return {
        "title": {"text": title, "x": 0.01, "xanchor": "left"}, "height": 380,
        "margin": {"l": 60, "r": 20, "t": 50, "b": 50}, "hovermode": "x unified", "showlegend": True,
        "legend": {"orientation": "h", "y": -0.2},
        "xaxis": {"title": {"text": x_title}, "tickformat": "d"},
        "yaxis": {"title": {"text": y_title}, **({"tickformat": ".0%", "range": [-0.02, 1.02]} if percent else {})},
    }


def _round_axis(layout: dict[str, Any], rounds: Sequence[int]) -> None:
    """Integer ticks on the round axis (a tick every round up to 20 rounds)."""
    span = max(rounds, default=1) - min(rounds, default=1)
    layout["xaxis"]["dtick"] = max(1, math.ceil(span / 20))


def curves(series: dict[str, Points], title: str, y_title: str = "%", percent: bool = True,
           bands: dict[str, list[float | None]] | None = None) -> Spec:
    """One line per named series of (round, value) points; values 0..1 shown as % when
    ``percent``. ``bands``: per series, the half-width of an interval around each point (None
    where there is none), drawn as a shaded band (two traces: upper edge, then lower edge
    filled up to it) that hides and shows with its line."""
    fmt = ".1%" if percent else ".4g"
    data: list[dict[str, Any]] = []
    for i, (label, points) in enumerate(series.items()):
        if not points:
            continue
        colour = PALETTE[i % len(PALETTE)]
        xs, ys = [x for x, _ in points], [y for _, y in points]
        half = (bands or {}).get(label) or []
        if any(h is not None for h in half):
            edges = [(x, y + h, y - h) for x, y, h in zip(xs, ys, half, strict=True) if h is not None]
            common = {"x": [x for x, _, _ in edges], "mode": "lines", "line": {"width": 0, "color": colour},
                      "legendgroup": label, "showlegend": False, "hoverinfo": "skip", "type": "scatter"}
            data.append({**common, "name": f"{label} upper 95% CI", "y": [u for _, u, _ in edges]})
            data.append({**common, "name": f"{label} 95% CI", "y": [lo for _, _, lo in edges], "fill": "tonexty",
                         "fillcolor": _rgba(colour, 0.2)})
        data.append({"type": "scatter", "mode": "lines+markers", "name": label, "x": xs, "y": ys,
                     "legendgroup": label, "line": {"color": colour}, "marker": {"size": 5},
                     "hovertemplate": f"%{{y:{fmt}}}<extra>{label}</extra>"})
    layout = _layout(title, "round", y_title, percent)
    _round_axis(layout, [x for points in series.values() for x, _ in points])
    return {"data": data, "layout": layout}


def stacked_bars(rounds: Sequence[int], parts: dict[str, list[float]], title: str, unit: str) -> Spec:
    """Stacked bars per round, one colour per part (seconds per phase, megabytes per direction)."""
    data = [{"type": "bar", "name": label, "x": list(rounds), "y": values,
             "hovertemplate": f"%{{y:.3g}} {unit}<extra>{label}</extra>"} for label, values in parts.items()]
    layout = {**_layout(title, "round", unit, percent=False), "barmode": "stack"}
    _round_axis(layout, rounds)
    return {"data": data, "layout": layout}


def label_histogram(clients: Sequence[int], label_counts: list[list[int]]) -> Spec:
    """Stacked bars of each client's examples per label; client ids as categories, so the axis
    shows whole ids."""
    names = [str(c) for c in clients]
    data = [{"type": "bar", "name": str(label), "x": names, "y": [row[label] for row in label_counts],
             "hovertemplate": f"client %{{x}}: %{{y}} examples<extra>label {label}</extra>"}
            for label in range(len(label_counts[0]) if label_counts else 0)]
    layout = {**_layout("Examples per label and client", "client", "examples", percent=False), "barmode": "stack",
              "hovermode": "closest"}
    layout["xaxis"] = {"title": {"text": "client"}, "type": "category"}
    layout["legend"] = {"title": {"text": "label"}}
    return {"data": data, "layout": layout}


def heatmap(matrix: Sequence[Sequence[float | None]], rows: Sequence[str], columns: Sequence[str], row_title: str,
            column_title: str, title: str, percent: bool = True) -> Spec:
    """A matrix with its values written in the cells (None cells left blank): ``z`` holds the
    values as given, shown as % when ``percent``."""
    fmt = ".1%" if percent else ".3g"
    trace = {"type": "heatmap", "z": [list(r) for r in matrix], "x": list(columns), "y": list(rows),
             "colorscale": "Viridis", "texttemplate": f"%{{z:{fmt}}}", "hoverongaps": False,
             "hovertemplate": f"{row_title} %{{y}}<br>{column_title} %{{x}}<br>%{{z:{fmt}}}<extra></extra>",
             "colorbar": {"tickformat": ".0%" if percent else ""}}
    if percent and all(0 <= v <= 1 for row in matrix for v in row if v is not None):
        trace.update(zmin=0, zmax=1)  # a common scale for rates; a payoff less costs may leave it
    layout = {"title": {"text": title, "x": 0.01, "xanchor": "left"}, "height": max(260, 60 + 40 * len(rows)),
              "margin": {"l": 140, "r": 20, "t": 50, "b": 80},
              "xaxis": {"title": {"text": column_title}, "type": "category"},
              "yaxis": {"title": {"text": row_title}, "type": "category", "autorange": "reversed"}}
    return {"data": [trace], "layout": layout}
