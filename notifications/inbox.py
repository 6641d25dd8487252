"""A person's in-app notifications: the list and marking them read. Reads take the caller's
session; marking read is a command that opens its own unit (``uow``: anything with
``unit()``, e.g. the workflow Engine)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import CursorResult, select, update
from sqlalchemy.orm import Session

from workflow import clock
from workflow.db.models import Notification

from .dispatcher import UnitOfWork


def notifications_of(session: Session, user_id: int, *, unread_only: bool = False,
                     limit: int = 200) -> list[Notification]:
    """The person's notifications, newest first."""
    q = select(Notification).where(Notification.user_id == user_id)
    if unread_only:
        q = q.where(Notification.read_at.is_(None))
    return list(session.execute(q.order_by(Notification.id.desc()).limit(limit)).scalars())


def mark_read(uow: UnitOfWork, user_id: int, ids: Iterable[int] | None = None) -> int | None:
    """Mark the person's unread notifications ``ids`` (None: all of them) as read; returns
    how many changed, or None when one id named no notification at all (a 404). Only the
    person's own notifications are touched (R-P11-10d-2)."""
    with uow.unit() as s:
        q = update(Notification).where(Notification.user_id == user_id,
                                       Notification.read_at.is_(None))
        wanted = None if ids is None else sorted(set(ids))
        if wanted is not None:
            q = q.where(Notification.id.in_(wanted))
        result: CursorResult[Any] = s.execute(  # type: ignore[assignment]  # an UPDATE's
            q.values(read_at=clock.now()))
        done = result.rowcount
        if wanted is not None and done < len(wanted):
            found = set(s.execute(select(Notification.id).where(
                Notification.id.in_(wanted))).scalars())
            if found != set(wanted):
                return None
        return done
