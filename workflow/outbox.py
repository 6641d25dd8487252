"""The one writer of outbox rows: a message is queued in the transaction of the change that
caused it and delivered after commit (notifications/), so a rolled-back change sends nothing.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import insert
from sqlalchemy.orm import Session

from workflow.db.models import OutboxMessage

# built once: a notify action runs it inside the transition's unit
_INSERT_OUTBOX = insert(OutboxMessage.__table__)


def enqueue(session: Session, *, at: datetime, subject: str, body: str, kind: str = "generic",
            record_id: int | None = None, recipient_role: str | None = None,
            recipient_user_id: int | None = None) -> None:
    """Queue one message for a role or a user. ``kind`` picks the message template
    (notifications/templates/KIND.txt)."""
    session.execute(_INSERT_OUTBOX, {
        "created_at": at, "record_id": record_id, "recipient_role": recipient_role,
        "recipient_user_id": recipient_user_id, "subject": subject, "body": body,
        "status": "pending", "attempts": 0, "kind": kind})
