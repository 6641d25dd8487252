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

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from workflow.db.engines import is_sqlite
from workflow.db.models import Record
from workflow.db.seals import record_seal
from workflow.db.uow import session_key
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


def lock(session: Session, ref: int | str) -> Record:
    """Load the record for change. PostgreSQL: SELECT ... FOR UPDATE. SQLite: the unit
    already holds the database write lock (BEGIN IMMEDIATE).

    The record comes back outside the session (built from the row, never in it): change
    its attributes freely, the unit writes what changed at flush/commit (``write_back``)."""
    by_id = isinstance(ref, int)
    if is_sqlite(session):
        stmt = _ROW_BY_ID if by_id else _ROW_BY_NUMBER
    else:
        stmt = _LOCK_BY_ID if by_id else _LOCK_BY_NUMBER
    key = ref if by_id else str(ref).strip().upper()
    row = session.execute(stmt, {"ref": key}).mappings().one_or_none()
    if row is None:
        raise RecordNotFound(ref)
    rec = Record(**row)
    track(session, rec)
    return rec


def track(session: Session, rec: Record) -> None:
    """Write ``rec``'s later changes back at flush/commit; ``rec`` matches its row now."""
    stored = {k: getattr(rec, k) for k in _WRITABLE}
    session.info.setdefault(_TRACKED, []).append((rec, stored))


def write_back(session: Session) -> None:
    """The write-back hook: one version-checked UPDATE per changed record, sealed."""
    for rec, stored in session.info.get(_TRACKED, ()):
        changed = {k: v for k in _WRITABLE if (v := getattr(rec, k)) != stored[k]}
        if not changed:
            continue
        rec.seal = changed["seal"] = record_seal(session_key(session), rec)
        conn = session.connection()
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
