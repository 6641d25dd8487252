"""The task inbox: what a person should work on, and claiming, releasing and delegating.

Inbox filters run on indexed task columns (role, assignee, status, due date) joined to the
record row, with keyset pagination on (due date, task id): no per-task queries, no OFFSET.
Claim, release and delegate change who holds a task; each runs in one unit of work with
the record row locked and an audit event on the record's chain.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, func, literal, or_, select
from sqlalchemy.orm import Session

from workflow import clock, rules
from workflow.audit import trail as audit
from workflow.db import records
from workflow.db.models import Record, Task, TaskStatus, User
from workflow.engine import access
from workflow.errors import NotAuthorized, TaskNotFound, WorkflowError
from workflow.identity import users as identity

if TYPE_CHECKING:
    from workflow.engine.core import Engine

FAR_FUTURE = datetime(9999, 12, 31).astimezone()


@dataclass(frozen=True)
class InboxRow:
    task_id: int
    record_id: int
    number: str
    title: str
    workflow: str
    definition_hash: str
    state: str
    role: str | None
    assignee: str | None
    due_at: datetime | None
    opened_at: datetime
    mine: bool


@dataclass(frozen=True)
class InboxPage:
    rows: list[InboxRow]
    next_cursor: str | None
    counts: dict[str, int]
    total: int


def _visible_tasks(user: User, roles: set[str]) -> Any:
    mine = Task.assignee_id == user.id
    claimable = and_(Task.assignee_id.is_(None), Task.role.in_(sorted(roles) or [""]))
    return and_(Task.status == TaskStatus.OPEN, or_(mine, claimable))


def inbox(
    session: Session,
    user: User,
    *,
    workflow: str | None = None,
    state: str | None = None,
    overdue: bool = False,
    search: str | None = None,
    scope: str = "all",  # all | mine | claimable
    cursor: str | None = None,
    limit: int = 25,
) -> InboxPage:
    roles = identity.roles_of(session, user)
    cond = [_visible_tasks(user, roles)]
    if scope == "mine":
        cond.append(Task.assignee_id == user.id)
    elif scope == "claimable":
        cond.append(Task.assignee_id.is_(None))
    if workflow:
        cond.append(Record.workflow_key == workflow)
    if state:
        cond.append(Record.state == state)
    if overdue:
        cond.append(Task.due_at < clock.now())
    if search:
        like = f"%{search.strip().lower()}%"
        cond.append(or_(func.lower(Record.number).like(like), func.lower(Record.title).like(like)))
    # undated tasks sort last: coalesce to a far-future date for ordering and the cursor
    due_key = func.coalesce(Task.due_at, literal(FAR_FUTURE))
    base = select(Task, Record, User.username).join(Record, Record.id == Task.record_id) \
        .outerjoin(User, User.id == Task.assignee_id).where(*cond)
    counts = {key: n for key, n in session.execute(
        select(Record.workflow_key, func.count()).select_from(Task)
        .join(Record, Record.id == Task.record_id).where(*cond)
        .group_by(Record.workflow_key))}
    q = base
    if cursor:
        try:
            due_s, tid_s = cursor.split("|")
            due = datetime.fromisoformat(due_s)
            tid = int(tid_s)
        except ValueError:
            raise WorkflowError("The page link is not valid; start again from the first page.") \
                from None
        q = q.where(or_(due_key > due, and_(due_key == due, Task.id > tid)))
    rows = session.execute(q.order_by(due_key, Task.id).limit(limit + 1)).all()
    out = [InboxRow(t.id, r.id, r.number, r.title, r.workflow_key, r.definition_hash, r.state,
                    t.role, who,
                    t.due_at, t.opened_at, t.assignee_id == user.id) for t, r, who in rows[:limit]]
    nxt = None
    if len(rows) > limit:
        last = rows[limit - 1][0]
        nxt = f"{(last.due_at or FAR_FUTURE).isoformat()}|{last.id}"
    return InboxPage(out, nxt, counts, sum(counts.values()))


def visible_task(session: Session, engine: Engine, task_id: int, viewer: str | User) -> Task:
    """The task, if its record is visible to ``viewer`` (rules.can_see); else TaskNotFound,
    whether it does not exist or is hidden (no probing of records through task ids). Reads
    only: the inbox pages call it on their read session, the commands below in their unit."""
    user = viewer if isinstance(viewer, User) else identity.get_user(session, viewer)
    task = session.get(Task, task_id)
    if task is None:
        raise TaskNotFound(task_id)
    rec = session.get(Record, task.record_id)
    assert rec is not None  # tasks.record_id is a foreign key
    d = engine.registry.by_hash(session, rec.definition_hash).definition
    if not rules.can_see(session, d, rec, user, identity.roles_of(session, user)):
        raise TaskNotFound(task_id)
    return task


def _task_for_change(session: Session, engine: Engine, task_id: int, user: User
                     ) -> tuple[Task, Record]:
    task = visible_task(session, engine, task_id, user)
    rec = records.lock(session, task.record_id)
    session.refresh(task)
    if task.status != TaskStatus.OPEN:
        raise WorkflowError(f"This task on {rec.number} is already {task.status.value}.")
    return task, rec


def claim(engine: Engine, task_id: int, actor: str) -> str:
    """Take a task open to one of your roles; returns the record number."""
    with engine.unit() as session:
        user = identity.get_user(session, actor)
        task, rec = _task_for_change(session, engine, task_id, user)
        if task.assignee_id == user.id:
            raise WorkflowError(f"You already hold this task on {rec.number}.")
        if task.assignee_id is not None:
            raise WorkflowError(f"Someone else already holds this task on {rec.number}.")
        if task.role not in identity.roles_of(session, user):
            raise NotAuthorized(f"This task is for the role {task.role!r}, which you do not hold.")
        task.assignee_id = user.id
        _audit(session, rec, user, "task_claimed", {"task": task.id, "assignee": [None, user.username]})
        return rec.number


def release(engine: Engine, task_id: int, actor: str, reason: str = "") -> str:
    """Give a claimed task back to its role."""
    with engine.unit() as session:
        user = identity.get_user(session, actor)
        task, rec = _task_for_change(session, engine, task_id, user)
        if task.assignee_id != user.id:
            raise NotAuthorized("Only the person holding a task can release it.")
        if task.role is None:
            raise WorkflowError("This task is assigned by the record itself and cannot be "
                                "released; delegate it instead.")
        task.assignee_id = None
        _audit(session, rec, user, "task_released",
               {"task": task.id, "assignee": [user.username, None]}, reason)
        return rec.number


def delegate(engine: Engine, task_id: int, actor: str, to: str, reason: str) -> str:
    """Hand a task you hold to a colleague who holds its role; a reason is required."""
    if not reason.strip():
        raise WorkflowError("A reason is required to delegate a task.")
    with engine.unit() as session:
        user = identity.get_user(session, actor)
        target = identity.get_user(session, to)
        task, rec = _task_for_change(session, engine, task_id, user)
        if task.assignee_id != user.id:
            raise NotAuthorized("Only the person holding a task can delegate it.")
        if target.id == user.id:
            raise WorkflowError("Choose someone else to delegate to.")
        why = _cannot_take(session, engine, rec, task, target)
        if why:
            raise WorkflowError(why)
        task.assignee_id = target.id
        _audit(session, rec, user, "task_delegated",
               {"task": task.id, "assignee": [user.username, target.username]}, reason)
        return rec.number


def _cannot_take(session: Session, engine: Engine, rec: Record, task: Task, person: User
                 ) -> str | None:
    d = engine.registry.by_hash(session, rec.definition_hash).definition
    return access.could_take_task(engine.context(session), d, rec, task.role, person)


def delegate_candidates(session: Session, engine: Engine, task_id: int, viewer: str
                        ) -> list[tuple[str, str]]:
    """(username, printed name) of the people ``viewer`` may hand the task to: active
    people who could take it (``engine.access.could_take_task``, the rule the delegate
    command applies), the viewer excluded. Reads only."""
    user = identity.get_user(session, viewer)
    task = visible_task(session, engine, task_id, user)
    rec = session.get(Record, task.record_id)
    assert rec is not None
    people = session.execute(select(User).where(
        User.active.is_(True), User.is_system.is_(False), User.id != user.id)
        .order_by(User.full_name)).scalars()
    return [(p.username, p.full_name) for p in people
            if _cannot_take(session, engine, rec, task, p) is None]


def _audit(session: Session, rec: Record, user: User, action: str, changes: dict[str, Any],
           reason: str | None = None) -> None:
    # who holds a task is not record content: the version stays, so nobody editing the
    # record is told it changed; the event still joins the record's chain
    audit.record_event(session, rec, at=clock.now(), actor=user, action=action,
                       changes={"task": changes}, reason=reason or None)
