"""Small HTML building blocks for the report: escaping, number formats, tables, boxes.

Everything that comes from a run directory (record text, rationales, source and anchor names,
rubric wording a user may have edited) is untrusted and goes through :func:`esc` exactly once,
here, so a record holding ``<script>`` renders as text and never as markup.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

DASH = "—"



def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def fmt_int(value: Any) -> str:
    if is_missing(value):
        return DASH
    return f"{int(round(float(value))):,}"


def fmt_count(value: Any) -> str:
    """A done marker's count as it was recorded: an int with separators, a float as a float (a
    silhouette of 0.6193 must not show as "1"), anything else as its text."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return fmt_int(value)
    if not math.isfinite(value):
        return str(value)
    return f"{value:,.0f}" if abs(value) >= 1e4 else f"{value:.4g}"


def fmt_float(value: Any, digits: int = 2) -> str:
    if is_missing(value):
        return DASH
    return f"{float(value):,.{digits}f}"


def fmt_compact(value: Any) -> str:
    """1234 -> 1.2k, 5_600_000 -> 5.6M: for token counts in headlines and charts."""
    if is_missing(value):
        return DASH
    value = float(value)
    for limit, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            scaled = value / limit
            return f"{scaled:.1f}{suffix}" if scaled < 100 else f"{scaled:.0f}{suffix}"
    return f"{value:.0f}"


def fmt_pct(value: Any, digits: int = 1) -> str:
    if is_missing(value):
        return DASH
    return f"{100 * float(value):.{digits}f}%"


def fmt_seconds(value: Any) -> str:
    if is_missing(value):
        return DASH
    value = float(value)
    if value < 60:
        return f"{value:.1f} s"
    if value < 3600:
        return f"{int(value // 60)} min {int(value % 60)} s"
    return f"{int(value // 3600)} h {int(value % 3600 // 60)} min"


def ratio(part: Any, whole: Any) -> float:
    try:
        return float(part) / float(whole) if whole else math.nan
    except (TypeError, ValueError):
        return math.nan


@dataclass
class Cell:
    """A table cell: `html` is already safe markup; `sort` is the value the column sorts by."""

    html: str
    sort: Any = None
    cls: str = ""
    title: str | None = None


def num(value: Any, kind: str = "int", digits: int = 2) -> Cell:
    text = {"int": fmt_int, "compact": fmt_compact, "pct": fmt_pct}.get(kind)
    shown = text(value) if text else fmt_float(value, digits)
    return Cell(shown, None if is_missing(value) else float(value), "num")


def text_cell(value: Any, title: str | None = None, wrap: bool = False) -> Cell:
    """Escaped text; `wrap` lets long prose wrap (cells stay on one line by default)."""
    return Cell(esc(value), str(value) if value is not None else "", "wrap" if wrap else "", title)


def table(headers: Sequence[str | Cell], rows: Iterable[Sequence[Cell | str]], sortable: bool = True,
          cls: str = "", caption: str | None = None, foot: Sequence[Cell | str] | None = None) -> str:
    """A table; plain strings are escaped, :class:`Cell` values are trusted markup."""
    classes = " ".join(c for c in ("data", "sortable" if sortable else "", cls) if c)
    out = [f'<div class="table-wrap"><table class="{classes}">']
    if caption:
        out.append(f"<caption>{esc(caption)}</caption>")
    heads = "".join(f"<th>{h.html}</th>" if isinstance(h, Cell) else f"<th>{esc(h)}</th>" for h in headers)
    out.append(f"<thead><tr>{heads}</tr></thead><tbody>")
    for row in rows:
        out.append("<tr>" + "".join(_td(c) for c in row) + "</tr>")
    out.append("</tbody>")
    if foot:
        out.append("<tfoot><tr>" + "".join(_td(c) for c in foot) + "</tr></tfoot>")
    out.append("</table></div>")
    return "".join(out)


def _td(cell: Cell | str) -> str:
    if not isinstance(cell, Cell):
        cell = text_cell(cell)
    attrs = ""
    if cell.cls:
        attrs += f' class="{cell.cls}"'
    if cell.sort is not None:
        attrs += f' data-sort="{esc(cell.sort)}"'
    if cell.title:
        attrs += f' title="{esc(cell.title)}"'
    return f"<td{attrs}>{cell.html}</td>"


def missing_box(needs: str, detail: str = "") -> str:
    """The box a section shows when the stage it reads has not run (yet)."""
    more = f" {esc(detail)}" if detail else ""
    return (f'<div class="box missing"><strong>Stage not run yet.</strong> This section is filled by '
            f"<code>mira {esc(needs)}</code>; run it, then <code>mira report</code> again.{more}</div>")


def note(text: str, kind: str = "info") -> str:
    return f'<div class="box {esc(kind)}">{text}</div>'


def details(summary: str, body: str, open_: bool = False) -> str:
    return f"<details{' open' if open_ else ''}><summary>{summary}</summary>{body}</details>"


def clipped_text(text: Any, limit: int = 600) -> str:
    """Record text, escaped; long text shows its start with a "show more" toggle for the rest."""
    value = "" if text is None else str(text)
    if len(value) <= limit:
        return f'<pre class="record">{esc(value)}</pre>'
    return (f'<pre class="record">{esc(value[:limit])}…</pre>'
            f'<details class="more"><summary>show more ({fmt_int(len(value))} characters)</summary>'
            f'<pre class="record">{esc(value)}</pre></details>')


def stat_tiles(items: Sequence[tuple[str, str, str]]) -> str:
    """Headline numbers: (label, value, sub-line); value and sub are escaped."""
    tiles = "".join(f'<div class="tile"><div class="tile-label">{esc(label)}</div>'
                    f'<div class="tile-value{" long" if len(value) > 14 else ""}">{esc(value)}</div>'
                    f'<div class="tile-sub">{esc(sub)}</div></div>' for label, value, sub in items)
    return f'<div class="tiles">{tiles}</div>'


def badge(text: str, kind: str = "") -> str:
    return f'<span class="badge {esc(kind)}">{esc(text)}</span>'


def sparkbars(values: Sequence[float], labels: Sequence[str], width: int = 120, height: int = 28) -> str:
    """A tiny inline SVG bar chart (length histograms in table rows); titles show exact values."""
    if not values or max(values) <= 0:
        return DASH
    peak = max(values)
    step = width / len(values)
    bars = []
    for i, (value, label) in enumerate(zip(values, labels)):
        h = max(1.0, (height - 2) * value / peak) if value else 0.0
        bars.append(f'<rect x="{i * step + 0.5:.1f}" y="{height - h:.1f}" width="{max(step - 1, 1):.1f}" '
                    f'height="{h:.1f}"><title>{esc(label)}: {fmt_int(value)}</title></rect>')
    return (f'<svg class="spark" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
            f'role="img" aria-label="length histogram">{"".join(bars)}</svg>')
