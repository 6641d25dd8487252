"""Reading a record and locking it for change; writing the changed record row back.

The record a unit changes is not left to the ORM unit of work: it is detached when loaded
(``lock``) or inserted with Core (the engine's create), and the columns that changed are
written by one version-checked UPDATE (WHERE id AND version = the version read) when the
unit flushes or commits. The ORM flush of that one row cost ~0.12 ms a unit, more than any
statement (measured). Like the audit rows, the write is a write-back hook of the unit of
work (workflow/db/uow.py), so no exit path can skip it, and a rollback discards it.

Each written row carries a seal (workflow/db/seals.py), so verify-audit names a row edited
with plain SQL.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, bindparam, select, update
from sqlalchemy.orm import Session

from workflow.db.base import from_row
from workflow.db.engines import is_sqlite
from workflow.db.models import OPEN_TASK, Record, Task, User
from workflow.db.seals import record_seal
from workflow.db.uow import connection, session_key
from workflow.errors import RecordNotFound, StaleRecord

_records = Record.__table__.c

RECORD_BY_ID = select(Record).where(Record.id == bindparam("ref"))
RECORD_BY_NUMBER = select(Record).where(Record.number == bindparam("ref"))
# the locking reads select the table's columns (Core): the record is built from the row and
# kept out of the session, so the ORM's loading would be paid for nothing
_ROW_BY_ID = select(Record.__table__).where(_records.id == bindparam("ref"))
_ROW_BY_NUMBER = select(Record.__table__).where(_records.number == bindparam("ref"))
_LOCK_BY_ID = _ROW_BY_ID.with_for_update()
_LOCK_BY_NUMBER = _ROW_BY_NUMBER.with_for_update()

# the record row with its open tasks and their holders, in one statement (a step checks who
# holds the record's task before anything else): one row per open task, or one without
_tasks = Task.__table__.c
_users = User.__table__.c
_TASK_COLUMNS = (_tasks.id.label("task_id"), _tasks.role.label("task_role"),
                 _tasks.assignee_id.label("task_assignee_id"),
                 _users.username.label("task_username"), _users.full_name.label("task_full_name"))
_creator = User.__table__.alias("creator")
_WITH_TASKS = (Record.__table__.join(_creator, _creator.c.id == _records.created_by_id)
               .outerjoin(Task.__table__, and_(_tasks.record_id == _records.id,
                                               OPEN_TASK))
               .outerjoin(User.__table__, _users.id == _tasks.assignee_id))


def _with_tasks(where: Any) -> Any:
    return (select(Record.__table__, _creator.c.username.label("creator_username"),
                   *_TASK_COLUMNS).select_from(_WITH_TASKS).where(where).order_by(_tasks.id))


_TASKS_BY_ID = _with_tasks(_records.id == bindparam("ref"))
_TASKS_BY_NUMBER = _with_tasks(_records.number == bindparam("ref"))
# PostgreSQL locks the record's row only (the tasks are the outer join's nullable side)
_LOCK_TASKS_BY_ID = _TASKS_BY_ID.with_for_update(of=Record.__table__)
_LOCK_TASKS_BY_NUMBER = _TASKS_BY_NUMBER.with_for_update(of=Record.__table__)
_RECORD_COLUMNS = tuple(c.name for c in Record.__table__.columns)
_OPEN_TASKS = "qms_open_tasks"
#: per unit: user id -> username of the creators of the records it locked (read with them)
CREATORS = "qms_usernames"


@dataclass(frozen=True)
class OpenTask:
    """An open task of a locked record and who holds it (None: unclaimed)."""

    id: int
    role: str | None
    assignee_id: int | None
    username: str | None
    full_name: str | None
# SET gets the columns passed at execution (the ones that changed)
_UPDATE_RECORD = update(Record.__table__).where(
    _records.id == bindparam("_id"), _records.version == bindparam("_stored_version"))
_RECORD_VERSION = select(_records.version).where(_records.id == bindparam("_id"))

_TRACKED = "qms_tracked_records"
# definition_id/definition_hash change only in a signed migration (change_control/migrate.py)
_WRITABLE = ("title", "state", "state_visit", "data", "version", "updated_at", "closed_at",
             "outcome", "due_current", "audit_seq", "audit_head", "seal",
             "definition_id", "definition_hash")


def get(session: Session, ref: int | str) -> Record:
    """The record by id or number (attached to ``session``, not locked)."""
    if isinstance(ref, int):
        rec = session.get(Record, ref)
    else:
        rec = session.execute(RECORD_BY_NUMBER,
                              {"ref": str(ref).strip().upper()}).scalar_one_or_none()
    if rec is None:
        raise RecordNotFound(ref)
    return rec


def lock(session: Session, ref: int | str, *, with_tasks: bool = False) -> Record:
    """Load the record for change. PostgreSQL: SELECT ... FOR UPDATE. SQLite: the unit
    already holds the database write lock (BEGIN IMMEDIATE). ``with_tasks``: its open
    tasks with their holders (:func:`open_tasks_read`) and its creator's username are read
    in the same statement.

    The record comes back outside the session (built from the row, never in it): change
    its attributes freely, the unit writes what changed at flush/commit (``write_back``)."""
    by_id = isinstance(ref, int)
    key = ref if by_id else str(ref).strip().upper()
    sqlite = is_sqlite(session)
    if with_tasks:
        if sqlite:
            stmt = _TASKS_BY_ID if by_id else _TASKS_BY_NUMBER
        else:
            stmt = _LOCK_TASKS_BY_ID if by_id else _LOCK_TASKS_BY_NUMBER
        rows = connection(session).execute(stmt, {"ref": key}).all()
        if not rows:
            raise RecordNotFound(ref)
        first = rows[0]._mapping
        rec = from_row(Record, {c: first[c] for c in _RECORD_COLUMNS})
        session.info.setdefault(CREATORS, {})[rec.created_by_id] = rows[0].creator_username
        session.info.setdefault(_OPEN_TASKS, {})[rec.id] = [
            OpenTask(r.task_id, r.task_role, r.task_assignee_id, r.task_username,
                     r.task_full_name) for r in rows if r.task_id is not None]
    else:
        if sqlite:
            stmt = _ROW_BY_ID if by_id else _ROW_BY_NUMBER
        else:
            stmt = _LOCK_BY_ID if by_id else _LOCK_BY_NUMBER
        row = connection(session).execute(stmt, {"ref": key}).mappings().one_or_none()
        if row is None:
            raise RecordNotFound(ref)
        rec = from_row(Record, row)
    track(session, rec)
    return rec


def open_tasks_read(session: Session, rec: Record) -> list[OpenTask] | None:
    """The open tasks read with ``rec`` by ``lock(..., with_tasks=True)``, once (None: not
    read, or already used - the caller queries them)."""
    return session.info.get(_OPEN_TASKS, {}).pop(rec.id, None)


def track(session: Session, rec: Record) -> None:
    """Write ``rec``'s later changes back at flush/commit; ``rec`` matches its row now."""
    stored = {k: getattr(rec, k) for k in _WRITABLE}
    session.info.setdefault(_TRACKED, []).append((rec, stored))


def tracked(session: Session) -> list[Record]:
    """The records this unit changes (locked or created in it), as they are in memory."""
    return [rec for rec, _ in session.info.get(_TRACKED, ())]


def write_back(session: Session) -> None:
    """The write-back hook: one version-checked UPDATE per changed record, sealed."""
    for rec, stored in session.info.get(_TRACKED, ()):
        changed = {k: v for k in _WRITABLE if (v := getattr(rec, k)) != stored[k]}
        if not changed:
            continue
        rec.seal = changed["seal"] = record_seal(session_key(session), rec)
        conn = connection(session)
        done = conn.execute(_UPDATE_RECORD, {**changed, "_id": rec.id,
                                             "_stored_version": stored["version"]})
        if done.rowcount != 1:
            # cannot happen under the row lock; refuse rather than overwrite
            actual = conn.execute(_RECORD_VERSION, {"_id": rec.id}).scalar_one_or_none()
            raise StaleRecord(rec.number, stored["version"], actual or 0)
        stored.update(changed)


def discard(session: Session) -> None:
    """The rollback hook: forget the tracked records."""
    session.info.pop(_TRACKED, None)
