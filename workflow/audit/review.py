"""What a periodic audit-trail review lists for attestation (R-A11-9-2): the audit events of
critical records in a window, and the security-relevant events of the system chain."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import case, select
from sqlalchemy import func as sqlfunc
from sqlalchemy.orm import Session

from workflow.audit import trail as audit
from workflow.db.models import AuditEvent, Record

#: system audit-trail actions listed for attestation in an audit-trail review (workflow/identity/,
#: workflow/registry.py): the security-relevant events outside any record
SECURITY_ACTIONS = ("login_failed", "signature_failed", "account_locked", "account_unlocked",
                    "password_reset", "role_granted", "role_revoked", "user_created",
                    "user_deactivated", "totp_reset", "definition_published",
                    "api_token_created", "api_token_revoked")


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value is not None else None


def audit_trail_events(session: Session, start: datetime, end: datetime, *,
                       critical: Callable[[str], bool]
                       ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """What an audit-trail review lists for the window [start, end): one row per critical
    record (``critical(definition_hash)``: its definition version has ``risk: high``) with
    audit events in the window, and one row per security action of the system audit trail."""
    def counted(action: str) -> Any:
        return sqlfunc.sum(case((AuditEvent.action == action, 1), else_=0))

    rows = session.execute(
        select(Record.number, Record.workflow_key, Record.definition_hash,
               sqlfunc.count(AuditEvent.id), sqlfunc.min(AuditEvent.at),
               sqlfunc.max(AuditEvent.at), counted("sign"), counted("transition"),
               counted("update"))
        .join(Record, Record.id == AuditEvent.record_id)
        .where(AuditEvent.at >= start, AuditEvent.at < end)
        .group_by(Record.number, Record.workflow_key, Record.definition_hash)
        .order_by(Record.number)).all()
    records = []
    for number, key, dhash, n, first, last, signs, moves, changes in rows:
        if not critical(dhash):
            continue
        records.append({"record": number, "workflow": key, "events": int(n),
                        "first_event": _iso(first), "last_event": _iso(last),
                        "signatures": int(signs or 0), "transitions": int(moves or 0),
                        "changes": int(changes or 0)})
    security = [{"action": action, "events": int(n), "first_event": _iso(first),
                 "last_event": _iso(last)} for action, n, first, last in session.execute(
        select(AuditEvent.action, sqlfunc.count(AuditEvent.id), sqlfunc.min(AuditEvent.at),
               sqlfunc.max(AuditEvent.at))
        .where(AuditEvent.chain == audit.SYSTEM_CHAIN, AuditEvent.at >= start,
               AuditEvent.at < end, AuditEvent.action.in_(SECURITY_ACTIONS))
        .group_by(AuditEvent.action).order_by(AuditEvent.action)).all()]
    return records, security
