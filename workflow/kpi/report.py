"""The KPI table as a report (the monthly scheduled report, docs/kpis.md)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from html import escape
from typing import Any

from sqlalchemy.orm import Session

from workflow.identity import users as identity
from workflow.kpi.calculator import Kpi, Metric
from workflow.kpi.periods import Period, add_months
from workflow.registry import Registry


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


# --------------------------------------------------------------------------- frozen values

#: how many earlier periods of the same length ``snapshot`` gives as each metric's trend
TREND_PERIODS = 3


def _metric_dict(k: Kpi, m: Metric) -> dict[str, Any]:
    spec = k.spec(m.key)
    return {"label": m.label, "workflow": spec.workflow, "kind": spec.kind, "unit": m.show,
            "value": m.value, "display": m.display, "numerator": m.numerator,
            "denominator": m.denominator, "p90": m.p90, "status": m.status,
            "threshold": k.threshold(m.key), "groups": m.groups}


def snapshot(session: Session, period: Period, as_of: datetime | None = None,
             viewer: str | None = None, *, registry: Registry | None = None,
             keys: Iterable[str] | None = None, trend: int = TREND_PERIODS,
             thresholds: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Every KPI (built-in and declared) of ``period`` as plain JSON-ready data, to freeze
    into a record (e.g. a management review at its opening) or export. STABLE: other
    modules rely on this shape (docs/kpis.md, "Snapshot").

    Args:
        session: any session (read or inside a unit of work); nothing is written, except
            the system account on an empty database (``viewer`` None).
        period: the period (``Period.months("2026-01", "2026-03")``).
        as_of: the as-of time; default min(now, period end). The same arguments on the same
            data give the same values later (every metric is computed as of ``as_of``).
        viewer: username whose visibility applies; None = the system account (every record,
            and the system-wide metrics).
        registry: the engine's registry (``engine.registry``); default a fresh one.
        keys: the metrics; default every one.
        trend: how many earlier periods of the same number of months to add as each
            metric's ``trend`` (oldest first; each as of its own end).
        thresholds: green / amber per metric; default the configured ones
            (QMS_KPI_THRESHOLDS over the defaults).

    Returns:
        ``{"period": {"start", "end", "label", "months"}, "as_of", "viewer", "metrics":
        {key: {"label", "workflow", "kind", "unit", "value", "display", "numerator",
        "denominator", "p90", "status", "threshold", "groups", "trend": [{"period",
        "start", "end", "value", "status"}, ...]}}}``; times are ISO 8601 UTC strings,
        values floats or ints (None: nothing in the period; ratios are fractions).
    """
    registry = registry or Registry()
    if viewer is None:
        viewer = identity.system_user(session).username
    def calculator(p: Period, at: datetime | None) -> Kpi:
        if thresholds is None:
            return Kpi(session, registry, viewer, p, as_of=at)
        return Kpi(session, registry, viewer, p, as_of=at, thresholds=thresholds)

    k = calculator(period, as_of)
    keys = list(keys) if keys is not None else list(k.specs())
    metrics = {key: _metric_dict(k, m) for key, m in k.metrics(keys).items()}
    months = len(period.month_keys())
    earlier: list[Period] = []
    end = period.start
    for _ in range(max(0, trend)):
        earlier.insert(0, Period(add_months(end, -months), end))
        end = earlier[0].start
    for key in metrics:
        metrics[key]["trend"] = []
    for p in earlier:
        kp = calculator(p, p.end)
        for key, m in kp.metrics(keys).items():
            metrics[key]["trend"].append({"period": p.label, "start": _iso(p.start),
                                          "end": _iso(p.end), "value": m.value,
                                          "status": m.status})
    assert k.as_of is not None
    return {"period": {"start": _iso(period.start), "end": _iso(period.end),
                       "label": period.label, "months": period.month_keys()},
            "as_of": _iso(k.as_of), "viewer": viewer, "metrics": metrics}


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat()
