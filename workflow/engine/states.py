"""Entering and leaving a state: tasks opened and closed, on-enter actions run, timers set.
Shared by a step (``fire``) and by a signed migration (change_control/migrate.py)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, time
from typing import Any

from workflow import clock
from workflow.db import records
from workflow.db.models import Record, TaskStatus, TimerStatus, User
from workflow.db.uow import connection
from workflow.engine import exclusive
from workflow.engine import statements as st
from workflow.engine.context import Ctx, known_user_id
from workflow.errors import WorkflowError
from workflow.spec.machine import Compiled
from workflow.spec.model import StateSpec, parse_duration


def leave_state(ctx: Ctx, compiled: Compiled, rec: Record, user: User, transition: str) -> None:
    """Close the state's open tasks; cancel its pending timers."""
    session = ctx.session
    connection(session).execute(st.CLOSE_TASKS, {"rid": rec.id, "now": ctx.now, "uid": user.id,
                                     "transition": transition})
    records.open_tasks_read(session, rec)  # what was read with the lock is no longer so
    state = compiled.definition.states[rec.state]
    if any(a.kind == "start_timer" for a in state.on_enter):
        session.execute(st.CANCEL_TIMERS, {"rid": rec.id})


def enter_state(ctx: Ctx, compiled: Compiled, rec: Record, user: User) -> None:
    """Close the record on a final state, run the on-enter actions, open the tasks."""
    d = compiled.definition
    state = d.states[rec.state]
    # exclusive: rules (engine/exclusive.py): the key is locked before the actions, which
    # may move a sibling out (supersede), and checked after them
    exclusive.lock(ctx, d, rec)
    if state.final:
        rec.closed_at = ctx.now
        rec.outcome = state.outcome
    for action in state.on_enter:
        kind = ctx.actions.get(action.kind)
        if kind is None:
            # the schema admits only known kinds; an embedder that removed one fails closed
            raise WorkflowError(f"unknown action {action.kind!r}")
        kind(ctx, compiled, rec, user, action)
    exclusive.check(ctx, d, rec)
    open_tasks(ctx, rec, state)


def open_tasks(ctx: Ctx, rec: Record, state: StateSpec,
               keep: Mapping[str | None, Any] | None = None) -> None:
    """Open the state's tasks (one per owner role, or the initiator's, or the assignee
    field's person). ``keep``: tasks of the same state before a migration, by role, whose
    assignee and due date carry over."""
    if not (state.owners or state.assignee_field):
        return
    due = task_due(ctx, rec, state)
    assignee_id = None
    name = rec.data.get(state.assignee_field) if state.assignee_field else None
    if name:
        assignee_id = known_user_id(ctx.session, name)
        if assignee_id is None and keep is None:
            # the person's id is read by the INSERT itself (one statement, not two)
            connection(ctx.session).execute(st.INSERT_TASK_FOR, [
                {"record_id": rec.id, "state": rec.state, "state_visit": rec.state_visit,
                 "role": None if owner == "initiator" else owner,
                 "known_id": rec.created_by_id if owner == "initiator" else None,
                 "assignee_name": None if owner == "initiator" else name,
                 "status": TaskStatus.OPEN, "opened_at": ctx.now, "due_at": due}
                for owner in state.owners or (None,)])
            return
        if assignee_id is None:
            assignee_id = ctx.user_id(name)
    rows = []
    for owner in state.owners or (None,):
        role, who = (None, rec.created_by_id) if owner == "initiator" else (owner, assignee_id)
        prev = keep.get(role) if keep is not None else None
        rows.append({"record_id": rec.id, "state": rec.state, "state_visit": rec.state_visit,
                     "role": role,
                     "assignee_id": who if who is not None or prev is None else prev.assignee_id,
                     "status": TaskStatus.OPEN, "opened_at": ctx.now,
                     "due_at": prev.due_at if prev is not None else due})
    connection(ctx.session).execute(st.INSERT_TASKS, rows)


def task_due(ctx: Ctx, rec: Record, state: StateSpec) -> datetime | None:
    if state.due_in:
        return ctx.now + state.due_in
    if state.due_field and rec.data.get(state.due_field):
        return end_of(rec.data[state.due_field])
    return rec.due_current


def start_timer(ctx: Ctx, rec: Record, params: Mapping[str, Any],
                keep: datetime | None = None) -> None:
    """A pending timer for ``params['transition']``: at the end of the day a date field
    names, ``keep`` (a migration keeps an unchanged state's time), or after a duration."""
    if params.get("after_field"):
        raw = rec.data.get(params["after_field"])
        if not raw:
            return
        fire_at = start_of(raw) if params.get("at") == "start_of_day" else end_of(raw)
    elif keep is not None:
        fire_at = keep
    else:
        fire_at = ctx.now + parse_duration(params["after"])
    ctx.session.execute(st.INSERT_TIMER, {
        "record_id": rec.id, "state_visit": rec.state_visit,
        "transition": params["transition"], "fire_at": fire_at,
        "status": TimerStatus.PENDING})


def start_of(value: str) -> datetime:
    """A date field's opening: the start of that day (UTC); a datetime is itself."""
    if "T" in value:
        return datetime.fromisoformat(value).astimezone(UTC)
    return datetime.combine(date.fromisoformat(value), time(0), tzinfo=UTC)


def end_of(value: str) -> datetime:
    """A date field's deadline is the end of that day (UTC); a datetime is itself."""
    if "T" in value:
        return datetime.fromisoformat(value).astimezone(UTC)
    return clock.end_of_day(date.fromisoformat(value))
