"""verify-audit on a clock and on request (21 CFR 11.10(e), EU GMP Annex 11 §7, §12;
R-SEC-40, R-SEC-41): ``verify_audit_requests`` (every minute) runs the verifications queued
from the dashboard, ``verify_audit_daily`` runs one a day; ``qms verify-audit`` takes the
same path. A failed verification is never only a row on the dashboard: it appends an
``integrity_check_failed`` security event to the system audit trail and queues a message to
the security role (``QMS_SECURITY_ROLE``), in the unit that stores the result.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

from workflow import clock, outbox
from workflow.audit import integrity, runs
from workflow.audit import trail as audit
from workflow.audit.trail import ChainProblem, VerifyReport
from workflow.config import settings
from workflow.db.models import JobRun
from workflow.db.uow import Units
from workflow.errors import TamperedData
from workflow.scheduling.context import JobContext

#: further checks whose problems a run's result includes (``qms verify-audit --since-checkpoint``)
Extra = Callable[[], list[ChainProblem]]

log = logging.getLogger(__name__)
#: the security event a failed verification appends to the system chain
FAILED_ACTION = "integrity_check_failed"


def verify_audit_requests(ctx: JobContext) -> dict[str, Any]:
    """Run the verifications queued from the dashboard (one per tick), after marking those
    whose process died as stale."""
    stale = runs.expire_stale(ctx.uow)
    run_id = runs.claim_next(ctx.uow, ctx.runner)
    if run_id is None:
        return {"stale": stale}
    report = run(ctx.uow, run_id)
    return {"stale": stale, "verified": [f"run #{run_id}: {_summary(report)}"]}


def verify_audit_daily(ctx: JobContext) -> dict[str, Any]:
    """Verify every audit chain, signature and sealed row once a day and keep the result
    (a failure raises a security event and tells the security role)."""
    run_id = runs.start(ctx.uow, ctx.runner, f"schedule {ctx.schedule.name}")
    report = run(ctx.uow, run_id)
    return {"verified": f"run #{run_id}: {_summary(report)}"}


def _summary(report: VerifyReport) -> str:
    if report.ok:
        return f"OK ({report.events} events)"
    return f"FAILED ({len(report.problems)} problem(s), first: {report.problems[0]})"


def verify_now(engine: Units, runner: str, requested_by: str, *,
               workers: int | None = None, extra: Extra | None = None
               ) -> tuple[int, VerifyReport]:
    """Verify now in this process (``qms verify-audit``): a run row, its progress, its
    result, the alarm on failure; returns (run id, report). ``extra()`` adds problems of
    further checks to the run's result (``--since-checkpoint``: workflow/audit/checkpoints.py)."""
    run_id = runs.start(engine, runner, requested_by)
    return run_id, run(engine, run_id, workers=workers, extra=extra)


def run(engine: Units, run_id: int, *, workers: int | None = None,
        extra: Extra | None = None) -> VerifyReport:
    """Verify everything for the running verification ``run_id``: progress and heartbeat
    on its row while it reads, then its result; on failure the alarm (:func:`alarm`). An
    exception (the database went away) leaves the run ``failed`` with the error."""
    beat = runs.Heartbeat(engine, run_id)
    try:
        report = integrity.verify_all(engine, workers=workers, progress=beat)
        if extra is not None:
            report.problems.extend(extra())
    except Exception as exc:
        runs.abandon(engine, run_id, exc)
        raise
    try:
        with engine.unit() as session:
            stored = runs.finish(session, run_id, report)
            if not report.ok:
                alarm(session, stored, report)
    except TamperedData as exc:
        # the system chain's own head is broken (it is among the problems): the event
        # cannot be chained, the result and the message must still get through
        log.error("integrity check failed and its security event cannot be recorded: %s", exc)
        with engine.unit() as session:
            stored = runs.finish(session, run_id, report)
            alarm(session, stored, report, event_refused=str(exc))
    if not report.ok:
        log.warning("integrity verification run #%s FAILED: %s", run_id, report.problems[0])
    return report


def alarm(session: Session, run: JobRun, report: VerifyReport, *,
          event_refused: str | None = None) -> None:
    """A failed verification: the security event on the system chain (unless the chain
    itself refuses it: ``event_refused`` says why, and the message says so) and a message
    to the security role, in the caller's unit."""
    now = clock.now()
    requested_by = str((run.result or {}).get("requested_by") or run.runner)
    first = str(report.problems[0])
    if event_refused is None:
        audit.system_event(session, at=now, actor=None, action=FAILED_ACTION, changes={
            "run": run.id, "requested_by": requested_by, "problems": len(report.problems),
            "first_problem": first[:500],
            "kinds": sorted({p.kind for p in report.problems})},
            reason=f"verify-audit run #{run.id} found {len(report.problems)} problem(s)")
    role = settings().security_role
    body = (f"verify-audit run #{run.id} (requested by {requested_by}) found "
            f"{len(report.problems)} problem(s) in {report.chains} chains, {report.events} "
            f"events, {report.signatures} signatures.\n\nFirst: {first}\n")
    more = [f"  [{p.kind}] {p}" for p in report.problems[1:10]]
    if more:
        body += "Also:\n" + "\n".join(more) + "\n"
    if event_refused:
        body += (f"\nThe security event could not be appended to the system audit trail: "
                 f"{event_refused}\n")
    body += f"\nAll problems: {settings().base_url}/dashboard/ (Data integrity)\n"
    outbox.enqueue(session, at=now, recipient_role=role, kind=FAILED_ACTION,
                   subject=f"audit-trail verification FAILED: {len(report.problems)} "
                           "problem(s)", body=body)
