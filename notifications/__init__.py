"""Notifications: the outbox rows the engine writes (workflow.models.OutboxMessage), in the
same transaction as their cause, are delivered from here after commit.

- :mod:`notifications.dispatcher`: fan-out to in-app notifications and per-person e-mail,
  retries with exponential backoff, dead letters, daily digests (``qms notifications
  dispatch``; the scheduler runs it every minute);
- :mod:`notifications.job`: the scheduled job ``dispatch_notifications`` (it gets the
  scheduler's context passed in);
- :mod:`notifications.channels`: SMTP (``QMS_SMTP_URL``, STARTTLS or SSL, login);
- :mod:`notifications.render`: Jinja message templates per kind (templates/), each with a
  link to its record (``QMS_BASE_URL``).

Nothing here imports Flask, the web app or the workflow engine: the caller passes in what
opens the units of work.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from workflow.db.models import Notification, OutboxMessage


def pending_count(session: Session) -> int:
    """Messages waiting for delivery (shown by operators' health checks)."""
    return session.execute(
        select(func.count()).select_from(OutboxMessage).where(OutboxMessage.status == "pending")
    ).scalar_one()


def dead_count(session: Session) -> int:
    """Dead-lettered messages (administrators see them in the web UI)."""
    return session.execute(
        select(func.count()).select_from(OutboxMessage).where(OutboxMessage.status == "dead")
    ).scalar_one()


def unread_count(session: Session, user_id: int) -> int:
    """The number on the bell."""
    return session.execute(
        select(func.count()).select_from(Notification).where(
            Notification.user_id == user_id, Notification.read_at.is_(None))
    ).scalar_one()
