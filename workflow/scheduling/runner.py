"""Running a job: one schedule for one period, at most once (the claims in ``job_runs``,
:mod:`workflow.scheduling.claims`), a failure recorded and retried on the next tick.

The job registry is passed in (:func:`workflow.scheduling.jobs.default_jobs` for the shipped
jobs); nothing here knows which jobs exist. Time comes from :mod:`workflow.clock`, so tests
jump a quarter ahead without sleeping.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime
from typing import Any

from workflow import clock
from workflow.db import outage
from workflow.engine.core import Engine
from workflow.queries.selection import select_records
from workflow.scheduling import claims
from workflow.scheduling.context import Job, JobContext, Jobs
from workflow.scheduling.schedules import Schedule, period_key

log = logging.getLogger(__name__)


def run_schedule(engine: Engine, schedule: Schedule, period: str | None,
                 now: datetime | None = None, *, jobs: Jobs) -> str | None:
    """Run one schedule for ``period`` unless that period is done. Returns a line for the
    operator, or None when there was nothing to do."""
    now = now or clock.now()
    job = jobs[schedule.job]
    if period is not None and claims.is_done(engine, schedule.name, period):
        return None
    ctx = JobContext(engine, schedule, period or period_key("minute", now), now)
    try:
        if schedule.records is not None:
            summary = _per_record(engine, schedule, job, ctx)
        else:
            summary = job.fn(ctx) or {}
    except Exception as exc:  # noqa: BLE001 - a failing job must not stop the others
        if outage.kind(exc) is not None:  # logged once per outage (workflow/db/outage.py)
            log.debug("scheduled job %s failed: database unavailable", schedule.name)
        else:
            log.exception("scheduled job %s failed", schedule.name)
        if period is not None:
            claims.record_failure(engine, schedule.name, period, now, exc)
        return f"{schedule.name} [{period or 'now'}]: FAILED: {type(exc).__name__}: {exc}"
    if period is not None and not ctx.marked:
        done, _ = ctx.once(schedule.name, period, lambda s: summary)
        if not done and not summary.get("opened"):
            # another scheduler finished this period first and this run opened nothing;
            # what a run did open (each item under its own claim) is always reported
            return None
    text = ", ".join(f"{k} {v}" for k, v in summary.items() if v not in (0, [], None, ""))
    if not text:
        return None  # done (the period is marked), nothing worth a line
    return f"{schedule.name} [{period or 'now'}]: {text}"


def _per_record(engine: Engine, schedule: Schedule, job: Job, ctx: JobContext
                ) -> dict[str, Any]:
    """Run ``job`` once for each record the schedule selects (``for_each_record``), each
    with ``ctx.record`` set; the job claims (period, record) itself (``once_for_record``),
    so a record done by another scheduler is skipped. The records are read once, before the
    runs; a record that fails does not stop the others, and the period stays open (the
    next tick retries the failed ones: the others are claimed already)."""
    assert schedule.records is not None
    with engine.reader() as s:
        items = select_records(s, engine.registry, schedule.records, ctx.now)
    merged: dict[str, Any] = {"records": len(items)}
    failed: list[str] = []
    for item in items:
        one = replace(ctx, record=item)
        try:
            result = job.fn(one) or {}
        except Exception as exc:  # noqa: BLE001 - one record must not stop the others
            if outage.kind(exc) is not None:
                raise
            log.exception("scheduled job %s failed for %s", schedule.name, item.number)
            failed.append(f"{item.number}: {type(exc).__name__}: {exc}")
            continue
        for k, v in result.items():
            if isinstance(v, list):
                merged[k] = [*merged.get(k, []), *v]
            elif isinstance(v, int) and not isinstance(v, bool):
                merged[k] = merged.get(k, 0) + v
            else:
                merged[k] = v
    if failed:
        raise RecordsFailed(failed)
    return merged


class RecordsFailed(Exception):
    """Some records of a ``for_each_record`` run failed (the others are done)."""

    def __init__(self, failed: list[str]):
        super().__init__(f"{len(failed)} record(s) failed: " + "; ".join(failed)[:1500])


def run_now(engine: Engine, schedule: Schedule, now: datetime | None = None, *,
            jobs: Jobs) -> str:
    """``qms jobs run NAME``: run the schedule for the current period now (or its latest due
    period), still at most once per period."""
    now = now or clock.now()
    period = None
    if schedule.period is not None:
        period = schedule.due_period(now) or period_key(schedule.period, now)
        if claims.is_done(engine, schedule.name, period):
            return f"{schedule.name} [{period}]: already done for this period"
    return run_schedule(engine, schedule, period, now, jobs=jobs) or \
        f"{schedule.name} [{period or 'now'}]: nothing to do"
