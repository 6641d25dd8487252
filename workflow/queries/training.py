"""A person's own training: the records of every workflow that declares the ``training``
capability (``rules.training_workflows``) in which they are the trainee, as "My training"
lists them: open, overdue and completed. The engine never names the training workflow; the
capability says which field holds the trainee and which the due date.

A training is *overdue* when it is still open and its due date has passed (the end of the due
day, UTC: ``clock.end_of_day``) - whatever state the workflow moved it to and whoever holds
its task then (the shipped workflow hands an overdue training to the training coordinator,
yet the trainee still owes it: the inbox lists it for them through :func:`overdue_unheld`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import and_, exists, not_, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from workflow import clock, rules
from workflow.db.models import (
    OPEN_TASK,
    DefinitionVersion,
    Record,
    RecordPerson,
    Task,
    User,
)
from workflow.registry import Registry
from workflow.spec.model import TrainingCapability

#: how many completed trainings the list shows (newest first)
COMPLETED_SHOWN = 100


@dataclass(frozen=True)
class TrainingRow:
    number: str
    title: str
    workflow: str
    document: str
    version: str | None
    due: date | None
    state: str
    state_label: str
    #: open | overdue | completed | cancelled
    status: str
    closed_at: datetime | None
    #: the person holds an open task on it (it is in their task list anyway)
    task_open: bool


@dataclass(frozen=True)
class MyTraining:
    open: list[TrainingRow]
    overdue: list[TrainingRow]
    completed: list[TrainingRow]


def _due(rec: Record, cap: TrainingCapability) -> date | None:
    raw = rec.data.get(cap.due) if cap.due else None
    if raw:
        try:
            return date.fromisoformat(str(raw)[:10])
        except ValueError:
            return None
    return clock.deadline_day(rec.due_current) or (
        clock.as_utc(rec.due_current).date() if rec.due_current else None)


def _status(rec: Record, due: date | None, now: datetime) -> str:
    if rec.closed_at is not None:
        return "completed" if rec.outcome == rules.DONE else "cancelled"
    if due is not None and clock.end_of_day(due) <= now:
        return "overdue"
    return "open"


def _rows(session: Session, registry: Registry, user: User, roles: set[str], now: datetime,
          *, open_only: bool) -> list[TrainingRow]:
    published = [registry.by_hash(session, h).definition
                 for h in session.execute(select(DefinitionVersion.content_hash)).scalars()]
    workflows = rules.training_workflows(published)
    if not workflows:
        return []
    def scope(key: str) -> list[ColumnElement[bool]]:
        if not open_only:
            return [Record.workflow_key == key]
        # open ones: the workflow's non-final states (every published version's), so the
        # (workflow_key, state) index skips the closed trainings - most of them - before
        # any JSON is read (the inbox asks this on every request)
        states = sorted({name for d in published if d.key == key
                         for name, st in d.states.items() if not st.final})
        cond = [Record.workflow_key == key, Record.state.in_(states)]
        cap = workflows[key]
        if cap.due:
            # overdue: the end of the due day has passed, i.e. the due date (ISO text, which
            # sorts like the date) is before today
            cond.append(Record.data[cap.due].as_string() < now.date().isoformat())
        return cond

    # the user's training records are found through the people index (record_people, kept
    # by the database with every record write): the ids come from the user's own rows in
    # ix_record_people_username, never from every training record's JSON. An IN list, not
    # a join: without statistics (SQLite is never ANALYZEd) SQLite put the join's records
    # side first and walked every open training (1.8 s at 100k records; 0.9 ms this way)
    people = RecordPerson.__table__.c
    mine = [and_(Record.id.in_(select(people.record_id).where(
        people.username == user.username, people.field == cap.trainee)), *scope(key))
        for key, cap in workflows.items()]
    held = exists().where(Task.record_id == Record.id, Task.assignee_id == user.id,
                          OPEN_TASK)
    q = select(Record, held).where(or_(*mine), rules.visible_clause(user, roles, published))
    if open_only:
        q = q.where(Record.closed_at.is_(None), not_(held))
    out = []
    for rec, task_open in session.execute(q.order_by(Record.id.desc())).all():
        d = registry.by_hash(session, rec.definition_hash).definition
        cap = workflows[rec.workflow_key]
        due = _due(rec, cap)
        state = d.states.get(rec.state)
        out.append(TrainingRow(
            rec.number, rec.title, rec.workflow_key, str(rec.data.get(cap.document) or ""),
            str(rec.data.get(cap.version) or "") or None if cap.version else None, due,
            rec.state, state.label if state else rec.state, _status(rec, due, now),
            rec.closed_at, bool(task_open)))
    return out


def my_training(session: Session, registry: Registry, user: User, roles: set[str], *,
                now: datetime | None = None) -> MyTraining:
    """The user's trainings (they are the trainee), visible to them by the one visibility
    rule: open ones by due date, overdue ones by due date, completed ones newest first
    (at most :data:`COMPLETED_SHOWN`). Cancelled assignments are not listed."""
    now = now or clock.now()
    rows = _rows(session, registry, user, roles, now, open_only=False)
    by_due = sorted(rows, key=lambda r: (r.due is None, r.due or date.max, r.number))
    done = sorted((r for r in rows if r.status == "completed"),
                  key=lambda r: r.closed_at or now, reverse=True)
    return MyTraining(open=[r for r in by_due if r.status == "open"],
                      overdue=[r for r in by_due if r.status == "overdue"],
                      completed=done[:COMPLETED_SHOWN])


def overdue_unheld(session: Session, registry: Registry, user: User, roles: set[str], *,
                   now: datetime | None = None) -> list[TrainingRow]:
    """The user's overdue trainings that are not in their task list (the workflow handed the
    task to someone else, e.g. the training coordinator): the inbox shows them, because the
    trainee still has to complete them."""
    now = now or clock.now()
    rows = _rows(session, registry, user, roles, now, open_only=True)
    return sorted((r for r in rows if r.status == "overdue"),
                  key=lambda r: (r.due or date.max, r.number))
