"""One cohort function per metric, in :data:`COHORTS` keyed like :data:`workflow.kpi.specs.SPECS`.

A cohort is one SELECT of ``rid`` (a record id, an audit event id or, for
:data:`~workflow.kpi.specs.USER_METRICS`, a user id), ``hit`` (1 = counted in the numerator)
and ``value`` (days, items). :class:`workflow.kpi.calculator.Kpi` aggregates it into the
number and lists it as the drill-down, so the two cannot disagree.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import (
    Float,
    Integer,
    Select,
    and_,
    case,
    cast,
    exists,
    func,
    literal,
    literal_column,
    null,
    or_,
    select,
)
from sqlalchemy.orm import aliased
from sqlalchemy.sql import expression
from sqlalchemy.sql.elements import ColumnElement

from workflow.db.models import AuditEvent, DueDateExtension, ExtensionStatus, Record, RecordLink, User
from workflow.kpi.context import Scope, empty_cohort
from workflow.kpi.specs import SECURITY_ACTIONS, VOID, Spec
from workflow.kpi.sql import (
    days_between,
    has_key,
    list_count_sql,
    lists_user_sql,
    month_of,
)
from workflow.rules import trainee_of, training_done_clause

#: (scope, the metric's spec, drill-down filters) -> SELECT rid, hit, value
Cohort = Callable[[Scope, Spec, Mapping[str, str]], Select]

#: metric key -> its cohort function
COHORTS: dict[str, Cohort] = {}

#: the workflow whose records list the grants an access review covers (ar.uncovered)
ACCESS_REVIEW = "access_review"


def cohort(*keys: str) -> Callable[[Cohort], Cohort]:
    """Register the decorated function as the cohort of the metrics ``keys``."""
    def register(fn: Cohort) -> Cohort:
        for key in keys:
            if key in COHORTS:
                raise ValueError(f"two cohorts for {key}")
            COHORTS[key] = fn
        return fn
    return register


def _one() -> Any:
    return literal(1)


# --------------------------------------------------------------------------- open records


@cohort("capa.open")
def capa_open(s: Scope, spec: Spec, params: Mapping[str, str]) -> Select:
    return s.rows(spec.workflow, [s.still_open()], _one(), None)


@cohort("capa.overdue")
def capa_overdue(s: Scope, spec: Spec, params: Mapping[str, str]) -> Select:
    return s.rows(spec.workflow, [s.still_open()],
                  case((Record.due_current < s.as_of, 1), else_=0), None)


@cohort("capa.age")
def capa_age(s: Scope, spec: Spec, params: Mapping[str, str]) -> Select:
    as_of = literal(s.as_of, Record.created_at.type)
    return s.rows(spec.workflow, [s.still_open()], _one(), days_between(Record.created_at, as_of))


@cohort("trn.overdue")
def training_overdue(s: Scope, spec: Spec, params: Mapping[str, str]) -> Select:
    return s.rows(spec.workflow, [s.still_open(), _training_due_passed(s, spec.workflow)],
                  _one(), None)


# --------------------------------------------------------------------------- closed in the period


def _closed_in_period(s: Scope) -> list[ColumnElement[bool]]:
    return [s.closed_done(), s.in_period(Record.closed_at)]


@cohort("capa.closure_days", "dev.closure_days", "trn.days_to_complete")
def closure_days(s: Scope, spec: Spec, params: Mapping[str, str]) -> Select:
    return s.rows(spec.workflow, _closed_in_period(s), _one(),
                  days_between(Record.created_at, Record.closed_at))


@cohort("capa.recurrence")
def capa_recurrence(s: Scope, spec: Spec, params: Mapping[str, str]) -> Select:
    spawned = aliased(RecordLink)
    again = aliased(RecordLink)
    later = aliased(Record)
    source = exists().where(spawned.source_id == Record.id, spawned.kind == "spawned_by")
    recurred = exists().where(
        spawned.source_id == Record.id, spawned.kind == "spawned_by",
        again.target_id == spawned.target_id, again.kind == "recurrence_of",
        later.id == again.source_id, later.created_at > Record.closed_at,
        later.created_at <= s.as_of)
    return s.rows(spec.workflow, [*_closed_in_period(s), source],
                  case((recurred, 1), else_=0), None)


@cohort("capa.extended")
def capa_extended(s: Scope, spec: Spec, params: Mapping[str, str]) -> Select:
    ext = exists().where(DueDateExtension.record_id == Record.id,
                         DueDateExtension.status == ExtensionStatus.APPROVED)
    return s.rows(spec.workflow, _closed_in_period(s), case((ext, 1), else_=0), None)


@cohort("dev.capa_share")
def deviation_capa_share(s: Scope, spec: Spec, params: Mapping[str, str]) -> Select:
    link = exists().where(RecordLink.target_id == Record.id, RecordLink.kind == "spawned_by")
    return s.rows(spec.workflow, _closed_in_period(s), case((link, 1), else_=0), None)


@cohort("cr.void_share")
def change_void_share(s: Scope, spec: Spec, params: Mapping[str, str]) -> Select:
    return s.rows(spec.workflow, [Record.outcome.is_not(None), Record.closed_at <= s.as_of,
                                  s.in_period(Record.closed_at)],
                  case((Record.outcome == VOID, 1), else_=0), None)


@cohort("ar.revoked")
def grants_revoked(s: Scope, spec: Spec, params: Mapping[str, str]) -> Select:
    items = s.revocation_items(spec.workflow)
    value = literal_column(list_count_sql(s.dialect, items, "decision", "revoke"),
                           Integer()) if items else literal(0)
    return s.rows(spec.workflow, _closed_in_period(s), _one(), value)


# --------------------------------------------------------------------------- due dates


def _on_time(s: Scope, workflow: str | None, due: Any) -> Select:
    return s.rows(workflow, [
        due.is_not(None), due >= s.period.start, due < s.period.end,
        ~s.void(),
        # still open and not yet due at the as-of time: undecided, left out
        ~and_(s.still_open(), due >= s.as_of)],
        case((and_(s.closed_done(), Record.closed_at <= due), 1), else_=0),
        days_between(due, Record.closed_at))


@cohort("capa.on_time", "ar.on_time")
def on_time(s: Scope, spec: Spec, params: Mapping[str, str]) -> Select:
    return _on_time(s, spec.workflow, Record.due_current)


@cohort("capa.on_time_original")
def on_time_original(s: Scope, spec: Spec, params: Mapping[str, str]) -> Select:
    return _on_time(s, spec.workflow, Record.due_original)


def _days_late(s: Scope, workflow: str | None, due: Any) -> Select:
    late = Record.closed_at > due
    return s.rows(workflow, [*_closed_in_period(s), due.is_not(None)],
                  case((late, 1), else_=0), case((late, days_between(due, Record.closed_at))))


@cohort("capa.days_late")
def days_late(s: Scope, spec: Spec, params: Mapping[str, str]) -> Select:
    return _days_late(s, spec.workflow, Record.due_current)


@cohort("capa.days_late_original")
def days_late_original(s: Scope, spec: Spec, params: Mapping[str, str]) -> Select:
    return _days_late(s, spec.workflow, Record.due_original)


def _training_due_passed(s: Scope, workflow: str | None) -> ColumnElement[bool]:
    due_field = s.due_date_field(workflow or "")
    if due_field:
        return Record.data[due_field].as_string() < s.as_of.date().isoformat()
    return Record.due_current < s.as_of


@cohort("trn.compliance")
def training_compliance(s: Scope, spec: Spec, params: Mapping[str, str]) -> Select:
    workflow = spec.workflow or ""
    cap = s.training(workflow)
    if cap is None:
        return empty_cohort()
    # an IN over the (few) active accounts, read once, not a scan of users per assignment
    active = trainee_of(cap).in_(select(User.username).where(User.active.is_(True)))
    return s.rows(spec.workflow, [_training_due_passed(s, spec.workflow), ~s.void(), active],
                  case((training_done_clause(s.as_of, [workflow]), 1), else_=0), None)


# --------------------------------------------------------------------------- created in the period


@cohort("dev.created")
def deviations_created(s: Scope, spec: Spec, params: Mapping[str, str]) -> Select:
    conds = [s.in_period(Record.created_at)]
    if params.get("month"):
        conds.append(month_of(Record.created_at) == params["month"])
    if params.get("classification"):
        cls = params["classification"]
        col = Record.data["classification"].as_string()
        conds.append(col.is_(None) if cls == "unclassified" else col == cls)
    return s.rows(spec.workflow, conds, _one(), None)


# --------------------------------------------------------------------------- milestones


def _milestone_days(s: Scope, workflow: str | None, name: str) -> Select:
    ms = s.milestone(workflow or "", name)
    if ms is None:
        return empty_cohort(literal(0.0))
    sub = ms.subquery()
    return select(sub.c.rid, _one().label("hit"),
                  days_between(sub.c.started, sub.c.stopped).label("value")).where(
        sub.c.started.is_not(None), sub.c.stopped >= sub.c.started,
        sub.c.stopped >= s.period.start, sub.c.stopped < s.period.end)


@cohort("dev.triage_days")
def triage_days(s: Scope, spec: Spec, params: Mapping[str, str]) -> Select:
    return _milestone_days(s, spec.workflow, "triage")


@cohort("cr.cycle_days")
def change_cycle_days(s: Scope, spec: Spec, params: Mapping[str, str]) -> Select:
    return _milestone_days(s, spec.workflow, "cycle")


@cohort("cr.approval_days")
def change_approval_days(s: Scope, spec: Spec, params: Mapping[str, str]) -> Select:
    return _milestone_days(s, spec.workflow, "approval")


@cohort("capa.effectiveness")
def capa_effectiveness(s: Scope, spec: Spec, params: Mapping[str, str]) -> Select:
    """One row per effectiveness check decided in the period: a transition out of the
    'effectiveness' milestone's start state that is not into a final state (a cancel is
    no verdict); passed = into the milestone's stop state."""
    return _effectiveness_checks(s, spec, early=False)


