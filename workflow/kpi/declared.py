"""KPIs declared in definitions (``kpis:``; docs/kpis.md, "Declared KPIs").

Each declared KPI becomes a :class:`~workflow.kpi.specs.Spec` keyed ``<workflow>.<name>``
and a cohort built by one of a few GENERIC functions (:data:`KIND_COHORTS`) from the kind,
the definition's fields, states and milestones: no Python per metric, no state name here.
The cohorts are the same shape as the built-in ones (``rid``, ``hit``, ``value``), so the
number, the drill-down, the CSV and the as-of rules are those of every other metric.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Float, Select, String, and_, case, cast, func, literal, select
from sqlalchemy.sql.elements import ColumnElement

from workflow.db.models import AuditEvent, Record
from workflow.kpi.context import Scope, empty_cohort
from workflow.kpi.specs import Spec
from workflow.kpi.sql import date_of, days_between
from workflow.spec.model import DeclaredKpi, KpiCondition, WorkflowDefinition

#: kind -> (Spec.kind, Spec.show); milestone_days takes its Spec.kind from ``stat``
SHOWN = {"count": ("count", "count"), "count_by": ("count", "count"),
         "share": ("share", "percent"), "overdue": ("share", "count"),
         "open_age": ("mean", "days"), "milestone_days": ("median", "days"),
         "milestone_within": ("share", "percent"), "on_time": ("share", "percent")}
BASE_LABEL = {"created": "created", "open": "open", "closed": "closed",
              "finished": "finished"}
#: the group of records whose grouped field is empty
NO_VALUE = "(none)"


@dataclass(frozen=True)
class Declared:
    """A declared KPI with what computes it: its spec, its declaration, the definition
    version it was read from (the workflow's newest published one)."""

    spec: Spec
    kpi: DeclaredKpi
    definition: WorkflowDefinition


def declared_of(d: WorkflowDefinition, reserved: Mapping[str, Any]) -> list[Declared]:
    """The declared KPIs of definition ``d`` (keys already in ``reserved`` - the built-in
    metrics - are left to those)."""
    out = []
    for name, k in d.kpis.items():
        key = f"{d.key}.{name}"
        if key in reserved:
            continue
        kind, show = SHOWN[k.kind]
        if k.kind == "milestone_days":
            kind = k.stat
        num, den = _labels(k)
        out.append(Declared(Spec(key, d.key, k.label, kind, show, k.help or _help(k, d), num,
                                 den), k, d))
    return out


def _labels(k: DeclaredKpi) -> tuple[str, str]:
    if k.kind in ("milestone_days", "milestone_within"):
        return ("within " + _duration(k) if k.kind == "milestone_within" else ""), "completed"
    if k.kind == "overdue":
        return "overdue", "open"
    if k.kind == "on_time":
        return "on time", "due"
    if k.kind == "open_age":
        return "", "open"
    if k.kind == "share":
        return "counted", BASE_LABEL[k.base]
    return "", BASE_LABEL[k.base]


def _duration(k: DeclaredKpi) -> str:
    assert k.within is not None
    secs = int(k.within.total_seconds())
    return f"{secs // 86400} d" if secs % 86400 == 0 else f"{secs / 3600:g} h"


def _help(k: DeclaredKpi, d: WorkflowDefinition) -> str:
    """A one-line description generated from the declaration (shown as the tile's title)."""
    what = {"created": "created in the period", "open": "open at the as-of time",
            "closed": "closed (outcome done) in the period",
            "finished": "that reached a final state in the period"}[k.base]
    ms = d.milestones.get(k.milestone or "")
    span = f"'{ms.label}' ({ms.start} → {ms.stop})" if ms else ""
    text = {
        "count": f"Records {what}.",
        "count_by": f"Records {what}, by {k.field}.",
        "share": f"Share of records {what} meeting the declared condition.",
        "overdue": f"Open records whose {k.due or 'due_current'} has passed.",
        "open_age": "Mean days from creation to the as-of time, over open records.",
        "milestone_days": f"{k.stat.capitalize()} days of milestone {span}, over records "
                          "that completed it in the period.",
        "milestone_within": f"Share of milestone {span} completions in the period done "
                            f"within {_duration(k) if k.within else ''}.",
        "on_time": f"Records due ({k.due or 'due_current'}) in the period closed on or before "
                   "it.",
    }[k.kind]
    return text + (" Only records matching the declared conditions." if k.where else "")


# --------------------------------------------------------------------------- conditions


def _value(d: WorkflowDefinition, name: str) -> Any:
    f = d.fields[name]
    col = Record.data[name]
    if f.type == "boolean":
        return col.as_boolean()
    if f.type in ("integer", "decimal"):
        return col.as_float()
    return col.as_string()


def condition(s: Scope, d: WorkflowDefinition, c: KpiCondition) -> ColumnElement[bool]:
    """One declared condition as SQL on ``records`` (field values as stored on the record;
    ``reached``: an entry into the state by the as-of time, from the audit trail)."""
    if c.op == "reached":
        # one read of the state's entries (ix_audit_events_to_state covers it), not a
        # correlated lookup per record, which SQLite plans as a scan of them per record
        ev = AuditEvent
        return Record.id.in_(select(ev.record_id).where(
            ev.to_state == c.state, ev.at <= s.as_of, ev.record_id.is_not(None)))
    assert c.field is not None
    col = _value(d, c.field)
    if c.op == "set":
        present = col.is_not(None)
        if d.fields[c.field].type not in ("boolean", "integer", "decimal"):
            present = and_(present, col != "")
        return present if c.values[0] else ~present
    if c.op == "due_within":  # ISO dates compare as text; the as-of day up to the span after
        day = s.as_of.date()
        return and_(col >= day.isoformat(), col <= (day + c.values[0]).isoformat())
    if c.op == "equals":
        return col == c.values[0]
    if c.op == "in":
        return col.in_(list(c.values))
    return func.coalesce(col.not_in(list(c.values)), True)


def _conditions(s: Scope, d: WorkflowDefinition, cs: tuple[KpiCondition, ...]) -> list[Any]:
    return [condition(s, d, c) for c in cs]


def _base(s: Scope, base: str) -> list[ColumnElement[bool]]:
    if base == "open":
        return [s.still_open()]
    if base == "closed":
        return [s.closed_done(), s.in_period(Record.closed_at)]
    if base == "finished":
        return [Record.outcome.is_not(None), Record.closed_at <= s.as_of,
                s.in_period(Record.closed_at)]
    return [s.in_period(Record.created_at)]


def group_of(d: WorkflowDefinition, field: str) -> Any:
    """The group a record falls in for ``count_by`` (its field's value as text; NO_VALUE
    when empty)."""
    col = _value(d, field)
    if d.fields[field].type == "boolean":
        return case((col.is_(True), "yes"), (col.is_(False), "no"), else_=NO_VALUE)
    # the value read once a row (a CASE naming it three times made PostgreSQL parse the
    # record's JSON three times): NULL and "" are NO_VALUE
    return func.coalesce(func.nullif(cast(col, String()), ""), NO_VALUE)


# --------------------------------------------------------------------------- the kinds


def _one() -> Any:
    return literal(1)


def _count(s: Scope, x: Declared, params: Mapping[str, str]) -> Select:
    d, k = x.definition, x.kpi
    conds = [*_base(s, k.base), *_conditions(s, d, k.where)]
    if k.kind == "count_by" and params.get("group") and k.field:
        conds.append(group_of(d, k.field) == params["group"])
    return s.rows(d.key, conds, _one(), None)


def _share(s: Scope, x: Declared, params: Mapping[str, str]) -> Select:
    d, k = x.definition, x.kpi
    hit = and_(*_conditions(s, d, k.hit))
    return s.rows(d.key, [*_base(s, k.base), *_conditions(s, d, k.where)],
                  case((hit, 1), else_=0), None)


def _due(s: Scope, d: WorkflowDefinition, due: str | None) -> tuple[Any, bool]:
    """(the due expression, whether it is a date field's ISO text rather than a time)."""
    if due in (None, "due_current"):
        return Record.due_current, False
    if due == "due_original":
        return Record.due_original, False
    return Record.data[due].as_string(), True


def _overdue(s: Scope, x: Declared, params: Mapping[str, str]) -> Select:
    d, k = x.definition, x.kpi
    due, is_date = _due(s, d, k.due)
    # a date field is due at the end of its day (UTC): passed when before the as-of date
    passed = due < (s.as_of.date().isoformat() if is_date else s.as_of)
    return s.rows(d.key, [s.still_open(), *_conditions(s, d, k.where)],
                  case((passed, 1), else_=0), None)


def _open_age(s: Scope, x: Declared, params: Mapping[str, str]) -> Select:
    d, k = x.definition, x.kpi
    as_of = literal(s.as_of, Record.created_at.type)
    return s.rows(d.key, [s.still_open(), *_conditions(s, d, k.where)], _one(),
                  days_between(Record.created_at, as_of))


def _on_time(s: Scope, x: Declared, params: Mapping[str, str]) -> Select:
    d, k = x.definition, x.kpi
    due, is_date = _due(s, d, k.due)
    start: Any
    end: Any
    if is_date:
        start, end = s.period.start.date().isoformat(), s.period.end.date().isoformat()
        not_yet = due >= s.as_of.date().isoformat()
        in_time = date_of(Record.closed_at) <= due
        value: Any = None
    else:
        start, end, not_yet = s.period.start, s.period.end, due >= s.as_of
        in_time = Record.closed_at <= due
        value = days_between(due, Record.closed_at)
    return s.rows(d.key, [
        due.is_not(None), due >= start, due < end, ~s.void(),
        # still open and not yet due at the as-of time: undecided, left out
        ~and_(s.still_open(), not_yet), *_conditions(s, d, k.where)],
        case((and_(s.closed_done(), in_time), 1), else_=0), value)


def _milestone(s: Scope, x: Declared, params: Mapping[str, str]) -> Select:
    d, k = x.definition, x.kpi
    ms = s.milestone(d.key, k.milestone or "")
    if ms is None:
        return empty_cohort(literal(0.0))
    sub = ms.subquery()
    days = days_between(sub.c.started, sub.c.stopped)
    hit: Any = _one()
    if k.kind == "milestone_within" and k.within is not None:
        hit = case((days <= k.within.total_seconds() / 86400.0, 1), else_=0)
    q = select(sub.c.rid, hit.label("hit"), cast(days, Float()).label("value")).where(
        sub.c.started.is_not(None), sub.c.stopped >= sub.c.started,
        sub.c.stopped >= s.period.start, sub.c.stopped < s.period.end)
    if k.where:
        q = q.join(Record, Record.id == sub.c.rid).where(*_conditions(s, d, k.where))
    return q


KIND_COHORTS: dict[str, Callable[[Scope, Declared, Mapping[str, str]], Select]] = {
    "count": _count, "count_by": _count, "share": _share, "overdue": _overdue,
    "open_age": _open_age, "on_time": _on_time, "milestone_days": _milestone,
    "milestone_within": _milestone,
}


def cohort(s: Scope, x: Declared, params: Mapping[str, str]) -> Select:
    """SELECT rid, hit, value of the declared KPI ``x`` for the scope's viewer and period."""
    return KIND_COHORTS[x.kpi.kind](s, x, params)


def groups(s: Scope, x: Declared, cohort: Select) -> dict[str, int]:
    """count_by: records per value of the grouped field, over the KPI's ``cohort`` (its rows
    carry the group: one read of records; every choice of a choice field listed, 0 when
    none; then other values, then NO_VALUE)."""
    d, field = x.definition, x.kpi.field or ""
    c = cohort.add_columns(group_of(d, field).label("g")).subquery()
    rows: dict[Any, int] = dict(s.session.execute(
        select(c.c.g, func.count()).group_by(c.c.g)).all())
    return ordered_groups(x, rows)


def ordered_groups(x: Declared, rows: dict[Any, int]) -> dict[str, int]:
    """The counts per group ``rows`` in the order :func:`groups` gives them (an empty
    cohort: every choice with 0)."""
    rows = dict(rows)
    f = x.definition.fields[x.kpi.field or ""]
    order = list(f.choices) if f.type == "choice" else (["yes", "no"] if f.type == "boolean"
                                                        else [])
    out = {v: int(rows.pop(v, 0)) for v in order}
    none = rows.pop(NO_VALUE, 0)
    out.update({str(v): int(n) for v, n in sorted(rows.items(), key=lambda r: str(r[0]))})
    if none:
        out[NO_VALUE] = int(none)
    return out
