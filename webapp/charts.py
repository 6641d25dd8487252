"""Server-side SVG charts for the dashboard: no JavaScript, no CDN, no inline CSS (the
Content-Security-Policy forbids it), only SVG presentation attributes. Each chart carries a
<title> and text labels so that it reads without colour too."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime

from markupsafe import Markup, escape

PALETTE = {"minor": "#7fb3e0", "major": "#e39b3b", "critical": "#c4352b",
           "unclassified": "#b7c0cc", "opened": "#1f5f99", "closed": "#1e7a46",
           "login_failed": "#e39b3b", "account_locked": "#c4352b",
           "signature_failed": "#7a4cc2"}
STATUS = {"green": "#1e7a46", "amber": "#d08a00", "red": "#c4352b", None: "#8a94a3"}
INK, MUTED, GRID = "#17202b", "#5b6673", "#e3e7ed"


def _month_label(key: str) -> str:
    return datetime.strptime(key, "%Y-%m").strftime("%b")


def _nice_max(v: float) -> float:
    if v <= 4:
        return 4
    mag = 10 ** math.floor(math.log10(v))
    for step in (1, 2, 2.5, 5, 10):
        if v <= step * mag:
            return step * mag
    return 10 * mag


def _axes(out: list[str], w: int, h: int, left: int, top: int, bottom: int, ymax: float) -> None:
    for i in range(5):
        y = top + (h - top - bottom) * i / 4
        val = ymax * (4 - i) / 4
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{w - 8}" y2="{y:.1f}" stroke="{GRID}"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" '
                   f'fill="{MUTED}">{val:g}</text>')


def stacked_bars(title: str, data: Mapping[str, Mapping[str, int]], series: Sequence[str],
                 links: Mapping[tuple[str, str], str] | None = None,
                 w: int = 560, h: int = 220) -> Markup:
    """One bar per month, stacked by series (e.g. classification). ``links[(month, s)]``
    makes a segment a link to its drill-down."""
    months = list(data)
    left, top, bottom = 34, 12, 28
    totals = [sum(data[m].get(s, 0) for s in series) for m in months]
    ymax = _nice_max(max(totals or [0]))
    plot_h = h - top - bottom
    slot = (w - left - 8) / max(1, len(months))
    bw = min(34.0, slot * 0.62)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" role="img" '
           f'class="chart" aria-label="{escape(title)}"><title>{escape(title)}</title>']
    _axes(out, w, h, left, top, bottom, ymax)
    for i, m in enumerate(months):
        x = left + slot * i + (slot - bw) / 2
        y = top + plot_h
        for s in series:
            n = data[m].get(s, 0)
            if not n:
                continue
            bh = plot_h * n / ymax
            y -= bh
            rect = (f'<rect x="{x:.1f}" y="{y:.1f}" width="{bw:.1f}" height="{bh:.1f}" rx="2" '
                    f'fill="{PALETTE.get(s, "#1f5f99")}"><title>{escape(_month_label(m))} '
                    f'{m[:4]}: {n} {escape(s)}</title></rect>')
            href = (links or {}).get((m, s))
            out.append(f'<a href="{escape(href)}">{rect}</a>' if href else rect)
        if totals[i]:
            out.append(f'<text x="{x + bw / 2:.1f}" y="{y - 4:.1f}" text-anchor="middle" '
                       f'font-size="11" font-weight="700" fill="{INK}">{totals[i]}</text>')
        out.append(f'<text x="{x + bw / 2:.1f}" y="{h - 10}" text-anchor="middle" font-size="11" '
                   f'fill="{MUTED}">{_month_label(m)}</text>')
    out.append("</svg>")
    return Markup("".join(out))


def lines(title: str, data: Mapping[str, Mapping[str, int]], series: Sequence[str],
          w: int = 560, h: int = 220) -> Markup:
    """One line per series over the months, with a dot and value per point."""
    months = list(data)
    left, top, bottom = 34, 14, 28
    ymax = _nice_max(max([data[m].get(s, 0) for m in months for s in series] or [0]))
    plot_h = h - top - bottom
    step = (w - left - 24) / max(1, len(months) - 1)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" role="img" '
           f'class="chart" aria-label="{escape(title)}"><title>{escape(title)}</title>']
    _axes(out, w, h, left, top, bottom, ymax)
    for i, m in enumerate(months):
        out.append(f'<text x="{left + 8 + step * i:.1f}" y="{h - 10}" text-anchor="middle" '
                   f'font-size="11" fill="{MUTED}">{_month_label(m)}</text>')
    for s in series:
        color = PALETTE.get(s, "#1f5f99")
        pts = [(left + 8 + step * i, top + plot_h - plot_h * data[m].get(s, 0) / ymax)
               for i, m in enumerate(months)]
        if len(pts) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)
            out.append(f'<polyline points="{path}" fill="none" stroke="{color}" '
                       f'stroke-width="2.5" stroke-linejoin="round"/>')
        for (x, y), m in zip(pts, months, strict=True):
            n = data[m].get(s, 0)
            out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{color}">'
                       f'<title>{escape(_month_label(m))} {m[:4]}: {n} {escape(s)}</title></circle>')
    out.append("</svg>")
    return Markup("".join(out))


def gauge(title: str, value: float | None, spec: Mapping | None, caption: str = "",
          w: int = 240, h: int = 150) -> Markup:
    """A half-circle gauge 0-100 % with red / amber / green bands from the thresholds."""
    cx, cy, r = w / 2, h - 22, min(w / 2 - 16, h - 34)

    def point(frac: float, radius: float) -> tuple[float, float]:
        a = math.pi * (1 - frac)
        return cx + radius * math.cos(a), cy - radius * math.sin(a)

    def arc(f0: float, f1: float, color: str) -> str:
        x0, y0 = point(f0, r)
        x1, y1 = point(f1, r)
        return (f'<path d="M{x0:.1f},{y0:.1f} A{r:.1f},{r:.1f} 0 0 1 {x1:.1f},{y1:.1f}" '
                f'fill="none" stroke="{color}" stroke-width="16"/>')

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" role="img" '
           f'class="gauge" aria-label="{escape(title)}"><title>{escape(title)}</title>']
    amber = float((spec or {}).get("amber", 0.85))
    green = float((spec or {}).get("green", 0.95))
    out.append(arc(0, amber, "#f3c9c4"))
    out.append(arc(amber, green, "#f6e2b3"))
    out.append(arc(green, 1, "#bfe3cc"))
    if value is not None:
        v = max(0.0, min(1.0, value))
        color = STATUS["green" if v >= green else "amber" if v >= amber else "red"]
        if v > 0:
            out.append(arc(0, v, color).replace('stroke-width="16"', 'stroke-width="9"'))
        x, y = point(v, r - 26)
        out.append(f'<line x1="{cx:.1f}" y1="{cy:.1f}" x2="{x:.1f}" y2="{y:.1f}" stroke="{INK}" '
                   f'stroke-width="3" stroke-linecap="round"/>')
        out.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="5" fill="{INK}"/>')
        out.append(f'<text x="{cx:.1f}" y="{cy - 22:.1f}" text-anchor="middle" font-size="26" '
                   f'font-weight="800" fill="{color}">{v * 100:.0f} %</text>')
    else:
        out.append(f'<text x="{cx:.1f}" y="{cy - 22:.1f}" text-anchor="middle" font-size="20" '
                   f'fill="{MUTED}">no data</text>')
    out.append(f'<text x="{cx - r:.1f}" y="{h - 4}" text-anchor="middle" font-size="10" '
               f'fill="{MUTED}">0</text><text x="{cx + r:.1f}" y="{h - 4}" text-anchor="middle" '
               f'font-size="10" fill="{MUTED}">100</text>')
    if caption:
        out.append(f'<text x="{cx:.1f}" y="{h - 4}" text-anchor="middle" font-size="11" '
                   f'fill="{MUTED}">{escape(caption)}</text>')
    out.append("</svg>")
    return Markup("".join(out))


def legend(series: Sequence[str]) -> Markup:
    items = "".join(
        f'<span class="lg"><svg width="10" height="10" aria-hidden="true"><rect width="10" '
        f'height="10" rx="2" fill="{PALETTE.get(s, "#1f5f99")}"/></svg> '
        f'{escape(s.replace("_", " ").capitalize())}</span>' for s in series)
    return Markup(f'<div class="legend">{items}</div>')
