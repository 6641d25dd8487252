"""The periodic audit-trail review (R-A11-9-2): one signed review for QA per period, listing
the audit events of critical records and the security events since the last review."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import case, or_, select
from sqlalchemy import func as sqlfunc
from sqlalchemy.orm import Session

from workflow.audit import trail as audit
from workflow.db.models import AuditEvent, Record
from workflow.errors import WorkflowError
from workflow.scheduling.context import JobContext
from workflow.scheduling.schedules import period_start

# rule: moves to workflow/rules.py
#: system audit-trail actions listed for attestation in an audit-trail review (workflow/auth.py,
#: identity.py, registry.py): the security-relevant events outside any record
SECURITY_ACTIONS = ("login_failed", "signature_failed", "account_locked", "account_unlocked",
                    "password_reset", "role_granted", "role_revoked", "user_created",
                    "user_deactivated", "totp_reset", "definition_published",
                    "api_token_created", "api_token_revoked")


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value is not None else None


# moves to workflow/audit/
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


def audit_trail_review(ctx: JobContext) -> dict[str, Any]:
    """Open one signed audit-trail review for QA per period (R-A11-9-2), listing the audit
    events of critical records since the last review for attestation."""
    if ctx.schedule.period is None:
        raise WorkflowError("audit_trail_review needs a cron and a period")
    period = ctx.schedule.period

    def work(session: Session) -> str | None:
        end = period_start(period, ctx.now)
        # since the last review (open or done; a cancelled one reviewed nothing)
        ends = [datetime.fromisoformat(d["window_to"]) for d, in session.execute(
            select(Record.data).where(Record.workflow_key == "audit_trail_review",
                                      or_(Record.outcome.is_(None), Record.outcome == "done")))
            if d.get("window_to")]
        start = max(ends) if ends else period_start(period, end - timedelta(microseconds=1))
        if start >= end:
            return None

        def critical(definition_hash: str) -> bool:
            return ctx.engine.registry.by_hash(session, definition_hash).definition.risk == \
                "high"

        records, security = audit_trail_events(session, start, end, critical=critical)
        failures = sum(s["events"] for s in security if s["action"] == "signature_failed")
        window = f"{start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC"
        rec = ctx.start_record(session, "audit_trail_review", {
            "title": f"Audit trail review {ctx.period} ({window})"[:200],
            "period": ctx.period[:20], "window_from": start, "window_to": end,
            "scope": f"Audit events from {window} of the records of high-risk workflows, and "
                     f"the security events of the system audit trail, listed by {ctx.reason}.",
            "records": records, "records_listed": len(records), "security_events": security,
            "signature_failures": failures})
        return rec.number

    done, number = ctx.once_for_period("review", work)
    return {"opened": [number] if done and number else []}
