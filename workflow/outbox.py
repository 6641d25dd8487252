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
#: the subject column's length
SUBJECT_MAX = 300


def enqueue(session: Session, *, at: datetime, subject: str, body: str = "",
            kind: str = "generic", record_id: int | None = None,
            recipient_role: str | None = None, recipient_user_id: int | None = None,
            channel: str = "all", next_attempt_at: datetime | None = None) -> None:
    """Queue one message for a role or a user. ``kind`` picks the message template
    (notifications/templates/KIND.txt); ``channel`` is ``all`` (the dispatcher fans it out to
    in-app and per-person e-mail rows), ``email`` or ``digest``."""
    session.execute(_INSERT_OUTBOX, {
        "created_at": at, "record_id": record_id, "recipient_role": recipient_role,
        "recipient_user_id": recipient_user_id, "subject": subject[:SUBJECT_MAX], "body": body,
        "status": "pending", "attempts": 0, "kind": kind, "channel": channel,
        "next_attempt_at": next_attempt_at})
