"""The task inbox: what a person should work on, and claiming, releasing and delegating.

The inbox reads the user's work through partial indexes of the open tasks (one for tasks
assigned to someone, one for unassigned tasks by role), branch by branch in due order, with
keyset pagination on (due date, task id) and capped counts: no per-task queries, no OFFSET,
no scan of the site's open tasks.
Claim, release and delegate change who holds a task; each runs in one unit of work with
the record row locked and an audit event on the record's chain.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, literal, or_, select, tuple_, union_all
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
    capped: bool = False  # a count reached tasks.COUNT_CAP: the numbers are lower bounds


#: per-branch cap of the inbox counts: above it a branch's count reads "at least" (no inbox
#: page counts hundreds of thousands of claimable tasks on every request)
COUNT_CAP = 1000


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
    """One page of the user's inbox (rules.in_inbox) in due order, undated tasks last.

    Each branch of rules.inbox_branches ("mine", one per claimable role) is read in two
    parts, dated tasks in (due, id) order and undated ones in id order, each walking a
    partial index and stopping after ``limit + 1`` rows; the page is the first of their
    union. The per-workflow counts read at most COUNT_CAP + 1 tasks a branch
    (``InboxPage.capped`` says a count is a lower bound)."""
    roles = identity.roles_of(session, user)
    branches = rules.inbox_branches(user, roles)
    if scope == "mine":
        branches = branches[:1]
    elif scope == "claimable":
        branches = branches[1:]
    rec_cond = []
    if workflow:
        rec_cond.append(Record.workflow_key == workflow)
    if state:
        rec_cond.append(Record.state == state)
    if search:
        like = f"%{search.strip().lower()}%"
        rec_cond.append(or_(func.lower(Record.number).like(like),
                            func.lower(Record.title).like(like)))
    task_cond = [Task.due_at < clock.now()] if overdue else []
    due, tid = _cursor(cursor) if cursor else (None, None)

    def part(cond: Any, *extra: Any) -> Any:
        return select(Task.id).join(Record, Record.id == Task.record_id) \
            .where(cond, *task_cond, *rec_cond, *extra)

    parts = []
    for _name, cond in branches:
        if due is None or due < FAR_FUTURE:
            after = [tuple_(Task.due_at, Task.id) > tuple_(literal(due, Task.due_at.type),
                                                          literal(tid))] if due is not None else []
            parts.append(part(cond, Task.due_at.is_not(None), *after)
                         .order_by(Task.due_at, Task.id).limit(limit + 1))
        if not overdue:
            after = [Task.id > tid] if due == FAR_FUTURE else []
            parts.append(part(cond, Task.due_at.is_(None), *after)
                         .order_by(Task.id).limit(limit + 1))
    rows: list[Any] = []
    if parts:
        subs = [p.subquery() for p in parts]
        picked = union_all(*[select(sq.c.id) for sq in subs]).subquery()
        due_key = func.coalesce(Task.due_at, literal(FAR_FUTURE))
        rows = list(session.execute(
            select(Task, Record, User.username).join(Record, Record.id == Task.record_id)
            .outerjoin(User, User.id == Task.assignee_id)
            .where(Task.id.in_(select(picked.c.id)))
            .order_by(due_key, Task.id).limit(limit + 1)).all())
    counts, capped = _counts(session, branches, task_cond, rec_cond)
    out = [InboxRow(t.id, r.id, r.number, r.title, r.workflow_key, r.definition_hash, r.state,
                    t.role, who,
                    t.due_at, t.opened_at, t.assignee_id == user.id) for t, r, who in rows[:limit]]
    nxt = None
    if len(rows) > limit:
        last = rows[limit - 1][0]
        nxt = f"{(last.due_at or FAR_FUTURE).isoformat()}|{last.id}"
    return InboxPage(out, nxt, counts, sum(counts.values()), capped)


def _cursor(cursor: str) -> tuple[datetime, int]:
    try:
        due_s, tid_s = cursor.split("|")
        due = datetime.fromisoformat(due_s)
        if due.tzinfo is None:
            raise ValueError(due_s)
        return due, int(tid_s)
    except ValueError:
        raise WorkflowError("The page link is not valid; start again from the first page.") \
            from None


def _counts(session: Session, branches: list[tuple[str, Any]], task_cond: list[Any],
            rec_cond: list[Any]) -> tuple[dict[str, int], bool]:
    """Tasks per workflow, each branch read up to COUNT_CAP + 1 rows (one statement)."""
    if not branches:
        return {}, False
    def capped_part(i: int, cond: Any) -> Any:
        q = select(literal(i).label("part"), Task.record_id.label("rid")) \
            .where(cond, *task_cond)
        if rec_cond:
            q = q.join(Record, Record.id == Task.record_id).where(*rec_cond)
        # at most COUNT_CAP + 1 tasks of the branch, in its index order: without a filter on
        # the record this is a walk of the branch's partial index alone (records are joined
        # afterwards, for at most that many rows), so no planner guess makes it a big scan
        return q.order_by(Task.due_at, Task.id).limit(COUNT_CAP + 1).subquery()

    subs = [capped_part(i, cond) for i, (_name, cond) in enumerate(branches)]
    picked = union_all(*[select(sq.c.part, sq.c.rid) for sq in subs]).subquery()
    # each picked task's workflow by primary key (a scalar subquery: never a scan of records
    # for a hash join, whatever the planner guesses)
    wf = select(Record.workflow_key).where(Record.id == picked.c.rid).scalar_subquery()
    both = select(picked.c.part, wf.label("wf")).subquery()
    per_part: dict[int, int] = {}
    counts: dict[str, int] = {}
    for part, wf, n in session.execute(select(both.c.part, both.c.wf, func.count())
                                       .group_by(both.c.part, both.c.wf)):
        per_part[part] = per_part.get(part, 0) + n
        counts[wf] = counts.get(wf, 0) + n
    capped = any(n > COUNT_CAP for n in per_part.values())
    return dict(sorted(counts.items())), capped


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
