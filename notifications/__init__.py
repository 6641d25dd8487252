"""Notifications: the outbox rows the engine writes (workflow.models.OutboxMessage) are
delivered from here after commit.

Delivery (SMTP with retry and dead-letter, in-app messages) is the scheduler and
notifications issue and is not implemented yet: today the engine only *writes* outbox rows,
in the same transaction as their cause, so nothing is lost once delivery exists.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from workflow.models import OutboxMessage


def pending_count(session: Session) -> int:
    """Messages waiting for delivery (shown by operators' health checks)."""
    return session.execute(
        select(func.count()).select_from(OutboxMessage).where(OutboxMessage.status == "pending")
    ).scalar_one()
