"""The ``snapshot`` on-enter action kind: freeze a review's inputs into the record when it
enters a state (a management review at opening, ISO 27001 9.3, ICH Q10 4.1).

What it writes is ordinary record content, so it is part of the content hash the signatures
bind, replayed and checked by ``verify-audit``, and later changes of the records it read do
not alter it. Declared in a definition::

    on_enter:
      - snapshot:
          period: [period_from, period_to]  # date fields: first and last day (inclusive)
          at: snapshot_taken_at             # datetime field: when it was taken
          kpis: kpi_snapshot                # list field: one row per KPI (this period and
                                            # the period of the same length before it)
          collect:                          # list fields filled from other records
            - field: high_risks
              workflow: risk_assessment
              rows: risks                   # one row per row of this list (else per record)
              where: "item.get('priority') == 'high'"
              open: true                    # only records not closed (default: not void)
              copy: {record: number, hazard: "item['hazard']"}

The KPI values come from the KPI calculator's public snapshot (:func:`workflow.kpi.snapshot`),
the same numbers the dashboard shows for that period, counted as the system user (every
record), with the two periods of the same length before it as the trend.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from workflow.audit import trail as audit
from workflow.db.models import Record, User
from workflow.engine import inputs
from workflow.engine.context import ActionKind, Ctx
from workflow.errors import WorkflowError
from workflow.kpi import Period
from workflow.kpi import snapshot as kpi_snapshot
from workflow.spec.machine import Compiled
from workflow.spec.model import Action

#: rows copied from other records: values kept as JSON scalars
_SCALARS = (str, int, bool, type(None))


def period_of(data: dict[str, Any], fields: list[str], now: datetime) -> Period:
    """The review period from the record's two date fields (first and last day, inclusive);
    without them the six months before ``now``'s month."""
    first, last = (data.get(f) for f in fields) if fields else (None, None)
    if first and last:
        a = datetime.combine(date.fromisoformat(first), datetime.min.time(), UTC)
        b = datetime.combine(date.fromisoformat(last), datetime.min.time(), UTC)
        if b < a:
            raise WorkflowError(f"the review period ends ({last}) before it starts ({first})")
        return Period(a, b + timedelta(days=1))
    return Period.last_months(6, now.replace(day=1) - timedelta(days=1))


def _number(value: float | None) -> str | None:
    return None if value is None else str(Decimal(str(round(value, 4))).normalize())


def _display(value: float | None, unit: str) -> str:
    """A value as the dashboard shows it (workflow.kpi.Metric.display)."""
    if value is None:
        return "–"
    if unit == "percent":
        return f"{value * 100:.0f} %"
    if unit == "days":
        return f"{value:.1f} d"
    return f"{value:g}"


def kpi_rows(ctx: Ctx, period: Period, viewer: str | None = None) -> list[dict[str, Any]]:
    """One row per KPI (built-in and declared) from the KPI calculator's public snapshot
    (:func:`workflow.kpi.snapshot`): this period's value and the two periods of the same
    length before it (the trend)."""
    snap = kpi_snapshot(ctx.session, period, as_of=min(ctx.now, period.end), viewer=viewer,
                        registry=ctx.registry, trend=2)
    rows = []
    for key, m in snap["metrics"].items():
        unit = str(m.get("unit") or "count")
        earlier = m.get("trend") or []
        prev = earlier[-1]["value"] if earlier else None
        trend = "–"
        if m["value"] is not None and prev is not None:
            trend = "up" if m["value"] > prev else "down" if m["value"] < prev else "same"
        n = "" if m.get("denominator") is None else \
            f"{m.get('numerator') or 0}/{m['denominator']}"
        row = {"key": key, "label": m["label"], "value": m.get("display") or
               _display(m["value"], unit), "n": n, "status": m.get("status") or "",
               "previous": _display(prev, unit), "trend": trend,
               "history": "; ".join(f"{t['period']}: {_display(t['value'], unit)}"
                                    for t in earlier),
               "show": unit, "value_num": _number(m["value"]), "previous_num": _number(prev)}
        rows.append({k: v for k, v in row.items() if v not in (None, "")})
    return rows


def collect(ctx: Ctx, compiled: Compiled, rec: Record, user: User, action: Action,
            spec: dict[str, Any], period: Period) -> list[dict[str, Any]]:
    """Rows from other records of ``spec['workflow']`` (never this one)."""
    q = select(Record).where(Record.workflow_key == spec["workflow"], Record.id != rec.id)
    if spec.get("open"):
        q = q.where(Record.closed_at.is_(None))
    else:
        q = q.where((Record.outcome.is_(None)) | (Record.outcome != "void"))
    if spec.get("closed_in_period"):
        q = q.where(Record.closed_at >= period.start, Record.closed_at < period.end)
    if spec.get("before"):  # only records created before this one (e.g. earlier reviews)
        q = q.where(Record.id < rec.id)
    out: list[dict[str, Any]] = []
    for other in ctx.session.execute(q.order_by(Record.number)).scalars():
        d = ctx.registry.by_hash(ctx.session, other.definition_hash).definition
        names = inputs.names(ctx, d, other, other.data, user)
        names.update(title=other.title, state=d.states[other.state].label,
                     outcome=other.outcome, closed=other.closed_at is not None)
        items = [None]
        if spec.get("rows"):
            items = list(other.data.get(spec["rows"]) or [])
        for item in items:
            scope = {**names, "item": item}
            if "where" in spec and not inputs.evaluate(spec["where"], scope, action):
                continue
            row = {}
            for column, expr in spec.get("copy", {}).items():
                v = inputs.evaluate(expr, scope, action)
                row[column] = v if isinstance(v, _SCALARS) else str(v)
            out.append({k: v for k, v in row.items() if v not in (None, "")})
    return out


def snapshot(ctx: Ctx, compiled: Compiled, rec: Record, user: User, action: Action) -> None:
    """Freeze the review's inputs into the record (one audited update)."""
    p = action.params
    period = period_of(rec.data, list(p.get("period") or []), ctx.now)
    values: dict[str, Any] = {}
    if p.get("at"):
        values[p["at"]] = ctx.now.astimezone(UTC).isoformat()
    if p.get("kpis"):
        values[p["kpis"]] = kpi_rows(ctx, period)
    for spec in p.get("collect") or []:
        values[spec["field"]] = collect(ctx, compiled, rec, user, action, spec, period)
    changes = {k: [rec.data.get(k), v] for k, v in values.items() if rec.data.get(k) != v}
    if changes:
        rec.data = {**rec.data, **values}
        audit.record_event(ctx.session, rec, at=ctx.now, actor=user, action="update",
                           changes=changes,
                           reason=f"inputs frozen on entering {rec.state} (period "
                                  f"{period.start:%Y-%m-%d} to "
                                  f"{period.end - timedelta(days=1):%Y-%m-%d})")


#: the action kinds this module adds to the engine (workflow/bootstrap.py)
ACTIONS: dict[str, ActionKind] = {"snapshot": snapshot}
