"""The KPI table as a report (the monthly scheduled report, docs/kpis.md)."""

from __future__ import annotations

from collections.abc import Iterable
from html import escape

from workflow.kpi.calculator import Kpi


def report_rows(k: Kpi, keys: Iterable[str] | None = None) -> list[tuple[str, str, str, str]]:
    """(label, value, numerator/denominator, status) per metric, for reports."""
    out = []
    for m in k.metrics(keys).values():
        nd = "" if m.denominator is None else f"{m.numerator if m.numerator is not None else ''}"\
            f"/{m.denominator}"
        out.append((m.label, m.display, nd, m.status or ""))
    return out


def render_report(k: Kpi, keys: Iterable[str] | None = None) -> tuple[str, str]:
    """The KPI table for ``k``'s period as (plain text, HTML)."""
    rows = report_rows(k, keys)
    title = f"Quality KPIs {k.period.label} (as of {k.as_of:%Y-%m-%d %H:%M} UTC)"
    w = max([len(r[0]) for r in rows] + [6])
    lines = [title, "", f"{'Metric':<{w}}  {'Value':>9}  {'n/N':>11}  Status"]
    lines += [f"{a:<{w}}  {b:>9}  {c:>11}  {d}".rstrip() for a, b, c, d in rows]
    by_role = k.training_by_role()
    if by_role:
        lines += ["", "Training compliance per role"]
        lines += [f"  {r:<24} {h}/{n}" for r, h, n in by_role]
    text = "\n".join(lines) + "\n"
    cells = "".join(f"<tr><td>{escape(a)}</td><td>{escape(b)}</td><td>{escape(c)}</td>"
                    f"<td class=\"{escape(d)}\">{escape(d)}</td></tr>" for a, b, c, d in rows)
    html = (f"<h1>{escape(title)}</h1><table><thead><tr><th>Metric</th><th>Value</th>"
            f"<th>n/N</th><th>Status</th></tr></thead><tbody>{cells}</tbody></table>")
    if by_role:
        html += ("<h2>Training compliance per role</h2><table><tbody>" +
                 "".join(f"<tr><td>{escape(r)}</td><td>{h}/{n}</td></tr>" for r, h, n in by_role)
                 + "</tbody></table>")
    return text, html
