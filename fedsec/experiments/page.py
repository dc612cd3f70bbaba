"""The HTML of a report page: tables (sortable), interactive charts, and the page around them.

A page has no external reference: styles and scripts are inline, the Plotly library is embedded
once, images are data: URIs, and every chart is a JSON spec in a ``<script type="application/json"
class="chart-spec">`` element that the page's own script draws, so the file can be mailed,
archived or opened offline.
"""

from __future__ import annotations

import html
import itertools
import json
import math
from collections.abc import Sequence
from functools import cache
from typing import Any

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1150px; color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f3f3f3; } td.text, th.text { text-align: left; }
table.sortable th { cursor: pointer; user-select: none; }
table.sortable th[data-order="ascending"]::after { content: " \\25B2"; }
table.sortable th[data-order="descending"]::after { content: " \\25BC"; }
code { background: #f3f3f3; padding: 0 0.2em; }
.charts { display: flex; flex-wrap: wrap; gap: 0.5em; } .chart { flex: 1 1 540px; min-width: 420px; }
.chart.wide { flex-basis: 100%; }
nav a { margin-right: 1em; } p.note { color: #555; font-size: 0.9em; }
figure { margin: 0.8em 0; } figure img { image-rendering: pixelated; max-width: 100%; border: 1px solid #ccc; }
figcaption { color: #555; font-size: 0.9em; margin-top: 0.3em; }
"""

# Draws every chart spec of the page, and sorts a sortable table by the clicked column
# (numbers by their data-value, else by text; a second click reverses).
SCRIPT = """
document.querySelectorAll('script.chart-spec').forEach(function (element) {
  var spec = JSON.parse(element.textContent);
  Plotly.newPlot(document.getElementById(element.dataset.chart), spec.data, spec.layout,
                 {responsive: true, displaylogo: false});
});
document.querySelectorAll('table.sortable th').forEach(function (header) {
  header.addEventListener('click', function () {
    var table = header.closest('table'), body = table.tBodies[0];
    var column = Array.prototype.indexOf.call(header.parentNode.children, header);
    var order = header.dataset.order === 'ascending' ? 'descending' : 'ascending';
    table.querySelectorAll('th').forEach(function (h) { delete h.dataset.order; });
    header.dataset.order = order;
    var key = function (row) {
      var cell = row.children[column], value = cell.dataset.value;
      return value !== undefined && value !== '' && !isNaN(value) ? Number(value) : cell.textContent;
    };
    var rows = Array.prototype.slice.call(body.rows).sort(function (a, b) {
      var x = key(a), y = key(b);
      var less = (typeof x === typeof y) ? x < y : typeof x === 'number';
      var more = (typeof x === typeof y) ? x > y : typeof y === 'number';
      return (less ? -1 : more ? 1 : 0) * (order === 'ascending' ? 1 : -1);
    });
    rows.forEach(function (row) { body.appendChild(row); });
  });
});
"""


@cache
def plotly_js() -> str:
    """The Plotly library's JavaScript (from the plotly package), embedded in every page."""
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


class Cell:
    """A table cell shown as ``text`` and sorted by ``value`` (a number, or None to sort by text)."""

    def __init__(self, text: str, value: float | None = None) -> None:
        self.text, self.value = text, value


def table(header: Sequence[str], rows: Sequence[Sequence[Any]], text_columns: int = 1, sortable: bool = False) -> str:
    """An HTML table; the first ``text_columns`` columns are left-aligned. Cells are values or
    :class:`Cell` (text plus the number it sorts by); ``sortable``: a click on a header sorts."""
    def cell(tag: str, i: int, value: Any) -> str:
        css = ' class="text"' if i < text_columns else ""
        if isinstance(value, Cell):
            sort = f' data-value="{value.value!r}"' if value.value is not None and math.isfinite(value.value) else ""
            return f"<{tag}{css}{sort}>{html.escape(value.text)}</{tag}>"
        sort = f' data-value="{value!r}"' if isinstance(value, (int, float)) and not isinstance(value, bool) else ""
        return f"<{tag}{css}{sort}>{html.escape(str(value))}</{tag}>"

    head = "".join(cell("th", i, h) for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(cell("td", i, v) for i, v in enumerate(row)) + "</tr>" for row in rows)
    css = ' class="sortable"' if sortable else ""
    return f"<table{css}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_chart_ids = itertools.count(1)


def _json_safe(value: Any) -> Any:
    """``value`` with non-finite floats as null (JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def chart(spec: dict[str, Any], name: str, wide: bool = False) -> str:
    """A placeholder drawn by the page's script from ``spec`` (a Plotly figure); ``name`` says
    what the chart shows (the spec's ``data-name``, for readers of the file); ``wide``: the
    chart takes the page's whole width."""
    chart_id = f"chart-{next(_chart_ids)}"
    text = json.dumps(_json_safe(spec), separators=(",", ":")).replace("</", "<\\/")
    return (f'<div class="chart{" wide" if wide else ""}" id="{chart_id}"></div>'
            f'<script type="application/json" class="chart-spec" '
            f'data-chart="{chart_id}" data-name="{html.escape(name)}">{text}</script>')


def figure(data_uri: str, alt: str, caption: str) -> str:
    """An image embedded in the page (``data_uri``: ``data:image/png;base64,...``, so nothing is
    fetched) with its caption."""
    if not data_uri.startswith("data:image/"):
        raise ValueError("a report embeds its images as data: URIs")
    return (f'<figure><img src="{html.escape(data_uri)}" alt="{html.escape(alt)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def charts(*parts: str) -> str:
    """Charts side by side (wrapping)."""
    return '<div class="charts">' + "".join(parts) + "</div>" if any(parts) else ""


def page(title: str, sections: list[tuple[str, str]]) -> str:
    """A whole HTML document: a title, links to the sections, then the (heading, HTML body)
    sections that have a body."""
    shown = [(heading, body) for heading, body in sections if body]
    anchors = [f"s{i}" for i in range(len(shown))]
    nav = "<nav>" + "".join(f'<a href="#{a}">{html.escape(h)}</a>' for a, (h, _) in zip(anchors, shown,
                                                                                        strict=True)) + "</nav>"
    parts = [f'<h2 id="{a}">{html.escape(heading)}</h2>\n{body}' for a, (heading, body) in zip(anchors, shown,
                                                                                               strict=True)]
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{STYLE}</style><script>{plotly_js()}</script></head>\n<body><h1>{html.escape(title)}</h1>\n"
            + nav + "\n" + "\n".join(parts) + f"\n<script>{SCRIPT}</script>\n</body></html>\n")
