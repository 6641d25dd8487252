"""The one writer of outbox rows: a message is queued in the transaction of the change that
caused it and delivered after commit (notifications/), so a rolled-back change sends nothing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from workflow import clock
from workflow.db.models import OutboxMessage
from workflow.spec.model import WorkflowDefinition

# built once: a notify action runs it inside the transition's unit
_INSERT_OUTBOX = insert(OutboxMessage.__table__)
#: the subject column's length
SUBJECT_MAX = 300


def enqueue(session: Session, *, at: datetime, subject: str, body: str = "",
            kind: str = "generic", record_id: int | None = None,
            recipient_role: str | None = None, recipient_user_id: int | None = None,
            channel: str = "all", next_attempt_at: datetime | None = None,
            details: dict[str, Any] | None = None) -> None:
    """Queue one message for a role or a user. ``kind`` picks the message template
    (notifications/templates/KIND.txt); ``channel`` is ``all`` (the dispatcher fans it out to
    in-app and per-person e-mail rows), ``email`` or ``digest``. ``at`` is the time of the
    event the message tells of (messages show it, not the time they were delivered);
    ``details``: what it is about (:func:`details`)."""
    session.execute(_INSERT_OUTBOX, {
        "created_at": at, "record_id": record_id, "recipient_role": recipient_role,
        "recipient_user_id": recipient_user_id, "subject": subject[:SUBJECT_MAX], "body": body,
        "status": "pending", "attempts": 0, "kind": kind, "channel": channel,
        "next_attempt_at": next_attempt_at, "details": details})


def details(d: WorkflowDefinition, state: str, state_visit: int, due: datetime | None, *,
            role: str | None = None) -> dict[str, Any]:
    """What a message about a record's task says besides its text, with the definition's
    labels (never state keys): the workflow, the state, the due date (and whether it is a
    date-only one), the steps expected of the recipient (a role's steps, or for a person the
    steps of whoever holds the task), and the state visit whose task it announces - the
    dispatcher drops the message when that task was closed before delivery."""
    spec = d.states.get(state)
    steps = [t.label for t in d.transitions_from(state)
             if (role in t.roles if role else bool({"assignee", "initiator"} & set(t.roles)))]
    return {
        "workflow": d.title,
        "state": spec.label if spec else state,
        "state_key": state,
        "state_visit": state_visit,
        "due": clock.as_utc(due).isoformat() if due else None,
        "due_date_only": clock.deadline_day(due) is not None if due else False,
        "steps": steps,
        "role": d.roles.get(role, role) if role else None,
    }
