"""Quality KPIs computed with SQL aggregates (docs/kpis.md defines each one).

Every metric is a *cohort*: one SELECT of record ids (or audit event ids) with a ``hit`` flag
(counted in the numerator) and a ``value`` (days, items). The number on the dashboard is an
aggregate over that cohort and the drill-down lists the same cohort, so a number and the
records behind it cannot disagree.

Rules kept here, never in the web layer:
- only records the viewer may see count (the engine's rule: a role of the record's workflow
  version, or the initiator, or someone who was assigned a task on it);
- closed = a final state whose outcome is ``done``; ``void`` (cancelled, rejected,
  withdrawn) is excluded from rates unless a metric says otherwise;
- cycle times use the milestones the definitions declare (``milestones:``), never state
  names; due dates come from the record (``due_original`` / ``due_current``) or, for a
  workflow without a record due date, from the ``due_field`` its initial state declares;
- time base: UTC; a period is ``[start, end)``; "as of" is min(now, end).

No Flask here: the dashboard (webapp/dashboard.py), the CLI and a scheduled report all call
:class:`Kpi`.
"""

from __future__ import annotations

import os
import statistics
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import yaml
from sqlalchemy import (
    Float,
    Integer,
    Select,
    String,
    and_,
    case,
    cast,
    exists,
    false,
    func,
    literal,
    literal_column,
    null,
    or_,
    select,
    true,
    union_all,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session, aliased
from sqlalchemy.sql import expression
from sqlalchemy.sql.elements import ColumnElement

from workflow import clock
from workflow.db.models import (
    AuditEvent,
    DefinitionVersion,
    DueDateExtension,
    ExtensionStatus,
    JobRun,
    Record,
    RecordLink,
    RoleGrant,
    Task,
    User,
)
from workflow.identity import users as identity
from workflow.registry import Registry
from workflow.spec.model import WorkflowDefinition

DONE, VOID = "done", "void"
#: audit actions of the system chain that the security metrics count (workflow/auth.py)
SECURITY_ACTIONS = {"sec.failed_logins": "login_failed", "sec.lockouts": "account_locked",
                    "sec.signature_failures": "signature_failed"}
#: system metrics whose cohort is user accounts (rid = users.id), not records or events
USER_METRICS = ("ar.uncovered", "sec.totp_enrolled")
#: the JobRun.job name under which integrity verification results are stored
VERIFY_JOB = "verify_audit"


# --------------------------------------------------------------------------- portable SQL


class days_between(expression.FunctionElement):  # noqa: N801 - reads like a SQL function
    """(b - a) in days as a float, on SQLite (julianday) and PostgreSQL (epoch)."""

    type = Float()
    name = "days_between"
    inherit_cache = True


@compiles(days_between, "sqlite")
def _days_sqlite(element: Any, compiler: Any, **kw: Any) -> str:
    a, b = list(element.clauses)
    return f"(julianday({compiler.process(b, **kw)}) - julianday({compiler.process(a, **kw)}))"


@compiles(days_between, "postgresql")
def _days_pg(element: Any, compiler: Any, **kw: Any) -> str:
    a, b = list(element.clauses)
    return (f"(EXTRACT(EPOCH FROM ({compiler.process(b, **kw)} - {compiler.process(a, **kw)}))"
            " / 86400.0)")


class month_of(expression.FunctionElement):  # noqa: N801
    """'YYYY-MM' of a timestamp, in UTC."""

    type = String()
    name = "month_of"
    inherit_cache = True


@compiles(month_of, "sqlite")
def _month_sqlite(element: Any, compiler: Any, **kw: Any) -> str:
    (a,) = list(element.clauses)
    return f"strftime('%Y-%m', {compiler.process(a, **kw)})"


@compiles(month_of, "postgresql")
def _month_pg(element: Any, compiler: Any, **kw: Any) -> str:
    (a,) = list(element.clauses)
    return f"to_char(({compiler.process(a, **kw)}) AT TIME ZONE 'UTC', 'YYYY-MM')"


def _list_count_sql(dialect: str, items_field: str, key: str, value: str) -> str:
    """Correlated SQL counting the entries of the JSON list ``records.data[items_field]``
    whose ``key`` equals ``value`` (names come from a validated definition, not a user)."""
    for name in (items_field, key, value):
        if not name.replace("_", "").isalnum():
            raise ValueError(f"unsafe name {name!r}")
    if dialect == "sqlite":
        return (f"(SELECT count(*) FROM json_each(records.data, '$.{items_field}') AS li "
                f"WHERE json_extract(li.value, '$.{key}') = '{value}')")
    return (f"(SELECT count(*) FROM json_array_elements(CASE WHEN json_typeof(records.data -> "
            f"'{items_field}') = 'array' THEN records.data -> '{items_field}' ELSE '[]'::json END)"
            f" AS li WHERE li ->> '{key}' = '{value}')")


# --------------------------------------------------------------------------- periods


def month_start(d: datetime | date) -> datetime:
    return datetime(d.year, d.month, 1, tzinfo=UTC)


def add_months(d: datetime, n: int) -> datetime:
    m = d.month - 1 + n
    return d.replace(year=d.year + m // 12, month=m % 12 + 1, day=1)


@dataclass(frozen=True)
class Period:
    """``[start, end)`` in UTC."""

    start: datetime
    end: datetime

    @classmethod
    def last_months(cls, n: int = 12, now: datetime | None = None) -> Period:
        """The current month and the n-1 before it."""
        now = now or clock.now()
        end = add_months(month_start(now), 1)
        return cls(add_months(end, -n), end)

    @classmethod
    def months(cls, first: str, last: str) -> Period:
        """From the first day of ``first`` (YYYY-MM) to the end of ``last`` (YYYY-MM)."""
        a = datetime.strptime(first, "%Y-%m").replace(tzinfo=UTC)
        b = datetime.strptime(last, "%Y-%m").replace(tzinfo=UTC)
        if b < a:
            a, b = b, a
        return cls(a, add_months(b, 1))

    def month_keys(self) -> list[str]:
        out, m = [], month_start(self.start)
        while m < self.end:
            out.append(m.strftime("%Y-%m"))
            m = add_months(m, 1)
        return out

    @property
    def label(self) -> str:
        last = self.end - timedelta(days=1)
        if (self.start.year, self.start.month) == (last.year, last.month):
            return self.start.strftime("%b %Y")
        return f"{self.start:%b %Y} – {last:%b %Y}"


# --------------------------------------------------------------------------- thresholds

#: green / amber limits; ``better`` says which way is good. Override any of them with a YAML
#: file named by QMS_KPI_THRESHOLDS (same shape). Ratios are fractions (0.9 = 90 %).
DEFAULT_THRESHOLDS: dict[str, dict[str, Any]] = {
    "capa.overdue": {"better": "lower", "green": 0.05, "amber": 0.15},
    "capa.age": {"better": "lower", "green": 45, "amber": 90},
    "capa.closure_days": {"better": "lower", "green": 60, "amber": 90},
    "capa.on_time": {"better": "higher", "green": 0.90, "amber": 0.75},
    "capa.on_time_original": {"better": "higher", "green": 0.90, "amber": 0.75},
    "capa.extended": {"better": "lower", "green": 0.10, "amber": 0.25},
    "dev.triage_days": {"better": "lower", "green": 2, "amber": 5},
    "dev.closure_days": {"better": "lower", "green": 30, "amber": 45},
    "cr.cycle_days": {"better": "lower", "green": 60, "amber": 90},
    "cr.approval_days": {"better": "lower", "green": 7, "amber": 14},
    "cr.void_share": {"better": "lower", "green": 0.10, "amber": 0.20},
    "capa.effectiveness": {"better": "higher", "green": 0.90, "amber": 0.75},
    "capa.days_late": {"better": "lower", "green": 0, "amber": 14},
    "capa.days_late_original": {"better": "lower", "green": 0, "amber": 30},
    "trn.compliance": {"better": "higher", "green": 0.95, "amber": 0.85},
    "trn.overdue": {"better": "lower", "green": 0, "amber": 5},
    "ar.on_time": {"better": "higher", "green": 0.95, "amber": 0.80},
    "ar.uncovered": {"better": "lower", "green": 0, "amber": 0.05},
    "sec.failed_logins": {"better": "lower", "green": 20, "amber": 100},
    "sec.totp_enrolled": {"better": "higher", "green": 1.0, "amber": 0.9},
    "sec.lockouts": {"better": "lower", "green": 0, "amber": 3},
    "sec.signature_failures": {"better": "lower", "green": 2, "amber": 10},
}


def load_thresholds(path: str | None = None) -> dict[str, dict[str, Any]]:
    """The defaults, overridden by the YAML file ``path`` (or QMS_KPI_THRESHOLDS)."""
    out = {k: dict(v) for k, v in DEFAULT_THRESHOLDS.items()}
    path = path or os.environ.get("QMS_KPI_THRESHOLDS")
    if path:
        with open(path, encoding="utf-8") as fh:
            doc = yaml.safe_load(fh) or {}
        if not isinstance(doc, dict):
            raise ValueError(f"{path}: expected a mapping of metric -> thresholds")
        for key, spec in doc.items():
            if not isinstance(spec, dict) or spec.get("better", "lower") not in ("lower", "higher"):
                raise ValueError(f"{path}: {key}: needs better: lower|higher, green:, amber:")
            out[key] = {**out.get(key, {"better": "lower"}), **spec}
    return out


def rate(value: float | None, spec: dict[str, Any] | None) -> str | None:
    """'green' | 'amber' | 'red' (None without a value or threshold)."""
    if value is None or not spec:
        return None
    if spec.get("better", "lower") == "higher":
        return "green" if value >= spec["green"] else "amber" if value >= spec["amber"] else "red"
    return "green" if value <= spec["green"] else "amber" if value <= spec["amber"] else "red"


# --------------------------------------------------------------------------- metric specs


@dataclass(frozen=True)
class Spec:
    key: str
    workflow: str | None  # None: system (security) metrics
    label: str
    kind: str  # count | share | median | mean | sum
    show: str  # count | percent | days
    help: str
    num_label: str = ""
    den_label: str = ""


SPECS: dict[str, Spec] = {s.key: s for s in [
    Spec("capa.open", "capa", "Open CAPAs", "count", "count",
         "CAPAs created and not in a final state at the as-of time."),
    Spec("capa.overdue", "capa", "Overdue CAPAs", "share", "count",
         "Open CAPAs whose current due date has passed.", "overdue", "open"),
    Spec("capa.age", "capa", "Average age of open CAPAs", "mean", "days",
         "Mean days from creation to the as-of time, over open CAPAs.", "", "open"),
    Spec("capa.closure_days", "capa", "Median days to closure", "median", "days",
         "CAPAs closed (outcome done) in the period: closed − created.", "", "closed"),
    Spec("capa.on_time", "capa", "On-time closure (current due)", "share", "percent",
         "CAPAs due in the period (current due) closed on or before it.", "on time", "due"),
    Spec("capa.on_time_original", "capa", "On-time closure (original due)", "share", "percent",
         "CAPAs whose original due date falls in the period, closed on or before it.",
         "on time", "due"),
    Spec("capa.extended", "capa", "CAPAs extended", "share", "percent",
         "CAPAs closed in the period with at least one approved due-date extension.",
         "extended", "closed"),
    Spec("capa.effectiveness", "capa", "Effectiveness checks passed", "share", "percent",
         "Checks decided in the period (leaving the 'effectiveness' milestone's start state, "
         "not into a final state) that went on to its stop state.", "passed", "checks"),
    Spec("capa.days_late", "capa", "Days late at closure (current due)", "mean", "days",
         "CAPAs closed in the period after their current due date: mean days late.",
         "late", "closed"),
    Spec("capa.days_late_original", "capa", "Days late at closure (original due)", "mean",
         "days", "CAPAs closed in the period after their original due date: mean days late.",
         "late", "closed"),
    Spec("capa.recurrence", "capa", "Recurrence after closure", "share", "percent",
         "CAPAs raised by a deviation and closed (outcome done) in the period, for which a "
         "later deviation was recorded as a recurrence of that deviation (by the as-of time).",
         "recurred", "closed"),
    Spec("dev.created", "deviation", "Deviations reported", "count", "count",
         "Deviations created in the period (by classification and month in the chart)."),
    Spec("dev.triage_days", "deviation", "Median days to triage", "median", "days",
         "Milestone 'triage' completed in the period: entering its stop state − its start.",
         "", "triaged"),
    Spec("dev.closure_days", "deviation", "Median days to closure", "median", "days",
         "Deviations closed (outcome done) in the period: closed − created.", "", "closed"),
    Spec("dev.capa_share", "deviation", "Deviations that raised a CAPA", "share", "percent",
         "Deviations closed in the period that a CAPA is linked to by spawned_by.",
         "with CAPA", "closed"),
    Spec("cr.cycle_days", "change_request", "Median change cycle time", "median", "days",
         "Milestone 'cycle' completed in the period.", "", "closed"),
    Spec("cr.approval_days", "change_request", "Median time to approval", "median", "days",
         "Milestone 'approval' completed in the period.", "", "approved"),
    Spec("cr.void_share", "change_request", "Rejected or withdrawn", "share", "percent",
         "Change requests that reached a final state in the period with outcome void.",
         "void", "finished"),
    Spec("trn.compliance", "training_assignment", "Training compliance", "share", "percent",
         "Assignments due by the as-of time (not cancelled, trainee active) that are completed.",
         "completed", "due"),
    Spec("trn.days_to_complete", "training_assignment", "Median days to complete training",
         "median", "days", "Assignments completed (outcome done) in the period: completed − "
         "assigned.", "", "completed"),
    Spec("trn.overdue", "training_assignment", "Overdue training", "count", "count",
         "Open assignments past their due date at the as-of time."),
    Spec("ar.on_time", "access_review", "Access reviews on time", "share", "percent",
         "Reviews due in the period (current due) closed on or before it.", "on time", "due"),
    Spec("ar.revoked", "access_review", "Grants revoked", "sum", "count",
         "Grants marked revoke in access reviews closed in the period.", "", "reviews"),
    Spec("ar.uncovered", None, "Active users not covered by a review", "share", "count",
         "Active users holding a role at the as-of time whom no access review created in the "
         "period (not void) lists in its grants.", "not covered", "active users"),
    Spec("sec.totp_enrolled", None, "Authenticator enrolment", "share", "percent",
         "Active users whose roles require a second factor (policy) who have enrolled one.",
         "enrolled", "required"),
    Spec("sec.failed_logins", None, "Failed logins", "count", "count",
         "login_failed events of the system audit chain in the period."),
    Spec("sec.lockouts", None, "Account lockouts", "count", "count",
         "account_locked events of the system audit chain in the period."),
    Spec("sec.signature_failures", None, "Failed signatures", "count", "count",
         "signature_failed events of the system audit chain in the period."),
]}


@dataclass
class Metric:
    key: str
    label: str
    show: str
    value: float | None
    numerator: int | None = None
    denominator: int | None = None
    p90: float | None = None
    status: str | None = None
    note: str = ""

    @property
    def display(self) -> str:
        if self.value is None:
            return "–"
        if self.show == "percent":
            return f"{self.value * 100:.0f} %"
        if self.show == "days":
            return f"{self.value:.1f} d"
        return f"{self.value:g}"


@dataclass
class DrillRow:
    id: int
    number: str
    title: str
    workflow: str
    state: str
    state_label: str
    created_at: datetime
    due: Any
    closed_at: datetime | None
    counted: bool
    value: float | None


@dataclass
class EventRow:
    id: int
    at: datetime
    actor: str
    action: str
    username: str
    detail: str


# --------------------------------------------------------------------------- the calculator


@dataclass
class Kpi:
    """KPIs for one viewer, period and optional workflow filter.

    Args:
        session: a read session (``Engine.reader()``).
        registry: the engine's definition registry.
        viewer: username; only records this person may see count.
        period: the period; defaults to the last 12 months.
        as_of: defaults to min(now, period end).
    """

    session: Session
    registry: Registry
    viewer: str
    period: Period = field(default_factory=Period.last_months)
    as_of: datetime | None = None
    thresholds: dict[str, dict[str, Any]] = field(default_factory=load_thresholds)
    #: the second-factor policy (``auth.Policy``) for sec.totp_enrolled; default: from env
    policy: Any = None

    def __post_init__(self) -> None:
        if self.as_of is None:
            self.as_of = min(clock.now(), self.period.end)
        self.user = identity.get_user(self.session, self.viewer, active=False)
        self._defs: dict[str, list[WorkflowDefinition]] = {}
        self._visible: ColumnElement[bool] | None = None
        if self.dialect == "postgresql":
            # the KPI aggregates are estimated expensive enough for PostgreSQL's JIT, whose
            # compilation (~25 ms a query) costs more than the queries themselves
            # (bench/kpi.py); SET LOCAL: this read transaction only
            self.session.execute(expression.text("SET LOCAL jit = off"))

    # ------------------------------------------------------------------ building blocks

    @property
    def dialect(self) -> str:
        return self.session.get_bind().dialect.name

    def definitions(self, workflow: str) -> list[WorkflowDefinition]:
        """Every published version of ``workflow`` (records stay on the version they began)."""
        if workflow not in self._defs:
            hashes = self.session.execute(
                select(DefinitionVersion.content_hash).where(DefinitionVersion.key == workflow)
                .order_by(DefinitionVersion.version)).scalars().all()
            self._defs[workflow] = [self.registry.by_hash(self.session, h).definition
                                    for h in hashes]
        return self._defs[workflow]

    def visible(self) -> ColumnElement[bool]:
        """The engine's visibility rule (``Engine._visible``) as one SQL condition."""
        if self._visible is None:
            user = self.user
            if user.is_system:
                self._visible = true()
            else:
                roles = identity.roles_of(self.session, user)
                keys = self.session.execute(select(DefinitionVersion.key).distinct()).scalars()
                hashes = [d.content_hash for k in keys for d in self.definitions(k)
                          if roles & (set(d.roles) | set(d.start_roles))]
                self._visible = or_(
                    Record.definition_hash.in_(hashes) if hashes else false(),
                    Record.created_by_id == user.id,
                    exists().where(Task.record_id == Record.id, Task.assignee_id == user.id))
        return self._visible

    def _base(self, workflow: str) -> list[ColumnElement[bool]]:
        return [Record.workflow_key == workflow, Record.created_at <= self.as_of, self.visible()]

    def _closed_done(self) -> ColumnElement[bool]:
        return and_(Record.outcome == DONE, Record.closed_at <= self.as_of)

    def _void(self) -> ColumnElement[bool]:
        # null-safe (it is negated): a record without an outcome is not void
        return and_(func.coalesce(Record.outcome, "") == VOID,
                    func.coalesce(Record.closed_at <= self.as_of, False))

    def _open(self) -> ColumnElement[bool]:
        return or_(Record.closed_at.is_(None), Record.closed_at > self.as_of)

    def _in_period(self, col: Any) -> ColumnElement[bool]:
        return and_(col >= self.period.start, col < self.period.end, col <= self.as_of)

    def _due_date_field(self, workflow: str) -> str | None:
        """For workflows without a record due date: the due_field of the initial state."""
        defs = self.definitions(workflow)
        if not defs:
            return None
        d = defs[-1]
        return d.states[d.initial_state].due_field

    def _milestone(self, workflow: str, name: str) -> Select | None:
        """(rid, started, stopped) per visible record: the first entry into the milestone's
        start state and the last entry into its stop state, per definition version."""
        pairs = [(d.content_hash, d.milestones[name]) for d in self.definitions(workflow)
                 if name in d.milestones]
        if not pairs:
            return None
        ev = AuditEvent
        start = or_(*[and_(Record.definition_hash == h, ev.to_state == m.start) for h, m in pairs])
        stop = or_(*[and_(Record.definition_hash == h, ev.to_state == m.stop) for h, m in pairs])
        states = sorted({m.start for _, m in pairs} | {m.stop for _, m in pairs})
        stops = sorted({m.stop for _, m in pairs})
        # only records that entered a stop state in the period can count (the cohort keeps
        # those whose LAST stop entry is in it): found by ix_audit_events_to_state, so the
        # query reads the events of the period's finishers, not of every record
        e2 = AuditEvent.__table__.alias("e2")
        finished = Record.id.in_(select(e2.c.record_id).where(
            e2.c.to_state.in_(stops), e2.c.at >= self.period.start, e2.c.at < self.period.end,
            e2.c.at <= self.as_of, e2.c.record_id.is_not(None)))
        # only create and transition events carry to_state (workflow/engine.py)
        return (select(Record.id.label("rid"),
                       func.min(case((start, ev.at))).label("started"),
                       func.max(case((stop, ev.at))).label("stopped"))
                .join(ev, ev.record_id == Record.id)
                .where(*self._base(workflow), finished, ev.to_state.in_(states),
                       ev.at <= self.as_of)
                .group_by(Record.id))

    # ------------------------------------------------------------------ cohorts

    def cohort(self, key: str, **params: str) -> Select:
        """The metric's cohort: SELECT rid, hit, value (one row per record or event)."""
        spec = SPECS[key]
        wf = spec.workflow
        one = literal(1)
        if key in ("capa.open",):
            return self._rows(wf, [self._open()], one, None)
        if key == "capa.overdue":
            return self._rows(wf, [self._open()],
                              case((Record.due_current < self.as_of, 1), else_=0), None)
        if key == "capa.age":
            as_of = literal(self.as_of, Record.created_at.type)
            return self._rows(wf, [self._open()], one, days_between(Record.created_at, as_of))
        if key == "capa.recurrence":
            spawned = aliased(RecordLink)
            again = aliased(RecordLink)
            later = aliased(Record)
            source = exists().where(spawned.source_id == Record.id,
                                    spawned.kind == "spawned_by")
            recurred = exists().where(
                spawned.source_id == Record.id, spawned.kind == "spawned_by",
                again.target_id == spawned.target_id, again.kind == "recurrence_of",
                later.id == again.source_id, later.created_at > Record.closed_at,
                later.created_at <= self.as_of)
            return self._rows(wf, [self._closed_done(), self._in_period(Record.closed_at),
                                   source], case((recurred, 1), else_=0), None)
        if key in ("capa.closure_days", "dev.closure_days", "trn.days_to_complete"):
            return self._rows(wf, [self._closed_done(), self._in_period(Record.closed_at)], one,
                              days_between(Record.created_at, Record.closed_at))
        if key in ("capa.on_time", "capa.on_time_original", "ar.on_time"):
            due = Record.due_original if key.endswith("original") else Record.due_current
            return self._rows(wf, [
                due.is_not(None), due >= self.period.start, due < self.period.end,
                ~self._void(),
                # still open and not yet due at the as-of time: undecided, left out
                ~and_(self._open(), due >= self.as_of)],
                case((and_(self._closed_done(), Record.closed_at <= due), 1), else_=0),
                days_between(due, Record.closed_at))
        if key in ("capa.days_late", "capa.days_late_original"):
            due = Record.due_original if key.endswith("original") else Record.due_current
            late = Record.closed_at > due
            return self._rows(wf, [self._closed_done(), self._in_period(Record.closed_at),
                                   due.is_not(None)],
                              case((late, 1), else_=0),
                              case((late, days_between(due, Record.closed_at))))
        if key == "capa.effectiveness":
            return self._effectiveness(wf)
        if key in USER_METRICS:
            return self._users(key)
        if key == "capa.extended":
            ext = exists().where(DueDateExtension.record_id == Record.id,
                                 DueDateExtension.status == ExtensionStatus.APPROVED)
            return self._rows(wf, [self._closed_done(), self._in_period(Record.closed_at)],
                              case((ext, 1), else_=0), None)
        if key == "dev.created":
            conds = [self._in_period(Record.created_at)]
            if params.get("month"):
                conds.append(month_of(Record.created_at) == params["month"])
            if params.get("classification"):
                cls = params["classification"]
                col = Record.data["classification"].as_string()
                conds.append(col.is_(None) if cls == "unclassified" else col == cls)
            return self._rows(wf, conds, one, None)
        if key == "dev.capa_share":
            link = exists().where(RecordLink.target_id == Record.id,
                                  RecordLink.kind == "spawned_by")
            return self._rows(wf, [self._closed_done(), self._in_period(Record.closed_at)],
                              case((link, 1), else_=0), None)
        if key in ("dev.triage_days", "cr.cycle_days", "cr.approval_days"):
            name = {"dev.triage_days": "triage", "cr.cycle_days": "cycle",
                    "cr.approval_days": "approval"}[key]
            ms = self._milestone(wf, name)
            if ms is None:
                return select(literal(0).label("rid"), one.label("hit"),
                              literal(0.0).label("value")).where(false())
            sub = ms.subquery()
            return select(sub.c.rid, one.label("hit"),
                          days_between(sub.c.started, sub.c.stopped).label("value")).where(
                sub.c.started.is_not(None), sub.c.stopped >= sub.c.started,
                sub.c.stopped >= self.period.start, sub.c.stopped < self.period.end)
        if key == "cr.void_share":
            return self._rows(wf, [Record.outcome.is_not(None), Record.closed_at <= self.as_of,
                                   self._in_period(Record.closed_at)],
                              case((Record.outcome == VOID, 1), else_=0), None)
        if key in ("trn.compliance", "trn.overdue"):
            due_field = self._due_date_field(wf)
            if due_field:
                due = Record.data[due_field].as_string()
                passed = due < self.as_of.date().isoformat()
            else:
                passed = Record.due_current < self.as_of
            if key == "trn.overdue":
                return self._rows(wf, [self._open(), passed], one, None)
            trainee = Record.data["trainee"].as_string()
            active = exists().where(User.username == trainee, User.active.is_(True))
            return self._rows(wf, [passed, ~self._void(), active],
                              case((self._closed_done(), 1), else_=0), None)
        if key == "ar.revoked":
            items = self._revocation_items(wf)
            value = literal_column(_list_count_sql(self.dialect, items, "decision", "revoke"),
                                   Integer()) if items else literal(0)
            return self._rows(wf, [self._closed_done(), self._in_period(Record.closed_at)],
                              one, value)
        if key in SECURITY_ACTIONS:
            ev = AuditEvent
            return select(ev.id.label("rid"), one.label("hit"),
                          cast(null(), Float()).label("value")).where(
                ev.record_id.is_(None), ev.action == SECURITY_ACTIONS[key],
                self._in_period(ev.at))
        raise KeyError(key)

    def _effectiveness(self, workflow: str | None) -> Select:
        """One row per effectiveness check decided in the period: a transition out of the
        'effectiveness' milestone's start state that is not into a final state (a cancel is
        no verdict); passed = into the milestone's stop state."""
        ev = AuditEvent
        decided, passed, starts = [], [], set()
        for d in self.definitions(workflow or ""):
            m = d.milestones.get("effectiveness")
            if m is None:
                continue
            starts.add(m.start)
            finals = [n for n, st in d.states.items() if st.final and n != m.stop]
            here = and_(Record.definition_hash == d.content_hash, ev.from_state == m.start)
            decided.append(and_(here, ev.to_state.not_in(finals)) if finals else here)
            passed.append(and_(here, ev.to_state == m.stop))
        if not decided:
            return select(literal(0).label("rid"), literal(1).label("hit"),
                          cast(null(), Float()).label("value")).where(false())
        return (select(Record.id.label("rid"), case((or_(*passed), 1), else_=0).label("hit"),
                       cast(null(), Float()).label("value"))
                .join(ev, ev.record_id == Record.id)
                .where(*self._base(workflow or ""),
                       # ix_audit_events_from_state: only the events leaving those states
                       ev.from_state.in_(sorted(starts)), ev.to_state.is_not(None),
                       self._in_period(ev.at), or_(*decided)))

    def _has_role(self, roles: Sequence[str] | None = None) -> ColumnElement[bool]:
        g = RoleGrant
        conds = [g.user_id == User.id, g.granted_at <= self.as_of,
                 or_(g.revoked_at.is_(None), g.revoked_at > self.as_of),
                 or_(g.expires_at.is_(None), g.expires_at > self.as_of)]
        if roles is not None:
            conds.append(g.role.in_(list(roles)) if roles else false())
        return exists().where(*conds)

    def _users(self, key: str) -> Select:
        """User-account cohorts (rid = users.id): active people (not the system account)."""
        people = [User.active.is_(True), User.is_system.is_(False), User.created_at <= self.as_of]
        if key == "sec.totp_enrolled":
            if self.policy is None:
                from workflow.identity.policy import Policy

                self.policy = Policy.from_env()
            enrolled = and_(User.totp_secret.is_not(None), User.totp_enabled_at.is_not(None),
                            User.totp_enabled_at <= self.as_of)
            return select(User.id.label("rid"), case((enrolled, 1), else_=0).label("hit"),
                          cast(null(), Float()).label("value")).where(
                *people, self._has_role(tuple(self.policy.totp_required_roles)))
        # ar.uncovered: listed in the grants of no access review created in the period
        items = self._revocation_items("access_review") or "grants"
        if not items.replace("_", "").isalnum():
            raise ValueError(f"unsafe name {items!r}")
        if self.dialect == "sqlite":
            listed = (f"EXISTS (SELECT 1 FROM json_each(rv.data, '$.{items}') AS gi "
                      "WHERE lower(json_extract(gi.value, '$.user')) = lower(users.username))")
        else:
            listed = ("EXISTS (SELECT 1 FROM json_array_elements(CASE WHEN json_typeof(rv.data "
                      f"-> '{items}') = 'array' THEN rv.data -> '{items}' ELSE '[]'::json END) "
                      "AS gi WHERE lower(gi ->> 'user') = lower(users.username))")
        rv = Record.__table__.alias("rv")
        void = and_(func.coalesce(rv.c.outcome, "") == VOID,
                    func.coalesce(rv.c.closed_at <= self.as_of, False))
        covered = exists().where(rv.c.workflow_key == "access_review",
                                 rv.c.created_at >= self.period.start,
                                 rv.c.created_at < self.period.end,
                                 rv.c.created_at <= self.as_of, ~void, expression.text(listed))
        return select(User.id.label("rid"), case((covered, 0), else_=1).label("hit"),
                      cast(null(), Float()).label("value")).where(*people, self._has_role())

    def _rows(self, workflow: str | None, conds: Sequence[Any], hit: Any, value: Any) -> Select:
        return select(Record.id.label("rid"), hit.label("hit"),
                      (value if value is not None else cast(null(), Float())).label("value")).where(
            *self._base(workflow), *conds)

    def _revocation_items(self, workflow: str | None) -> str | None:
        """The list field a ``revoke_grants`` action reads (declared by the definition)."""
        for d in reversed(self.definitions(workflow or "")):
            for s in d.states.values():
                for a in s.on_enter:
                    if a.kind == "revoke_grants":
                        return str(a.params["items"])
        return None

    # ------------------------------------------------------------------ metrics

    def metric(self, key: str) -> Metric:
        spec = SPECS[key]
        c = self.cohort(key).subquery()
        m = Metric(key, spec.label, spec.show, None)
        if spec.kind == "median":
            values = [float(v) for v in self.session.execute(
                select(c.c.value).order_by(c.c.value)).scalars() if v is not None]
            m.numerator = m.denominator = len(values)
            if values:
                m.value = statistics.median(values)
                m.p90 = values[min(len(values) - 1, int(0.9 * len(values)))] \
                    if len(values) > 1 else values[0]
        else:
            n, hits, avg, total = self.session.execute(select(
                func.count(), func.coalesce(func.sum(c.c.hit), 0), func.avg(c.c.value),
                func.coalesce(func.sum(c.c.value), 0)).select_from(c)).one()
            if spec.kind == "count":
                m.value = m.numerator = int(n)
            elif spec.kind == "share":
                m.numerator, m.denominator = int(hits), int(n)
                m.value = (hits / n) if n else None
                if spec.show == "count":
                    m.value = int(hits)
            elif spec.kind == "mean":
                m.denominator = int(n)
                if spec.num_label:
                    m.numerator = int(hits)
                m.value = float(avg) if avg is not None else None
            elif spec.kind == "sum":
                m.numerator, m.denominator = int(total), int(n)
                m.value = int(total)
        status_value = m.value
        if spec.kind == "share" and spec.show == "count":
            status_value = (m.numerator / m.denominator) if m.denominator else None
        m.status = rate(status_value, self.thresholds.get(key))
        if m.value is None:
            m.note = "nothing in the period"
        return m

    def metrics(self, keys: Iterable[str] | None = None) -> dict[str, Metric]:
        return {k: self.metric(k) for k in (keys or SPECS)}

    # ------------------------------------------------------------------ drill-down

    def drill(self, key: str, part: str = "all", **params: str) -> list[DrillRow] | list[EventRow]:
        """The records (or events) behind a metric: ``part`` num = counted in the numerator,
        all = the whole cohort (the denominator)."""
        c = self.cohort(key, **params).subquery()
        if key in USER_METRICS:
            q = select(User, c.c.hit).join(c, c.c.rid == User.id)
            if part == "num":
                q = q.where(c.c.hit == 1)
            label = SPECS[key].num_label
            return [EventRow(u.id, u.totp_enabled_at or u.created_at, u.full_name,
                             label if hit else "", u.username, "counted" if hit else "")
                    for u, hit in self.session.execute(q.order_by(User.username)).all()]
        if key in SECURITY_ACTIONS:
            rows = self.session.execute(
                select(AuditEvent).join(c, c.c.rid == AuditEvent.id).order_by(AuditEvent.at)
            ).scalars().all()
            return [EventRow(e.id, e.at, e.actor_name, e.action, str(e.changes.get("username", "")),
                             str(e.changes.get("detail", ""))) for e in rows]
        q = select(Record, c.c.hit, c.c.value).join(c, c.c.rid == Record.id)
        if part == "num":
            q = q.where(c.c.hit == 1)
        out = []
        for rec, hit, value in self.session.execute(q.order_by(Record.number)).all():
            d = self.registry.by_hash(self.session, rec.definition_hash).definition
            due = rec.due_current
            field_ = None if due else d.states[d.initial_state].due_field
            if field_:
                due = rec.data.get(field_)
            out.append(DrillRow(rec.id, rec.number, rec.title, rec.workflow_key, rec.state,
                                d.states[rec.state].label, rec.created_at, due, rec.closed_at,
                                bool(hit), float(value) if value is not None else None))
        return out

    # ------------------------------------------------------------------ monthly series

    def deviations_by_class(self) -> dict[str, dict[str, int]]:
        """month -> classification -> count (created in the period; 'unclassified' before
        triage)."""
        cls = func.coalesce(Record.data["classification"].as_string(), "unclassified")
        c = self.cohort("dev.created").subquery()
        month = month_of(Record.created_at)
        rows = self.session.execute(
            select(month, cls, func.count()).join(c, c.c.rid == Record.id)
            .group_by(month, cls)).all()
        out: dict[str, dict[str, int]] = {m: {} for m in self.period.month_keys()}
        for m, k, n in rows:
            out.setdefault(m, {})[k] = int(n)
        return out

    def flow(self, workflow: str) -> dict[str, dict[str, int]]:
        """month -> {opened, closed}: records created / closed with outcome done per month."""
        vis = self._base(workflow)
        opened = select(month_of(Record.created_at).label("m"), literal("opened").label("k")
                        ).where(*vis, self._in_period(Record.created_at))
        closed = select(month_of(Record.closed_at).label("m"), literal("closed").label("k")
                        ).where(*vis, self._closed_done(), self._in_period(Record.closed_at))
        u = union_all(opened, closed).subquery()
        out = {m: {"opened": 0, "closed": 0} for m in self.period.month_keys()}
        for m, k, n in self.session.execute(select(u.c.m, u.c.k, func.count())
                                            .group_by(u.c.m, u.c.k)).all():
            out.setdefault(m, {"opened": 0, "closed": 0})[k] = int(n)
        return out

    def security_by_month(self) -> dict[str, dict[str, int]]:
        ev = AuditEvent
        month = month_of(ev.at)
        rows = self.session.execute(
            select(month, ev.action, func.count()).where(
                ev.record_id.is_(None), ev.action.in_(list(SECURITY_ACTIONS.values())),
                self._in_period(ev.at)).group_by(month, ev.action)).all()
        out = {m: {a: 0 for a in SECURITY_ACTIONS.values()} for m in self.period.month_keys()}
        for m, a, n in rows:
            out.setdefault(m, {})[a] = int(n)
        return out

    def training_by_document(self) -> list[tuple[str, int, int]]:
        """(document, completed, due) per document, same cohort as trn.compliance."""
        c = self.cohort("trn.compliance").subquery()
        doc = Record.data["document"].as_string()
        return [(str(d), int(h), int(n)) for d, h, n in self.session.execute(
            select(doc, func.sum(c.c.hit), func.count()).join(c, c.c.rid == Record.id)
            .group_by(doc).order_by(doc)).all()]

    def training_by_role(self) -> list[tuple[str, int, int]]:
        """(role, completed, due) per role the trainee holds at the as-of time, same cohort
        as trn.compliance (an assignment counts once in each of its trainee's roles)."""
        c = self.cohort("trn.compliance").subquery()
        g = RoleGrant
        trainee = func.lower(Record.data["trainee"].as_string())
        return [(str(r), int(h), int(n)) for r, h, n in self.session.execute(
            select(g.role, func.sum(c.c.hit), func.count())
            .select_from(c).join(Record, Record.id == c.c.rid)
            .join(User, func.lower(User.username) == trainee)
            .join(g, and_(g.user_id == User.id, g.granted_at <= self.as_of,
                          or_(g.revoked_at.is_(None), g.revoked_at > self.as_of),
                          or_(g.expires_at.is_(None), g.expires_at > self.as_of)))
            .group_by(g.role).order_by(g.role)).all()]

    # ------------------------------------------------------------------ integrity

    def last_verification(self) -> JobRun | None:
        """The newest stored verification run (never runs one)."""
        return self.session.execute(
            select(JobRun).where(JobRun.job == VERIFY_JOB).order_by(JobRun.started_at.desc(),
                                                                    JobRun.id.desc()).limit(1)
        ).scalar_one_or_none()


def store_verification(session: Session, report: Any, started: datetime, runner: str) -> JobRun:
    """Keep a verification result (``integrity.verify``) for the dashboard. The caller's unit
    commits it."""
    now = clock.now()
    # each run is its own "period": the time plus a nonce (two runs can share a clock tick)
    run = JobRun(job=VERIFY_JOB,
                 period_key=f"{now.isoformat(timespec='microseconds')}#{uuid.uuid4().hex[:8]}",
                 started_at=started, finished_at=now, status="done" if report.ok else "failed",
                 result={"ok": report.ok, "chains": report.chains, "events": report.events,
                         "signatures": report.signatures, "problems": len(report.problems),
                         "first_problem": str(report.problems[0]) if report.problems else None},
                 runner=runner)
    session.add(run)
    session.flush()
    return run


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
    from html import escape

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


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


__all__ = ["USER_METRICS", "Kpi", "Metric", "Period", "SPECS", "DEFAULT_THRESHOLDS",
           "load_thresholds", "rate", "store_verification", "days_between", "month_of",
           "render_report", "report_rows"]
