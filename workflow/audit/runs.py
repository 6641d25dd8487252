"""verify-audit as a background run (21 CFR 11.10(e), EU GMP Annex 11 §7, §12; R-SEC-40):
a verification reads every audit event, so the dashboard's *Verify now* never runs it inside
the web request. It queues a run instead; the scheduler picks queued runs every minute
(``verify_audit_requests``) and runs one a day on its own (``verify_audit_daily``).

A run is a ``job_runs`` row of job :data:`~workflow.audit.integrity.VERIFY_JOB`:

- ``queued`` (requested, waiting for the scheduler) -> ``running`` (claimed by one scheduler:
  ``UPDATE ... WHERE status = 'queued'``, so two schedulers never run the same request) ->
  ``done`` (verified) or ``failed`` (problems found, or the run itself broke: ``error``);
- while running, the row carries its progress (audit events checked of the total) and a
  heartbeat (UTC time of the last progress write). A running row without a heartbeat for
  :data:`STALE_AFTER` is *stale* (its process died): it is shown as such and the next
  scheduler tick marks it ``stale`` so a new request can run.

Every finished run keeps its result (counts, the first :data:`~workflow.audit.integrity.
STORED_PROBLEMS` problems) for the dashboard. Raising the alarm on a failed run (a security
event, a message to the security role) is the scheduler's (:mod:`workflow.scheduling.jobs.
verify_audit`), which may use the outbox.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from workflow import clock
from workflow.audit.integrity import VERIFY_JOB, result_of
from workflow.audit.trail import VerifyReport
from workflow.db.models import JobRun
from workflow.db.uow import Units

QUEUED, RUNNING, DONE, FAILED, STALE = "queued", "running", "done", "failed", "stale"
#: a running verification whose heartbeat is older than this is taken for dead
STALE_AFTER = timedelta(minutes=5)
#: at most one progress write per this many seconds (each is a small write unit)
BEAT_SECONDS = 2.0

_runs = JobRun.__table__


def _key(kind: str, now: datetime) -> str:
    # each run is its own "period": the time plus a nonce (two runs can share a clock tick)
    return f"{kind}:{now.isoformat(timespec='microseconds')}#{uuid.uuid4().hex[:8]}"


def active(session: Session) -> JobRun | None:
    """The queued or running verification, oldest first (a stale one included: the
    dashboard shows it as stale until the scheduler marks it)."""
    return session.execute(
        select(JobRun).where(JobRun.job == VERIFY_JOB, JobRun.status.in_((QUEUED, RUNNING)))
        .order_by(JobRun.id).limit(1)).scalar_one_or_none()


def latest_result(session: Session) -> JobRun | None:
    """The newest finished verification (done or failed), never a queued or running one."""
    return session.execute(
        select(JobRun).where(JobRun.job == VERIFY_JOB, JobRun.status.in_((DONE, FAILED)))
        .order_by(JobRun.finished_at.desc(), JobRun.id.desc()).limit(1)).scalar_one_or_none()


def get(session: Session, run_id: int) -> JobRun | None:
    row = session.get(JobRun, run_id)
    return row if row is not None and row.job == VERIFY_JOB else None


def heartbeat(run: JobRun) -> datetime | None:
    beat = (run.result or {}).get("heartbeat")
    return datetime.fromisoformat(beat) if beat else None


def is_stale(run: JobRun, now: datetime | None = None) -> bool:
    """A running verification that has not written its heartbeat for :data:`STALE_AFTER`."""
    if run.status != RUNNING:
        return False
    last = heartbeat(run) or clock.as_utc(run.started_at)
    return (now or clock.now()) - clock.as_utc(last) > STALE_AFTER


@dataclass(frozen=True)
class Status:
    """What the dashboard shows of one run (and its JSON for the progress poll)."""

    id: int
    status: str  # queued | running | stale | done | failed
    checked: int
    total: int
    heartbeat: datetime | None
    requested_by: str
    ok: bool | None

    @property
    def finished(self) -> bool:
        return self.status in (DONE, FAILED)

    @property
    def percent(self) -> int:
        return min(100, self.checked * 100 // self.total) if self.total else 0

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "status": self.status, "checked": self.checked,
                "total": self.total, "percent": self.percent, "finished": self.finished,
                "ok": self.ok, "requested_by": self.requested_by,
                "heartbeat": self.heartbeat.isoformat() if self.heartbeat else None}


def status(run: JobRun, now: datetime | None = None) -> Status:
    r = run.result or {}
    p = r.get("progress") or {}
    shown = STALE if is_stale(run, now) else run.status
    return Status(run.id, shown, int(p.get("checked", 0)), int(p.get("total", 0)),
                  heartbeat(run), str(r.get("requested_by") or run.runner),
                  r.get("ok") if run.status in (DONE, FAILED) else None)


# --------------------------------------------------------------------------- commands


def request(engine: Units, requested_by: str) -> tuple[int, bool]:
    """Queue a verification for the scheduler (the dashboard's *Verify now*); returns (run
    id, True), or (id, False) when one is queued or running already (not stale): one run at
    a time is enough, a second would only read the same events again."""
    now = clock.now()
    with engine.unit() as session:
        current = active(session)
        if current is not None and not is_stale(current, now):
            return current.id, False
        row = JobRun(job=VERIFY_JOB, period_key=_key("request", now), started_at=now,
                     status=QUEUED, runner="",
                     result={"requested_by": requested_by, "requested_at": now.isoformat()})
        session.add(row)
        session.flush()
        return row.id, True


def start(engine: Units, runner: str, requested_by: str) -> int:
    """A verification that runs now (the daily schedule, ``qms verify-audit``): its row,
    already running."""
    now = clock.now()
    with engine.unit() as session:
        row = JobRun(job=VERIFY_JOB, period_key=_key("run", now), started_at=now,
                     status=RUNNING, runner=runner[:120],
                     result={"requested_by": requested_by, "heartbeat": now.isoformat()})
        session.add(row)
        session.flush()
        return row.id


def claim_next(engine: Units, runner: str) -> int | None:
    """Claim the oldest queued verification for this runner (one conditional UPDATE: two
    schedulers never claim the same one); None when nothing is queued."""
    now = clock.now()
    with engine.unit() as session:
        for run in session.execute(
                select(JobRun).where(JobRun.job == VERIFY_JOB, JobRun.status == QUEUED)
                .order_by(JobRun.id).limit(5)).scalars().all():
            result = {**(run.result or {}), "heartbeat": now.isoformat(),
                      "queued_at": run.started_at.isoformat()}
            claimed = session.connection().execute(
                update(_runs).where(_runs.c.id == run.id, _runs.c.status == QUEUED)
                .values(status=RUNNING, runner=runner[:120], started_at=now, result=result))
            if claimed.rowcount == 1:
                return run.id
    return None


def expire_stale(engine: Units) -> list[int]:
    """Mark running verifications without a heartbeat for :data:`STALE_AFTER` as
    ``stale`` (their process died; the result was never stored); returns their ids."""
    now = clock.now()
    done = []
    with engine.unit() as session:
        for run in session.execute(select(JobRun).where(
                JobRun.job == VERIFY_JOB, JobRun.status == RUNNING)).scalars():
            if is_stale(run, now):
                session.execute(update(_runs).where(_runs.c.id == run.id,
                                                    _runs.c.status == RUNNING)
                                .values(status=STALE, finished_at=now,
                                        error=f"no heartbeat since {heartbeat(run)}"))
                done.append(run.id)
    return done


class Heartbeat:
    """The ``progress`` callback of :func:`~workflow.audit.integrity.verify`: writes the
    progress and the heartbeat of run ``run_id`` in a small unit of its own, at most every
    :data:`BEAT_SECONDS` (and always the first time)."""

    def __init__(self, engine: Units, run_id: int, *, every: float = BEAT_SECONDS) -> None:
        self.engine, self.run_id, self.every = engine, run_id, every
        self._last: float | None = None
        self.checked = self.total = 0

    def __call__(self, checked: int, total: int) -> None:
        self.checked, self.total = checked, total
        tick = time.monotonic()
        if self._last is not None and tick - self._last < self.every:
            return
        self._last = tick
        now = clock.now()
        with self.engine.unit() as session:
            run = session.get(JobRun, self.run_id)
            if run is None or run.status != RUNNING:
                return
            session.execute(update(_runs).where(_runs.c.id == self.run_id).values(result={
                **(run.result or {}), "heartbeat": now.isoformat(),
                "progress": {"checked": checked, "total": total}}))


def finish(session: Session, run_id: int, report: VerifyReport) -> JobRun:
    """Store the result of run ``run_id`` (``done`` when nothing was found, else
    ``failed``), in the caller's unit."""
    run = session.get(JobRun, run_id)
    if run is None:
        raise LookupError(f"verification run #{run_id} is gone")
    now = clock.now()
    kept = {k: v for k, v in (run.result or {}).items() if k in ("requested_by", "queued_at")}
    session.execute(update(_runs).where(_runs.c.id == run_id).values(
        status=DONE if report.ok else FAILED, finished_at=now,
        result={**kept, **result_of(report), "heartbeat": now.isoformat(),
                "progress": {"checked": report.events, "total": report.events}}))
    session.refresh(run)
    return run


def abandon(engine: Units, run_id: int, exc: BaseException) -> None:
    """The run broke (a database error, a worker process died): keep it ``failed`` with the
    error, so it is not shown as running forever."""
    error = f"{type(exc).__name__}: {exc}"[:2000]
    with engine.unit() as session:
        run = session.get(JobRun, run_id)
        kept = {k: v for k, v in ((run.result or {}) if run else {}).items()
                if k in ("requested_by", "queued_at", "progress")}
        session.execute(update(_runs).where(_runs.c.id == run_id).values(
            status=FAILED, finished_at=clock.now(), error=error,
            result={**kept, "ok": None, "error": error}))
