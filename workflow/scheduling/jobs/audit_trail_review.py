"""The periodic audit-trail review (R-A11-9-2): one signed review for QA per period, listing
the audit events of critical records and the security events since the last review."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from workflow.audit.review import audit_trail_events
from workflow.db.models import Record
from workflow.errors import WorkflowError
from workflow.scheduling.context import JobContext
from workflow.scheduling.schedules import period_start


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
