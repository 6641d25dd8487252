"""Claims in ``job_runs``: how a scheduled job does each thing exactly once
(R-A11-12-3: one access review per system and period).

APScheduler is only the clock; coordination lives in the database. Each thing a job creates
is claimed by a ``job_runs`` row with a unique (job, period_key), inserted in the SAME
transaction (``Engine.unit``) as what it creates: the unique constraint is the claim, and an
IntegrityError means another scheduler did it, so the unit rolls back and is skipped quietly.
When a schedule's period is done, a last row (schedule name, period key) marks it.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import func as sqlfunc
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from workflow import clock
from workflow.db.models import JobRun
from workflow.engine.core import Engine


class Claimed(Exception):
    """Raised inside a unit when its claim exists already: roll back, skip quietly."""


def runner_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"[:120]


def jsonable(value: Any) -> dict[str, Any]:
    """A job's result as the JSON kept on its claim row."""
    if isinstance(value, dict):
        return {str(k): v if isinstance(v, str | int | float | bool | list | type(None)) else str(v)
                for k, v in value.items()}
    return {} if value is None else {"result": str(value)}


def claim(session: Session, job: str, key: str, now: datetime, runner: str) -> int:
    """Insert the claim row (one Core INSERT); when another transaction holds the same
    (job, period_key), the unique constraint refuses it and this unit rolls back."""
    try:
        # no SAVEPOINT around it: the unit must not go on without its claim
        return session.execute(insert(JobRun.__table__).values(
            job=job[:80], period_key=key[:80], started_at=now, status="done", result={},
            runner=runner)).inserted_primary_key[0]
    except IntegrityError:
        raise Claimed() from None


def once(engine: Engine, job: str, key: str, now: datetime, runner: str,
         work: Callable[[Session], Any]) -> tuple[bool, Any]:
    """Run ``work(session)`` in one unit together with the claim row (job, key).

    Returns (True, its result), or (False, None) when the claim was already taken (the
    unit rolled back, nothing was done twice)."""
    try:
        with engine.unit() as session:
            run_id = claim(session, job, key, now, runner)
            result = work(session)
            session.execute(update(JobRun.__table__).where(JobRun.id == run_id).values(
                result=jsonable(result), finished_at=clock.now()))
            return True, result
    except Claimed:
        return False, None


def is_done(engine: Engine, job: str, key: str) -> bool:
    with engine.reader() as s:
        return s.execute(select(JobRun.id).where(
            JobRun.job == job, JobRun.period_key == key, JobRun.status == "done")
        ).first() is not None


def record_failure(engine: Engine, name: str, period: str, now: datetime,
                   exc: Exception) -> None:
    """Keep the latest failure of schedule ``name`` visible (``qms jobs list``); the period
    stays open, so the next tick retries it."""
    key = f"{period}!failed"[:80]
    try:
        with engine.unit() as s:
            row = s.execute(select(JobRun).where(JobRun.job == name,
                                                 JobRun.period_key == key)).scalar_one_or_none()
            if row is None:
                row = JobRun(job=name, period_key=key, started_at=now, status="failed",
                             result={"attempts": 0}, runner=runner_name())
                s.add(row)
            row.result = {"attempts": int(row.result.get("attempts", 0)) + 1}
            row.finished_at = clock.now()
            row.error = f"{type(exc).__name__}: {exc}"[:2000]
    except IntegrityError:
        pass  # another scheduler recorded the same failure at the same moment


def last_runs(engine: Engine) -> dict[str, JobRun]:
    """The latest run row per schedule name (for ``qms jobs list``)."""
    with engine.reader() as s:
        sub = select(JobRun.job, sqlfunc.max(JobRun.id).label("mid")).group_by(JobRun.job) \
            .subquery()
        rows = s.execute(select(JobRun).join(sub, JobRun.id == sub.c.mid)).scalars().all()
        for r in rows:
            s.expunge(r)
    return {r.job: r for r in rows}