@cohort("capa.effectiveness_early")
def capa_effectiveness_early(s: Scope, spec: Spec, params: Mapping[str, str]) -> Select:
    """The checks of ``capa.effectiveness``; hit = the step was taken before it opened (its
    transition event carries ``taken_early``, R-WF-14)."""
    return _effectiveness_checks(s, spec, early=True)


def _effectiveness_checks(s: Scope, spec: Spec, *, early: bool) -> Select:
    workflow = spec.workflow or ""
    ev = AuditEvent
    decided, passed, starts = [], [], set()
    for d in s.definitions(workflow):
        m = d.milestones.get("effectiveness")
        if m is None:
            continue
        starts.add(m.start)
        finals = [n for n, st in d.states.items() if st.final and n != m.stop]
        here = and_(Record.definition_hash == d.content_hash, ev.from_state == m.start)
        decided.append(and_(here, ev.to_state.not_in(finals)) if finals else here)
        passed.append(and_(here, ev.to_state == m.stop))
    if not decided:
        return empty_cohort()
    hit = has_key(ev.changes, "taken_early") if early else or_(*passed)
    return (select(Record.id.label("rid"), case((hit, 1), else_=0).label("hit"),
                   cast(null(), Float()).label("value"))
            .join(ev, ev.record_id == Record.id)
            .where(*s.base(workflow),
                   # ix_audit_events_from_state: only the events leaving those states
                   ev.from_state.in_(sorted(starts)), ev.to_state.is_not(None),
                   s.in_period(ev.at), or_(*decided)))


