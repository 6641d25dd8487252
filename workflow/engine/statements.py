"""The statements a unit of work runs, built once.

SQLAlchemy caches the compiled SQL, but building a statement and computing its cache key on
every call cost more than running it (measured 40-90 us a statement, ~10 statements a
transition). Where no ORM object is needed they select Core table columns, which also skips
the ORM's result processing. (The record's own read, lock and write-back statements live in
workflow/db/records.py.)
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import CursorResult, Integer, Result, bindparam, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from workflow.db.models import (
    OPEN_TASK,
    AuditEvent,
    Record,
    RecordCounter,
    Signature,
    Task,
    TaskStatus,
    Timer,
    TimerStatus,
    User,
)


def inserted_id(result: Result[Any]) -> int:
    """The primary key a one-row Core INSERT generated (Session.execute types its result as
    a plain Result, and ``inserted_primary_key`` as optional; neither is so here)."""
    key = cast(CursorResult[Any], result).inserted_primary_key
    assert key is not None
    new_id: int = key[0]
    return new_id


users = User.__table__.c
records = Record.__table__.c
tasks = Task.__table__.c
timers = Timer.__table__.c
signatures = Signature.__table__.c
events = AuditEvent.__table__.c
counters = RecordCounter.__table__.c

USER_ID = select(users.id).where(users.username == bindparam("username"))
USERNAME = select(users.username).where(users.id == bindparam("user_id"))
ACTIVE_USERNAMES = select(users.username, users.id).where(
    users.username.in_(bindparam("names", expanding=True)),
    users.active.is_(True), users.is_system.is_(False))
RECORD_WORKFLOWS = select(records.number, records.workflow_key).where(
    records.number.in_(bindparam("numbers", expanding=True)))
HAS_OPEN_TASK = select(tasks.id).where(
    tasks.record_id == bindparam("rid"), tasks.assignee_id == bindparam("uid"),
    OPEN_TASK).limit(1)
DID_STEP = select(events.transition).where(
    events.record_id == bindparam("rid"), events.actor_id == bindparam("uid"),
    events.transition.in_(bindparam("transitions", expanding=True)),
    events.action.in_(("transition", "sign"))).limit(1)
OPEN_TASK_HOLDERS = select(tasks.id, tasks.role, tasks.assignee_id, users.username,
                           users.full_name).select_from(Task.__table__).outerjoin(
    User.__table__, users.id == tasks.assignee_id).where(
    tasks.record_id == bindparam("rid"), OPEN_TASK).order_by(tasks.id)
EARLIER_SIGNATURES = select(signatures.signer_id, signatures.signer_role).where(
    signatures.record_id == bindparam("rid"), signatures.transition == bindparam("transition"),
    signatures.state_visit == bindparam("visit"))
INSERT_SIGNATURE = insert(Signature.__table__)

INSERT_TASKS = insert(Task.__table__)
# a task for the person a field names, whose id this unit has not looked up: the id is
# read in the INSERT itself (one statement, not a look-up and an insert); no such user
# leaves it unassigned, as the look-up's None did
INSERT_TASK_FOR = insert(Task.__table__).values(assignee_id=func.coalesce(
    bindparam("known_id", type_=Integer),
    select(users.id).where(users.username == bindparam("assignee_name")).scalar_subquery()))
INSERT_TIMER = insert(Timer.__table__)
CLOSE_TASKS = update(Task.__table__).where(
    tasks.record_id == bindparam("rid"), OPEN_TASK,
).values(status=TaskStatus.DONE, closed_at=bindparam("now"), closed_by_id=bindparam("uid"),
         closed_by_transition=bindparam("transition"))
CLOSE_ROLE_TASK = update(Task.__table__).where(
    tasks.record_id == bindparam("rid"), OPEN_TASK,
    tasks.role == bindparam("b_role"),
).values(status=TaskStatus.DONE, closed_at=bindparam("now"), closed_by_id=bindparam("uid"),
         closed_by_transition=bindparam("transition"))
CANCEL_TIMERS = update(Timer.__table__).where(
    timers.record_id == bindparam("rid"), timers.status == TimerStatus.PENDING,
).values(status=TimerStatus.CANCELLED)
COUNTER_ROW = {
    name: upsert(RecordCounter.__table__)
    .values(prefix=bindparam("p"), year=bindparam("y"), last_value=0)
    .on_conflict_do_nothing(index_elements=["prefix", "year"])
    for name, upsert in (("postgresql", postgresql.insert), ("sqlite", sqlite.insert))
}
BUMP_COUNTER = (
    update(RecordCounter.__table__)
    .where(counters.prefix == bindparam("p"), counters.year == bindparam("y"))
    .values(last_value=counters.last_value + 1)
    .returning(counters.last_value)
)
INSERT_RECORD = insert(Record.__table__)
