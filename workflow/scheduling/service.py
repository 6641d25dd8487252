"""The scheduler process (``qms scheduler``): APScheduler is only the clock, one tick a minute;
each tick runs the schedules that are due (:func:`run_due`).

On PostgreSQL a leader lock (``pg_try_advisory_xact_lock``) lets one scheduler run a tick at a
time; the claims in ``job_runs`` keep it exactly-once even without it (SQLite, or a lock lost
mid-tick).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import Connection, select
from sqlalchemy import func as sqlfunc

from workflow import clock
from workflow.db import outage
from workflow.engine.core import Engine
from workflow.scheduling import golive
from workflow.scheduling.context import Jobs
from workflow.scheduling.runner import run_schedule
from workflow.scheduling.schedules import Schedule, load_schedules

log = logging.getLogger(__name__)

#: a fixed key for the PostgreSQL advisory lock held by the scheduler that runs a tick
LEADER_LOCK_KEY = 0x514D5353  # "QMSS"


@contextmanager
def leader(engine: Engine) -> Iterator[bool]:
    """Hold the scheduler leader lock for one tick (PostgreSQL): yields False when another
    scheduler holds it. On SQLite (one machine) always True; the claims still apply."""
    bind = engine.sessions.kw.get("bind")
    if bind is None or bind.dialect.name != "postgresql" or isinstance(bind, Connection):
        yield True
        return
    with bind.connect() as conn:
        # transaction-scoped: released by the commit/rollback below or if the process dies
        got = bool(conn.execute(select(sqlfunc.pg_try_advisory_xact_lock(LEADER_LOCK_KEY)))
                   .scalar())
        try:
            yield got
        finally:
            conn.rollback()


@contextmanager
def _always() -> Iterator[bool]:
    yield True


def run_due(engine: Engine, schedules: Mapping[str, Schedule] | None = None, *, jobs: Jobs,
            now: datetime | None = None, use_leader_lock: bool = True) -> list[str]:
    """One scheduler tick: run every schedule that is due now (none for an occurrence before
    the go-live, workflow/scheduling/golive.py). Returns operator lines."""
    schedules = load_schedules(jobs=jobs) if schedules is None else schedules
    lock = leader(engine) if use_leader_lock else _always()
    with lock as is_leader:
        if not is_leader:
            log.info("another scheduler holds the leader lock; skipping this tick")
            return []
        now = now or clock.now()
        not_before = golive.go_live(engine)
        lines = []
        for s in schedules.values():
            if s.cron is None:
                line = run_schedule(engine, s, None, now, jobs=jobs)
            else:
                period = s.due_period(now, not_before)
                line = run_schedule(engine, s, period, now, jobs=jobs) if period else None
            if line:
                lines.append(line)
        return lines


def _tick(engine: Engine, schedules: Mapping[str, Schedule], jobs: Jobs) -> Callable[[], None]:
    def tick() -> None:
        try:
            for line in run_due(engine, schedules, jobs=jobs):
                log.info("%s", line)
        except Exception as exc:  # noqa: BLE001 - the clock keeps ticking; the next tick retries
            if outage.kind(exc) is not None:  # logged once per outage by workflow/db/outage.py
                log.debug("scheduler tick failed: database unavailable", exc_info=True)
            else:
                log.exception("scheduler tick failed")
    return tick


def _add_tick(sched: BaseScheduler, tick: Callable[[], None], tick_seconds: int) -> None:
    sched.add_job(tick, IntervalTrigger(seconds=tick_seconds, timezone=UTC), id="tick",
                  coalesce=True, max_instances=1, misfire_grace_time=tick_seconds,
                  next_run_time=datetime.now(UTC))


def serve(engine: Engine, schedules: Mapping[str, Schedule], *, jobs: Jobs,
          tick_seconds: int = 60) -> None:
    """``qms scheduler``: APScheduler 3 (BlockingScheduler, in-memory job store) as the clock
    only. One tick a minute runs :func:`run_due`; the first tick runs at start (catch-up)."""
    sched = BlockingScheduler(timezone=UTC)
    _add_tick(sched, _tick(engine, schedules, jobs), tick_seconds)
    try:
        sched.start()
    except (KeyboardInterrupt, SystemExit):
        pass


def start_background(engine: Engine, schedules: Mapping[str, Schedule], *, jobs: Jobs,
                     tick_seconds: int = 60) -> BackgroundScheduler:
    """The same ticks in a thread of this process (``qms serve --scheduler``, ``make run``):
    one process shows the whole demo, notifications included. Several processes may still
    share the database (the claims keep every job once per period)."""
    sched = BackgroundScheduler(timezone=UTC, daemon=True)
    _add_tick(sched, _tick(engine, schedules, jobs), tick_seconds)
    sched.start()
    log.info("scheduler started in this process: %d schedule(s), a tick every %d s",
             len(schedules), tick_seconds)
    return sched
