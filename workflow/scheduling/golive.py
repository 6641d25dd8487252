"""The installation's go-live: the scheduler opens no periodic record for a cron occurrence
before it (a fresh install's first run does not back-fill last month's KPI report, last
quarter's access review or this year's definition reviews).

Where it comes from, first match:

1. the setting ``QMS_GO_LIVE`` (a day; its start, UTC);
2. the moment ``qms init`` recorded (:func:`record`): the claim row ``installation`` /
   ``go-live`` of ``job_runs``, written once; on a database that already has history (an
   upgrade) the time of its first audit event, so that nothing changes for it;
3. none (a database no ``qms init`` ran on, e.g. the tests' own): no limit.
"""

from __future__ import annotations

from datetime import UTC, datetime, time

from sqlalchemy import func, select

from workflow import config
from workflow.db.models import AuditEvent, JobRun
from workflow.engine.core import Engine
from workflow.scheduling import claims

JOB, KEY = "installation", "go-live"


def recorded(engine: Engine) -> datetime | None:
    """The go-live ``qms init`` recorded, if any."""
    with engine.reader() as s:
        return s.execute(select(JobRun.started_at).where(
            JobRun.job == JOB, JobRun.period_key == KEY)).scalar_one_or_none()


def record(engine: Engine, now: datetime) -> datetime:
    """Record the go-live once (``qms init``): ``now`` on a database without history, else
    its first audit event. Returns the go-live in force in the database."""
    with engine.reader() as s:
        first = s.execute(select(func.min(AuditEvent.at))).scalar()
    at = min(now, first) if first is not None else now
    claims.once(engine, JOB, KEY, at, "qms init", lambda _s: {"go_live": at.isoformat()})
    found = recorded(engine)
    assert found is not None
    return found


def go_live(engine: Engine, settings: config.Settings | None = None) -> datetime | None:
    """The go-live in force: the setting, else the recorded one, else None (no limit)."""
    s = settings if settings is not None else config.settings()
    if s.go_live is not None:
        return datetime.combine(s.go_live, time(0, 0), tzinfo=UTC)
    return recorded(engine)