# --------------------------------------------------------------------------- user accounts


def _people(s: Scope) -> list[ColumnElement[bool]]:
    """Active people (not the system account) with an account by the as-of time."""
    return [User.active.is_(True), User.is_system.is_(False), User.created_at <= s.as_of]


@cohort("sec.totp_enrolled")
def totp_enrolled(s: Scope, spec: Spec, params: Mapping[str, str]) -> Select:
    enrolled = and_(User.totp_secret.is_not(None), User.totp_enabled_at.is_not(None),
                    User.totp_enabled_at <= s.as_of)
    return select(User.id.label("rid"), case((enrolled, 1), else_=0).label("hit"),
                  cast(null(), Float()).label("value")).where(
        *_people(s), s.has_role(tuple(s.totp_policy().totp_required_roles)))


@cohort("ar.uncovered")
def access_uncovered(s: Scope, spec: Spec, params: Mapping[str, str]) -> Select:
    """Listed in the grants of no access review created in the period (not void)."""
    items = s.revocation_items(ACCESS_REVIEW) or "grants"
    listed = lists_user_sql(s.dialect, "rv", items)
    rv = Record.__table__.alias("rv")
    void = and_(func.coalesce(rv.c.outcome, "") == VOID,
                func.coalesce(rv.c.closed_at <= s.as_of, False))
    covered = exists().where(rv.c.workflow_key == ACCESS_REVIEW,
                             rv.c.created_at >= s.period.start,
                             rv.c.created_at < s.period.end,
                             rv.c.created_at <= s.as_of, ~void, expression.text(listed))
    return select(User.id.label("rid"), case((covered, 0), else_=1).label("hit"),
                  cast(null(), Float()).label("value")).where(*_people(s), s.has_role())


# --------------------------------------------------------------------------- system audit chain


@cohort(*SECURITY_ACTIONS)
def security_events(s: Scope, spec: Spec, params: Mapping[str, str]) -> Select:
    """The system chain's events of the metric's action (SECURITY_ACTIONS) in the period."""
    ev = AuditEvent
    return select(ev.id.label("rid"), _one().label("hit"),
                  cast(null(), Float()).label("value")).where(
        ev.record_id.is_(None), ev.action == SECURITY_ACTIONS[spec.key], s.in_period(ev.at))
