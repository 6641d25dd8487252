"""Security incidents from the product's own security events (EU GMP Annex 11 §13, ISO/IEC
27001 A.5.25, A.8.16; R-INC-20..24): each run looks at the last complete detection period
(the schedule's period, e.g. the previous hour) of the system audit trail and the stored
audit-trail verifications, and opens a security incident for ISMS, as the system user, for
each cause found:

- ``lockout_storm``: at least ``QMS_INCIDENT_LOCKOUTS`` ``account_locked`` events;
- ``signature_failures``: at least ``QMS_INCIDENT_SIGNATURE_FAILURES`` ``signature_failed``
  events;
- ``verify_audit_failed``: at least ``QMS_INCIDENT_VERIFY_FAILURES`` verifications that found
  problems (``integrity_check_failed`` events, or failed verification runs whose event the
  broken system chain refused).

Exactly once per cause and period: the incident is started in the same unit as its claim row
(job, ``<period>/<cause>``) in ``job_runs`` (workflow/scheduling/claims.py), so a second
scheduler racing for the same cause rolls back. The incident starts in ISMS's triage
(``reported``), initiated by the system user, the cause and its events in the description:
a draft for ISMS to triage or dismiss.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from workflow import clock
from workflow.audit import trail as audit
from workflow.audit.integrity import VERIFY_JOB
from workflow.config import settings
from workflow.db.models import AuditEvent, JobRun
from workflow.errors import WorkflowError
from workflow.scheduling.context import JobContext
from workflow.scheduling.schedules import period_key, period_start

#: the workflow the job opens incidents in
WORKFLOW = "security_incident"
#: the system-chain action a failed verification appends (jobs/verify_audit.py)
INTEGRITY_FAILED = "integrity_check_failed"


@dataclass(frozen=True)
class Cause:
    """One cause found in a detection period: what, how many events, the first one's time,
    and the lines describing them for ISMS."""

    key: str
    title: str
    count: int
    first: datetime
    lines: tuple[str, ...]


def window(period: str, now: datetime) -> tuple[datetime, datetime, str]:
    """The last complete period before ``now``: (start, end, its key)."""
    end = period_start(period, now)
    start = period_start(period, end - timedelta(microseconds=1))
    return start, end, period_key(period, start)


def _events(session: Session, action: str, start: datetime, end: datetime) -> list[AuditEvent]:
    return list(session.execute(
        select(AuditEvent).where(AuditEvent.chain == audit.SYSTEM_CHAIN,
                                 AuditEvent.action == action, AuditEvent.at >= start,
                                 AuditEvent.at < end).order_by(AuditEvent.seq)).scalars())


def _who(ev: AuditEvent) -> str:
    return str((ev.changes or {}).get("username") or ev.actor_name or "?")


def causes(session: Session, start: datetime, end: datetime) -> list[Cause]:
    """The causes that reach their thresholds (settings) in [start, end)."""
    conf = settings()
    found: list[Cause] = []
    locked = _events(session, "account_locked", start, end)
    if conf.incident_lockouts and len(locked) >= conf.incident_lockouts:
        people = Counter(_who(e) for e in locked)
        found.append(Cause(
            "lockout_storm", f"Lockout storm: {len(locked)} account lockouts "
            f"({len(people)} accounts)", len(locked), locked[0].at,
            tuple(f"{e.at:%Y-%m-%d %H:%M:%S} UTC account_locked {_who(e)}" for e in locked)))
    failed = _events(session, "signature_failed", start, end)
    if conf.incident_signature_failures and len(failed) >= conf.incident_signature_failures:
        people = Counter(_who(e) for e in failed)
        found.append(Cause(
            "signature_failures", f"Repeated signature failures: {len(failed)} failed "
            f"signatures ({len(people)} accounts)", len(failed), failed[0].at,
            tuple(f"{e.at:%Y-%m-%d %H:%M:%S} UTC signature_failed {_who(e)}" for e in failed)))
    if conf.incident_verify_failures:
        alarms = _events(session, INTEGRITY_FAILED, start, end)
        told = {(e.changes or {}).get("run") for e in alarms}
        # a failed run whose event the broken system chain refused counts too (verify_audit.run)
        runs = [r for r in session.execute(select(JobRun).where(
            JobRun.job == VERIFY_JOB, JobRun.status == "failed", JobRun.finished_at >= start,
            JobRun.finished_at < end).order_by(JobRun.id)).scalars()
            if (r.result or {}).get("ok") is False and r.id not in told]
        lines = [f"{e.at:%Y-%m-%d %H:%M:%S} UTC verify-audit run #{(e.changes or {}).get('run')}"
                 f": {(e.changes or {}).get('problems')} problem(s), first: "
                 f"{(e.changes or {}).get('first_problem')}" for e in alarms]
        lines += [f"{r.finished_at:%Y-%m-%d %H:%M:%S} UTC verify-audit run #{r.id}: "
                  f"{(r.result or {}).get('problems')} problem(s), first: "
                  f"{(r.result or {}).get('first_problem')}" for r in runs if r.finished_at]
        times = [e.at for e in alarms] + [r.finished_at for r in runs if r.finished_at]
        if len(lines) >= conf.incident_verify_failures:
            found.append(Cause(
                "verify_audit_failed", f"Audit-trail verification failed ({len(lines)} "
                "run(s))", len(lines), min(times), tuple(lines)))
    return found


def security_event_incidents(ctx: JobContext) -> dict[str, Any]:
    """Open a security incident for ISMS per cause found in the system's own security
    events (lockout storms, failed verify-audit, repeated signature failures) of the last
    complete period, once per cause and period."""
    if ctx.schedule.period is None:
        raise WorkflowError("security_event_incidents needs a cron and a period")
    start, end, key = window(ctx.schedule.period, ctx.now)
    with ctx.engine.reader() as s:
        found = causes(s, start, end)
    opened: list[str] = []
    span = f"{start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC"
    for cause in found:
        def work(session: Session, cause: Cause = cause) -> str:
            shown = list(cause.lines[:50])
            if len(cause.lines) > 50:
                shown.append(f"... and {len(cause.lines) - 50} more")
            rec = ctx.start_record(session, WORKFLOW, {
                "title": f"{cause.title}, {span}"[:200],
                "description": (f"Opened automatically by {ctx.reason} (cause {cause.key}) from "
                                f"the security events of {span}:\n" + "\n".join(shown)),
                "occurred_at": clock.as_utc(cause.first).isoformat()})
            return rec.number

        done, number = ctx.once(ctx.schedule.name, f"{key}/{cause.key}", work)
        if done and number:
            opened.append(number)
    return {"opened": opened}
