"""The system-wide audit trail as a read model: the filtered list QA and administrators
search (newest first), and the actions to filter by. Takes the caller's read session."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from workflow.db.models import AuditEvent, Record


@dataclass(frozen=True)
class AuditFilter:
    """What the audit page filters by; empty values filter nothing."""

    user: str = ""  # part of the actor's printed name
    record: str = ""  # a record number
    action: str = ""
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive
    before_id: int | None = None  # the page cursor: events older than this id


def _query(f: AuditFilter) -> Select[AuditEvent, str]:
    q = select(AuditEvent, Record.number).outerjoin(Record, Record.id == AuditEvent.record_id)
    if f.user:
        q = q.where(AuditEvent.actor_name.ilike(f"%{f.user[:100]}%"))
    if f.record:
        q = q.where(Record.number == f.record.strip().upper())
    if f.action:
        q = q.where(AuditEvent.action == f.action)
    if f.since:
        q = q.where(AuditEvent.at >= f.since)
    if f.until:
        q = q.where(AuditEvent.at < f.until)
    if f.before_id:
        q = q.where(AuditEvent.id < f.before_id)
    return q.order_by(AuditEvent.id.desc())


def search(session: Session, f: AuditFilter, limit: int | None = None
           ) -> list[tuple[AuditEvent, str | None]]:
    """(event, its record's number) matching ``f``, newest first; all of them without
    ``limit``."""
    q = _query(f)
    if limit is not None:
        q = q.limit(limit)
    return [(row[0], row[1]) for row in session.execute(q)]


def actions(session: Session) -> list[str]:
    """Every action name in the trail, sorted."""
    return list(session.execute(select(AuditEvent.action).distinct()
                                .order_by(AuditEvent.action)).scalars())
