"""Scheduled jobs: periodic access reviews, SLA sweeps, timers, CAPA effectiveness checks,
training refreshers, notification delivery.

* **Jobs** are module-level functions, registered by an explicit name in :data:`JOBS`.
* **Schedules are configuration**: ``definitions/schedules/schedules.yaml`` (or the file named
  by ``QMS_SCHEDULES_FILE``), validated like the workflow definitions: every problem is
  reported as ``file:line: message`` (:class:`ScheduleError`).
* **Exactly once** (R-A11-12-3: one access review per system and period). APScheduler is only
  the clock; coordination lives in the database. Each thing a job creates is claimed by a
  ``job_runs`` row with a unique (job, period_key), inserted in the SAME transaction
  (``Engine.unit``) as what it creates: the unique constraint is the claim, and an
  IntegrityError means another scheduler did it, so the unit rolls back and is skipped quietly.
  When a schedule's period is done, a last row (schedule name, period key) marks it. On
  PostgreSQL a leader lock (``pg_try_advisory_xact_lock``) lets one scheduler run a tick at a
  time; the claims keep it exactly-once even without it (SQLite, or a lock lost mid-tick).
* **Misfires catch up once**: on each tick a schedule is due for the period of its most recent
  cron occurrence at or before now (looking back two periods). A scheduler that was down
  runs the missed period once on restart, never once per missed tick; older missed
  occurrences are not replayed.
* **Attributable** (R-P11-10h-1): scheduled actions act as the system user and every audit
  event they cause names the job and period in its reason.

Time comes from :mod:`workflow.clock`, so tests jump a quarter ahead without sleeping.
"""

from __future__ import annotations

import logging
import os
import re
import socket
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Connection,
    String,
    and_,
    case,
    cast,
    exists,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy import func as sqlfunc
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from workflow import clock
from workflow.audit import trail as audit
from workflow.db.models import (
    AuditEvent,
    JobRun,
    OutboxMessage,
    Record,
    RoleGrant,
    Task,
    TaskStatus,
    User,
)
from workflow.engine.core import Engine
from workflow.errors import Problem, WorkflowError
from workflow.identity import users as identity
from workflow.spec.model import DEFAULT_DEFINITIONS_DIR, _compose, _line, parse_duration

log = logging.getLogger(__name__)

DEFAULT_SCHEDULES_FILE = DEFAULT_DEFINITIONS_DIR / "schedules" / "schedules.yaml"
PERIODS = ("minute", "hour", "day", "week", "month", "quarter", "year")
_LOOKBACK = {"minute": timedelta(minutes=2), "hour": timedelta(hours=2),
             "day": timedelta(days=2), "week": timedelta(weeks=2),
             "month": timedelta(days=62), "quarter": timedelta(days=184),
             "year": timedelta(days=732)}
_NAME = re.compile(r"^[a-z][a-z0-9_]{1,59}$")
#: a fixed key for the PostgreSQL advisory lock held by the scheduler that runs a tick
LEADER_LOCK_KEY = 0x514D5353  # "QMSS"


class ScheduleError(WorkflowError):
    """The schedules file is invalid; ``problems`` lists every problem (file:line)."""

    code = "schedules_invalid"

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        lines = "\n".join(str(p) for p in problems)
        super().__init__(f"{len(problems)} problem(s) in the schedules file:\n{lines}")


# ------------------------------------------------------------------ periods


def period_key(period: str, at: datetime) -> str:
    """The name of the period containing ``at`` (UTC): ``2026-Q1``, ``2026-03``, ``2026-W10``,
    ``2026-03-02``, ``2026-03-02T09``, ``2026-03-02T09:05``, ``2026``."""
    at = at.astimezone(UTC)
    if period == "minute":
        return at.strftime("%Y-%m-%dT%H:%M")
    if period == "hour":
        return at.strftime("%Y-%m-%dT%H")
    if period == "day":
        return at.strftime("%Y-%m-%d")
    if period == "week":
        y, w, _ = at.isocalendar()
        return f"{y}-W{w:02d}"
    if period == "month":
        return at.strftime("%Y-%m")
    if period == "quarter":
        return f"{at.year}-Q{(at.month - 1) // 3 + 1}"
    if period == "year":
        return f"{at.year}"
    raise ValueError(f"unknown period {period!r}")


# ------------------------------------------------------------------ schedules


@dataclass(frozen=True)
class Schedule:
    """One entry of the schedules file."""

    name: str
    job: str
    cron: str | None  # None: runs on every scheduler tick (``every: minute``)
    period: str | None
    params: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    origin: str = ""
    line: int = 0

    def trigger(self) -> Any:
        from apscheduler.triggers.cron import CronTrigger

        return CronTrigger.from_crontab(self.cron, timezone=UTC)

    def due_period(self, now: datetime) -> str | None:
        """The period of the latest cron occurrence at or before ``now`` (looking back two
        periods), or None. Every tick of that period gives the same key: catch-up runs once."""
        if self.cron is None or self.period is None:
            return None
        trig = self.trigger()
        t = trig.get_next_fire_time(None, now - _LOOKBACK[self.period])
        last = None
        while t is not None and t <= now:
            last = t
            t = trig.get_next_fire_time(t, t + timedelta(microseconds=1))
        return period_key(self.period, last) if last is not None else None

    def describe(self) -> str:
        when = f"cron '{self.cron}' once per {self.period}" if self.cron else "every minute"
        return f"{self.name}: job {self.job}, {when}"


def schedules_file() -> Path:
    return Path(os.environ.get("QMS_SCHEDULES_FILE") or DEFAULT_SCHEDULES_FILE)


def load_schedules(path: str | Path | None = None) -> dict[str, Schedule]:
    """Read and validate the schedules file; raise :class:`ScheduleError` listing every problem
    as ``file:line: message``."""
    path = Path(path) if path else schedules_file()
    origin = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScheduleError([Problem(origin, 1, f"cannot read the file: {exc}")]) from None
    return load_schedules_text(text, origin)


def load_schedules_text(text: str, origin: str = "<string>") -> dict[str, Schedule]:
    doc, lines, problems = _compose(text, origin)
    if doc is None:
        raise ScheduleError(problems)

    def problem(path: tuple, message: str) -> None:
        problems.append(Problem(origin, _line(lines, path), message))

    out: dict[str, Schedule] = {}
    if not isinstance(doc, dict) or set(doc) - {"schedules"} or \
            not isinstance(doc.get("schedules"), dict):
        problem((), "the file must be a mapping with one key, 'schedules', mapping each "
                    "schedule name to its job, cron and period")
        raise ScheduleError(problems)
    allowed = {"job", "cron", "period", "every", "params", "description", "enabled"}
    for name, entry in doc["schedules"].items():
        at = ("schedules", name)
        if not _NAME.match(name):
            problem(at, f"schedule name {name!r}: use 2-60 characters a-z, 0-9 and _, "
                        "starting with a letter")
        if not isinstance(entry, dict):
            problem(at, f"schedule {name!r} must be a mapping (job, cron, period, params)")
            continue
        for k in sorted(set(entry) - allowed):
            problem((*at, k), f"unknown key {k!r} (allowed: {', '.join(sorted(allowed))})")
        job = entry.get("job")
        if job not in JOBS:
            problem((*at, "job") if "job" in entry else at,
                    f"unknown job {job!r}; known jobs: {', '.join(sorted(JOBS))}")
        cron, period, every = entry.get("cron"), entry.get("period"), entry.get("every")
        if every is not None:
            if every != "minute":
                problem((*at, "every"), "every: takes only 'minute' (use cron: otherwise)")
            if cron is not None or period is not None:
                problem((*at, "every"), "give either 'every: minute' or 'cron' with 'period', "
                                        "not both")
            elif job in JOBS and not JOBS[job].idempotent:
                problem((*at, "every"), f"job {job!r} must run once per period: give it a "
                                        "cron and a period instead of 'every: minute'")
        else:
            if not isinstance(cron, str):
                problem((*at, "cron") if "cron" in entry else at,
                        "a cron expression is required, e.g. cron: \"0 6 1 1,4,7,10 *\" "
                        "(minute hour day month weekday, UTC)")
            else:
                try:
                    Schedule(name, "", cron, "day").trigger()
                except (ValueError, TypeError) as exc:
                    problem((*at, "cron"), f"invalid cron expression {cron!r}: {exc}")
            if period not in PERIODS:
                problem((*at, "period") if "period" in entry else at,
                        f"period must be one of: {', '.join(PERIODS)} (the job runs once "
                        "per period)")
        params = entry.get("params", {})
        if not isinstance(params, dict):
            problem((*at, "params"), "params must be a mapping")
            params = {}
        elif job in JOBS and JOBS[job].check is not None:
            for sub, message in JOBS[job].check(params):
                problem((*at, "params", *sub), message)
        if entry.get("enabled", True) is False:
            continue
        out[name] = Schedule(name, str(job), cron if every is None else None,
                             period if every is None else None, params,
                             str(entry.get("description", "")), origin, _line(lines, at))
    if problems:
        raise ScheduleError(problems)
    return out


# ------------------------------------------------------------------ running jobs


class _Claimed(Exception):
    """Raised inside a unit when its claim exists already: roll back, skip quietly."""


def runner_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"[:120]


@dataclass
class JobContext:
    """What a job gets: the engine, its schedule, the period and time of the run."""

    engine: Engine
    schedule: Schedule
    period: str
    now: datetime
    runner: str = field(default_factory=runner_name)
    marked: bool = False  # the job wrote its period's row itself

    @property
    def params(self) -> Mapping[str, Any]:
        return self.schedule.params

    @property
    def reason(self) -> str:
        """The audit reason of everything the job does (R-P11-10h-1)."""
        return f"scheduled job {self.schedule.name} ({self.schedule.job}), period {self.period}"

    def once(self, job: str, key: str, work: Callable[[Session], Any]) -> tuple[bool, Any]:
        """Run ``work(session)`` in one unit together with the claim row (job, key).

        Returns (True, its result), or (False, None) when the claim was already taken (the
        unit rolled back, nothing was done twice)."""
        try:
            with self.engine.unit() as session:
                run_id = _claim(session, job, key, self.now, self.runner)
                result = work(session)
                session.execute(update(JobRun.__table__).where(JobRun.id == run_id).values(
                    result=_jsonable(result), finished_at=clock.now()))
                if (job, key) == (self.schedule.name, self.period):
                    self.marked = True
                return True, result
        except _Claimed:
            return False, None

    def once_for_period(self, item: str, work: Callable[[Session], Any]) -> tuple[bool, Any]:
        """``once`` for one item of this schedule's period (e.g. one system's review)."""
        return self.once(self.schedule.name, f"{self.period}/{item}", work)

    def system(self, session: Session) -> User:
        return identity.system_user(session)

    def outbox(self, session: Session, *, kind: str, subject: str, body: str = "",
               record_id: int | None = None, role: str | None = None,
               user_id: int | None = None) -> None:
        """Queue a message (delivered after commit by notifications/)."""
        session.add(OutboxMessage(created_at=self.now, record_id=record_id, recipient_role=role,
                                  recipient_user_id=user_id, subject=subject[:300], body=body,
                                  status="pending", attempts=0, kind=kind, channel="all"))


def _jsonable(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return {str(k): v if isinstance(v, str | int | float | bool | list | type(None)) else str(v)
                for k, v in value.items()}
    return {} if value is None else {"result": str(value)}


def _claim(session: Session, job: str, key: str, now: datetime, runner: str) -> int:
    """Insert the claim row (one Core INSERT); when another transaction holds the same
    (job, period_key), the unique constraint refuses it and this unit rolls back."""
    try:
        # no SAVEPOINT around it: the unit must not go on without its claim
        return session.execute(insert(JobRun.__table__).values(
            job=job[:80], period_key=key[:80], started_at=now, status="done", result={},
            runner=runner)).inserted_primary_key[0]
    except IntegrityError:
        raise _Claimed() from None


def is_done(engine: Engine, job: str, key: str) -> bool:
    with engine.reader() as s:
        return s.execute(select(JobRun.id).where(
            JobRun.job == job, JobRun.period_key == key, JobRun.status == "done")
        ).first() is not None


def run_schedule(engine: Engine, schedule: Schedule, period: str | None,
                 now: datetime | None = None) -> str | None:
    """Run one schedule for ``period`` unless that period is done. Returns a line for the
    operator, or None when there was nothing to do."""
    now = now or clock.now()
    job = JOBS[schedule.job]
    if period is not None and is_done(engine, schedule.name, period):
        return None
    ctx = JobContext(engine, schedule, period or period_key("minute", now), now)
    try:
        summary = job.fn(ctx) or {}
    except Exception as exc:  # noqa: BLE001 - a failing job must not stop the others
        log.exception("scheduled job %s failed", schedule.name)
        if period is not None:
            _record_failure(engine, schedule, period, now, exc)
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


def _record_failure(engine: Engine, schedule: Schedule, period: str, now: datetime,
                    exc: Exception) -> None:
    """Keep the latest failure visible (``qms jobs list``); the period stays open, so the
    next tick retries it."""
    key = f"{period}!failed"[:80]
    try:
        with engine.unit() as s:
            row = s.execute(select(JobRun).where(JobRun.job == schedule.name,
                                                 JobRun.period_key == key)).scalar_one_or_none()
            if row is None:
                row = JobRun(job=schedule.name, period_key=key, started_at=now, status="failed",
                             result={"attempts": 0}, runner=runner_name())
                s.add(row)
            row.result = {"attempts": int(row.result.get("attempts", 0)) + 1}
            row.finished_at = clock.now()
            row.error = f"{type(exc).__name__}: {exc}"[:2000]
    except IntegrityError:
        pass  # another scheduler recorded the same failure at the same moment


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


def run_due(engine: Engine, schedules: Mapping[str, Schedule] | None = None, *,
            now: datetime | None = None, use_leader_lock: bool = True) -> list[str]:
    """One scheduler tick: run every schedule that is due now. Returns operator lines."""
    schedules = load_schedules() if schedules is None else schedules
    lock = leader(engine) if use_leader_lock else _always()
    with lock as is_leader:
        if not is_leader:
            log.info("another scheduler holds the leader lock; skipping this tick")
            return []
        now = now or clock.now()
        lines = []
        for s in schedules.values():
            if s.cron is None:
                line = run_schedule(engine, s, None, now)
            else:
                period = s.due_period(now)
                line = run_schedule(engine, s, period, now) if period else None
            if line:
                lines.append(line)
        return lines


@contextmanager
def _always() -> Iterator[bool]:
    yield True


def run_now(engine: Engine, schedule: Schedule, now: datetime | None = None) -> str:
    """``qms jobs run NAME``: run the schedule for the current period now (or its latest due
    period), still at most once per period."""
    now = now or clock.now()
    period = None
    if schedule.period is not None:
        period = schedule.due_period(now) or period_key(schedule.period, now)
        if is_done(engine, schedule.name, period):
            return f"{schedule.name} [{period}]: already done for this period"
    return run_schedule(engine, schedule, period, now) or \
        f"{schedule.name} [{period or 'now'}]: nothing to do"


def serve(engine: Engine, schedules: Mapping[str, Schedule], *, tick_seconds: int = 60) -> None:
    """``qms scheduler``: APScheduler 3 (BlockingScheduler, in-memory job store) as the clock
    only. One tick a minute runs :func:`run_due`; the first tick runs at start (catch-up)."""
    from apscheduler.schedulers.blocking import BlockingScheduler
    from apscheduler.triggers.interval import IntervalTrigger

    def tick() -> None:
        try:
            for line in run_due(engine, schedules):
                log.info("%s", line)
        except Exception:  # noqa: BLE001 - the clock keeps ticking; the next tick retries
            log.exception("scheduler tick failed")

    sched = BlockingScheduler(timezone=UTC)
    sched.add_job(tick, IntervalTrigger(seconds=tick_seconds, timezone=UTC), id="tick",
                  coalesce=True, max_instances=1, misfire_grace_time=tick_seconds,
                  next_run_time=datetime.now(UTC))
    try:
        sched.start()
    except (KeyboardInterrupt, SystemExit):
        pass


# ------------------------------------------------------------------ the jobs


def _start_record(ctx: JobContext, session: Session, workflow: str,
                  data: dict[str, Any]) -> Record:
    """Create a record inside the caller's unit (the same transaction as the claim), as the
    system user, the reason naming the job."""
    return ctx.engine.start_as_system(session, workflow, data, reason=ctx.reason)


def _active_grants(session: Session, now: datetime) -> list[dict[str, str]]:
    rows = session.execute(
        select(User.username, RoleGrant.role).join(User, User.id == RoleGrant.user_id)
        .where(RoleGrant.revoked_at.is_(None),
               or_(RoleGrant.expires_at.is_(None), RoleGrant.expires_at > now),
               User.active.is_(True), User.is_system.is_(False))
        .order_by(User.username, RoleGrant.role)).all()
    return [{"user": u, "role": r} for u, r in rows]


def access_review(ctx: JobContext) -> dict[str, Any]:
    """Open one access_review record per configured system and period (R-A11-12-3,
    R-P11-10d-1), listing every active grant for attestation; for this QMS
    (``QMS_SYSTEM_NAME``) the real role grants, for other systems an empty list that the
    system owner fills from the system's export. The review task goes to the system owner
    named in the schedule (else to the system_owner role)."""
    opened, skipped = [], []
    for system in ctx.params.get("systems", []):
        name = system["name"]

        def work(session: Session, system: Mapping[str, Any] = system, name: str = name) -> str:
            ours = name.strip().lower() == ctx.engine.system_name.lower()
            grants = _active_grants(session, ctx.now) if ours else []
            scope = (f"Active role grants of {name} at {ctx.now:%Y-%m-%d %H:%M} UTC, listed by "
                     f"the scheduler ({ctx.reason})." if ours else
                     f"Export the user list of {name} and enter every grant below "
                     f"(opened by {ctx.reason}).")
            rec = _start_record(ctx, session, "access_review", {
                "title": f"{name} user access review {ctx.period}", "system": name,
                "period": ctx.period[:20], "scope": scope, "grants": grants})
            owner = identity.find_user(session, system["owner"]) if system.get("owner") else None
            if owner is not None and owner.active and \
                    "system_owner" in identity.roles_of(session, owner, ctx.now):
                task_id = session.execute(select(Task.id).where(
                    Task.record_id == rec.id, Task.status == TaskStatus.OPEN)).scalars().first()
                if task_id is not None:
                    session.execute(update(Task).where(Task.id == task_id)
                                    .values(assignee_id=owner.id))
                    audit.record_event(session, rec, at=ctx.now, actor=ctx.system(session),
                                       action="task_assigned",
                                       changes={"task": {"task": task_id,
                                                         "assignee": [None, owner.username]}},
                                       reason=ctx.reason)
                ctx.outbox(session, kind="review_opened", record_id=rec.id, user_id=owner.id,
                           subject=f"{rec.number}: user access review of {name} to perform",
                           body=f"The {ctx.period} access review of {name} lists "
                                f"{len(grants)} grant(s) to attest.")
            elif system.get("owner"):
                log.warning("%s: %s is not an active system owner; the review is open to the "
                            "system_owner role", rec.number, system["owner"])
            return rec.number

        done, number = ctx.once_for_period(name, work)
        (opened if done else skipped).append(number or name)
    return {"opened": opened, "already open": skipped}


def _check_access_review(params: Mapping[str, Any]) -> list[tuple[tuple, str]]:
    systems = params.get("systems")
    if not isinstance(systems, list) or not systems:
        return [((), "params.systems must list the systems to review, e.g. "
                     "- {name: QMS, owner: sam}")]
    out, seen = [], set()
    for i, s in enumerate(systems):
        if not isinstance(s, dict) or not isinstance(s.get("name"), str) or not s["name"].strip():
            out.append((("systems", i), "each system needs a name"))
            continue
        if s["name"].lower() in seen:
            out.append((("systems", i), f"system {s['name']!r} is listed twice"))
        seen.add(s["name"].lower())
        for k in sorted(set(s) - {"name", "owner"}):
            out.append((("systems", i, k), f"unknown key {k!r} (allowed: name, owner)"))
    return out


def sla_sweep(ctx: JobContext) -> dict[str, Any]:
    """Reminders before a task's due date and escalation when it is overdue, once per task
    and kind (claims ``sla:due_soon`` / ``sla:overdue`` keyed by task). The escalation goes
    to the workflow's process-owner role (the supervising role) unless params.escalate_to
    names one (R-A11-12-3 timeliness; KPIs count overdue work)."""
    remind = parse_duration(str(ctx.params.get("remind_before", "2d")))
    out = {"reminders": 0, "escalations": 0}
    for kind, horizon in (("due_soon", ctx.now + remind), ("overdue", ctx.now)):
        job = f"sla:{kind}"
        claimed = exists().where(JobRun.job == job, JobRun.period_key ==
                                 literal("task:") + cast(Task.id, String))
        cond = [Task.status == TaskStatus.OPEN, Task.due_at.is_not(None),
                Task.due_at <= horizon, ~claimed]
        if kind == "due_soon":
            cond.append(Task.due_at > ctx.now)
        with ctx.engine.reader() as s:
            tasks = s.execute(select(Task.id, Task.role, Task.assignee_id, Task.due_at,
                                     Record.id, Record.number, Record.title,
                                     Record.definition_hash)
                              .join(Record, Record.id == Task.record_id).where(and_(*cond))
                              .order_by(Task.due_at).limit(500)).all()
        for tid, role, assignee, due, rid, number, title, dhash in tasks:
            def work(session: Session, tid: int = tid, role: str | None = role,
                     assignee: int | None = assignee, due: datetime = due, rid: int = rid,
                     number: str = number, title: str = title, dhash: str = dhash,
                     kind: str = kind) -> None:
                when = f"{due:%Y-%m-%d %H:%M} UTC"
                if kind == "due_soon":
                    ctx.outbox(session, kind="due_soon", record_id=rid, role=None if assignee
                               else role, user_id=assignee,
                               subject=f"{number}: due {when}", body=f"{title}: your task is "
                               f"due on {when}.")
                    return
                ctx.outbox(session, kind="overdue", record_id=rid,
                           role=None if assignee else role, user_id=assignee,
                           subject=f"{number}: overdue since {when}",
                           body=f"{title}: the task was due on {when}.")
                d = ctx.engine.registry.by_hash(session, dhash).definition
                boss = ctx.params.get("escalate_to") or d.process_owner
                if boss:
                    ctx.outbox(session, kind="escalation", record_id=rid, role=boss,
                               subject=f"Escalation: {number} overdue since {when}",
                               body=f"{title}: the task for {role or 'its assignee'} was due "
                                    f"on {when} and is still open.")

            done, _ = ctx.once(job, f"task:{tid}", work)
            if done:
                out["reminders" if kind == "due_soon" else "escalations"] += 1
    return out


def _check_sla(params: Mapping[str, Any]) -> list[tuple[tuple, str]]:
    out = []
    if "remind_before" in params:
        try:
            parse_duration(str(params["remind_before"]))
        except ValueError as exc:
            out.append((("remind_before",), str(exc)))
    if "escalate_to" in params and not re.match(r"^[a-z][a-z0-9_]{0,39}$",
                                                str(params["escalate_to"])):
        out.append((("escalate_to",), "escalate_to must be a role name"))
    return out


def run_timers(ctx: JobContext) -> dict[str, Any]:
    """Fire due timers (escalations set by the definitions) through the engine, as the system
    user (``Engine.run_due_timers``; each timer in its own transaction)."""
    return {"timers": len(ctx.engine.run_due_timers())}


def capa_effectiveness_due(ctx: JobContext) -> dict[str, Any]:
    """Tell QA and the CAPA owner when a CAPA's effectiveness check falls due, once per CAPA
    and due date (claim ``capa:effectiveness_due``)."""
    today = ctx.now.date().isoformat()
    with ctx.engine.reader() as s:
        rows = s.execute(select(Record.id, Record.number, Record.title, Record.data).where(
            Record.workflow_key == "capa", Record.state == "effectiveness_check",
            Record.closed_at.is_(None))).all()
    notified = []
    for rid, number, title, data in rows:
        due = data.get("effectiveness_due")
        if not due or due > today:
            continue

        def work(session: Session, rid: int = rid, number: str = number, title: str = title,
                 due: str = due, owner: str | None = data.get("owner")) -> None:
            body = f"{title}: the effectiveness check was due on {due}."
            ctx.outbox(session, kind="effectiveness_due", record_id=rid, role="qa",
                       subject=f"{number}: effectiveness check due", body=body)
            user = identity.find_user(session, owner) if owner else None
            if user is not None:
                ctx.outbox(session, kind="effectiveness_due", record_id=rid, user_id=user.id,
                           subject=f"{number}: effectiveness check due", body=body)

        done, _ = ctx.once("capa:effectiveness_due", f"{number}@{due}", work)
        if done:
            notified.append(number)
    return {"notified": notified}


def training_refreshers(ctx: JobContext) -> dict[str, Any]:
    """Open a new training_assignment before a trainee's last completed training on a
    document with a retraining interval expires (R-P11-10i-1): params.documents lists
    ``{document, interval, lead}``; once per trainee, document and expiry date."""
    created = []
    with ctx.engine.reader() as s:
        rows = s.execute(select(Record.data, Record.closed_at, Record.outcome).where(
            Record.workflow_key == "training_assignment")).all()
    for doc in ctx.params.get("documents", []):
        interval = parse_duration(str(doc["interval"]))
        lead = parse_duration(str(doc.get("lead", "30d")))
        last: dict[str, tuple[datetime, str]] = {}
        open_for: set[str] = set()
        for data, closed_at, outcome in rows:
            if data.get("document") != doc["document"] or not data.get("trainee"):
                continue
            if closed_at is None:
                open_for.add(data["trainee"])
            elif outcome == "done" and (data["trainee"] not in last
                                        or closed_at > last[data["trainee"]][0]):
                last[data["trainee"]] = (closed_at, str(data.get("document_version", "")))
        for trainee, (done_at, version) in sorted(last.items()):
            expires = done_at + interval
            if trainee in open_for or ctx.now < expires - lead:
                continue

            def work(session: Session, trainee: str = trainee, version: str = version,
                     expires: datetime = expires, document: str = doc["document"]) -> str | None:
                user = identity.find_user(session, trainee)
                if user is None or not user.active:
                    return None
                due: date = max(expires.date(), ctx.now.date())
                rec = _start_record(ctx, session, "training_assignment", {
                    "title": f"Refresher training: {document}", "document": document,
                    "document_version": version, "trainee": trainee,
                    "due_date": due.isoformat()})
                return rec.number

            key = f"{doc['document']}/{trainee}@{expires:%Y-%m-%d}"
            done, number = ctx.once("training:refresher", key, work)
            if done and number:
                created.append(number)
    return {"assigned": created}


def _check_training(params: Mapping[str, Any]) -> list[tuple[tuple, str]]:
    docs = params.get("documents")
    if not isinstance(docs, list):
        return [((), "params.documents must list {document, interval, lead}")]
    out = []
    for i, d in enumerate(docs):
        if not isinstance(d, dict) or not d.get("document"):
            out.append((("documents", i), "each entry needs a document"))
            continue
        for k in ("interval", "lead"):
            if k in d or k == "interval":
                try:
                    parse_duration(str(d.get(k)))
                except ValueError as exc:
                    out.append((("documents", i, k), f"{k}: {exc}"))
    return out


def period_start(period: str, at: datetime) -> datetime:
    """The start (UTC) of the period containing ``at``."""
    at = at.astimezone(UTC)
    if period == "minute":
        return at.replace(second=0, microsecond=0)
    day = at.replace(minute=0, second=0, microsecond=0)
    if period == "hour":
        return day
    day = day.replace(hour=0)
    if period == "day":
        return day
    if period == "week":
        return day - timedelta(days=at.weekday())
    if period == "month":
        return day.replace(day=1)
    if period == "quarter":
        return day.replace(month=(at.month - 1) // 3 * 3 + 1, day=1)
    if period == "year":
        return day.replace(month=1, day=1)
    raise ValueError(f"unknown period {period!r}")


#: system audit-trail actions listed for attestation in an audit-trail review (workflow/auth.py,
#: identity.py, registry.py): the security-relevant events outside any record
SECURITY_ACTIONS = ("login_failed", "signature_failed", "account_locked", "account_unlocked",
                    "password_reset", "role_granted", "role_revoked", "user_created",
                    "user_deactivated", "totp_reset", "definition_published",
                    "api_token_created", "api_token_revoked")


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value is not None else None


def audit_trail_events(engine: Engine, session: Session, start: datetime,
                       end: datetime) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """What an audit-trail review lists for the window [start, end): one row per critical
    record (its definition version has ``risk: high``) with audit events in the window, and
    one row per security action of the system audit trail."""
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
        if engine.registry.by_hash(session, dhash).definition.risk != "high":
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

    def work(session: Session) -> str | None:
        end = period_start(ctx.schedule.period, ctx.now)
        # since the last review (open or done; a cancelled one reviewed nothing)
        ends = [datetime.fromisoformat(d["window_to"]) for d, in session.execute(
            select(Record.data).where(Record.workflow_key == "audit_trail_review",
                                      or_(Record.outcome.is_(None), Record.outcome == "done")))
            if d.get("window_to")]
        start = max(ends) if ends else period_start(ctx.schedule.period,
                                                    end - timedelta(microseconds=1))
        if start >= end:
            return None
        records, security = audit_trail_events(ctx.engine, session, start, end)
        failures = sum(s["events"] for s in security if s["action"] == "signature_failed")
        window = f"{start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC"
        rec = _start_record(ctx, session, "audit_trail_review", {
            "title": f"Audit trail review {ctx.period} ({window})"[:200],
            "period": ctx.period[:20], "window_from": start, "window_to": end,
            "scope": f"Audit events from {window} of the records of high-risk workflows, and "
                     f"the security events of the system audit trail, listed by {ctx.reason}.",
            "records": records, "records_listed": len(records), "security_events": security,
            "signature_failures": failures})
        return rec.number

    done, number = ctx.once_for_period("review", work)
    return {"opened": [number] if done and number else []}


def definition_review(ctx: JobContext) -> dict[str, Any]:
    """Open one definition_review per published workflow definition and period, the task
    going to the definition's process-owner role (R-A11-11-1)."""
    from workflow.db.models import DefinitionVersion

    exclude = set(ctx.params.get("exclude", []))
    with ctx.engine.reader() as s:
        keys = [k for k in s.execute(select(DefinitionVersion.key).distinct()
                                     .order_by(DefinitionVersion.key)).scalars()
                if k not in exclude]
    opened, skipped = [], []
    for key in keys:
        def work(session: Session, key: str = key) -> str:
            compiled = ctx.engine.registry.latest(session, key)
            d = compiled.definition
            row = session.get(DefinitionVersion, compiled.id)
            total, still_open = session.execute(
                select(sqlfunc.count(Record.id),
                       sqlfunc.count(Record.id).filter(Record.closed_at.is_(None)))
                .where(Record.workflow_key == key)).one()
            review = ctx.engine.registry.latest(session, "definition_review").definition
            owner = d.process_owner if d.process_owner in review.roles else "process_owner"
            if d.process_owner and owner != d.process_owner:
                log.warning("definition_review: %s's process owner %r is not a role of the "
                            "definition_review workflow; the review goes to process_owner",
                            key, d.process_owner)
            rec = _start_record(ctx, session, "definition_review", {
                "title": f"Periodic review of {d.title} ({key} v{compiled.version}) "
                         f"{ctx.period}"[:200],
                "period": ctx.period[:20], "definition": key, "definition_title": d.title,
                "version": compiled.version, "content_hash": row.content_hash if row else None,
                "published_at": row.published_at if row else None, "owner_role": owner,
                "records_total": int(total), "records_open": int(still_open)})
            if owner != "process_owner":
                task_id = session.execute(select(Task.id).where(
                    Task.record_id == rec.id, Task.status == TaskStatus.OPEN,
                    Task.role == "process_owner")).scalars().first()
                if task_id is not None:
                    session.execute(update(Task).where(Task.id == task_id).values(role=owner))
                    audit.record_event(session, rec, at=ctx.now, actor=ctx.system(session),
                                       action="task_assigned",
                                       changes={"task": {"task": task_id,
                                                         "role": ["process_owner", owner]}},
                                       reason=ctx.reason)
            ctx.outbox(session, kind="review_opened", record_id=rec.id, role=owner,
                       subject=f"{rec.number}: periodic review of {d.title} to perform",
                       body=f"The {ctx.period} review of the workflow definition {key} "
                            f"(version {compiled.version}): is it still fit for use?")
            return rec.number

        done, number = ctx.once_for_period(key, work)
        (opened if done else skipped).append(number or key)
    return {"opened": opened, "already open": skipped}


def _check_definition_review(params: Mapping[str, Any]) -> list[tuple[tuple, str]]:
    exclude = params.get("exclude", [])
    if not isinstance(exclude, list) or not all(isinstance(k, str) for k in exclude):
        return [(("exclude",), "exclude must list definition keys")]
    return []


def password_expiry_reminders(ctx: JobContext) -> dict[str, Any]:
    """Remind users whose password expires within params.days (default 14), once per user
    and expiry date (R-P11-300b-1)."""
    from workflow.identity.policy import Policy

    policy = Policy.from_env()
    if not policy.max_age_days:
        return {}
    days = int(ctx.params.get("days", 14))
    age = timedelta(days=policy.max_age_days)
    # changed after (now - age) so not yet expired; before (now + days - age): expires soon
    with ctx.engine.reader() as s:
        users = s.execute(select(User.id, User.username, User.password_changed_at).where(
            User.active.is_(True), User.is_system.is_(False), User.password_hash.is_not(None),
            User.must_change_password.is_(False), User.password_changed_at.is_not(None),
            User.password_changed_at > ctx.now - age,
            User.password_changed_at <= ctx.now + timedelta(days=days) - age)
            .order_by(User.username)).all()
    reminded = []
    for uid, username, changed in users:
        expires = changed + age

        def work(session: Session, uid: int = uid, expires: datetime = expires) -> None:
            left = max(0, (expires - ctx.now).days)
            ctx.outbox(session, kind="password_expiring", user_id=uid,
                       subject=f"Your password expires on {expires:%Y-%m-%d}",
                       body=f"Your QMS password expires on {expires:%Y-%m-%d %H:%M} UTC "
                            f"(in {left} day{'' if left == 1 else 's'}).")

        done, _ = ctx.once("password:expiring", f"{username}@{expires:%Y-%m-%d}", work)
        if done:
            reminded.append(username)
    return {"reminded": reminded}


def _check_password_expiry(params: Mapping[str, Any]) -> list[tuple[tuple, str]]:
    days = params.get("days", 14)
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 90:
        return [(("days",), "days must be a whole number of days from 1 to 90")]
    return []


def dispatch_notifications(ctx: JobContext) -> dict[str, Any]:
    """Deliver pending outbox messages (notifications/): in-app, e-mail, digests."""
    from notifications.dispatcher import dispatch

    return dispatch(ctx.engine, now=ctx.now).summary()


@dataclass(frozen=True)
class Job:
    name: str
    fn: Callable[[JobContext], dict[str, Any] | None]
    idempotent: bool = False  # may run on every tick (``every: minute``)
    check: Callable[[Mapping[str, Any]], list[tuple[tuple, str]]] | None = None

    @property
    def summary(self) -> str:
        return (self.fn.__doc__ or "").strip().splitlines()[0]


#: the jobs a schedule may name, by their explicit names
JOBS: dict[str, Job] = {
    "access_review": Job("access_review", access_review, check=_check_access_review),
    "sla_sweep": Job("sla_sweep", sla_sweep, idempotent=True, check=_check_sla),
    "run_timers": Job("run_timers", run_timers, idempotent=True),
    "capa_effectiveness_due": Job("capa_effectiveness_due", capa_effectiveness_due,
                                  idempotent=True),
    "training_refreshers": Job("training_refreshers", training_refreshers, idempotent=True,
                               check=_check_training),
    "dispatch_notifications": Job("dispatch_notifications", dispatch_notifications,
                                  idempotent=True),
    "audit_trail_review": Job("audit_trail_review", audit_trail_review),
    "definition_review": Job("definition_review", definition_review,
                             check=_check_definition_review),
    "password_expiry_reminders": Job("password_expiry_reminders", password_expiry_reminders,
                                     idempotent=True, check=_check_password_expiry),
}


def last_runs(engine: Engine) -> dict[str, JobRun]:
    """The latest run row per schedule name (for ``qms jobs list``)."""
    with engine.reader() as s:
        sub = select(JobRun.job, sqlfunc.max(JobRun.id).label("mid")).group_by(JobRun.job) \
            .subquery()
        rows = s.execute(select(JobRun).join(sub, JobRun.id == sub.c.mid)).scalars().all()
        for r in rows:
            s.expunge(r)
    return {r.job: r for r in rows}


# ------------------------------------------------------------------ monthly KPI report


def kpi_report(ctx: JobContext) -> dict[str, Any]:
    """Render the previous month's KPI table and queue it to the quality leaders, once per
    month (the period's claim row is written with the message; docs/kpis.md)."""
    from workflow.kpi.calculator import Kpi, Period, add_months, month_start, render_report

    end = month_start(ctx.now)
    period = Period(add_months(end, -1), end)
    role = str(ctx.params.get("role", "qa"))

    def work(session: Session) -> dict[str, Any]:
        k = Kpi(session, ctx.engine.registry, ctx.system(session).username, period,
                as_of=min(ctx.now, period.end))
        text, html = render_report(k)
        ctx.outbox(session, kind="kpi_report", role=role,
                   subject=f"Quality KPI report {period.label}", body=text)
        return {"month": period.start.strftime("%Y-%m"), "to": role, "html": html}

    done, result = ctx.once(ctx.schedule.name, ctx.period, work)
    return {"month": result["month"], "to": role} if done else {}


def _check_kpi_report(params: Mapping[str, Any]) -> list[tuple[tuple, str]]:
    if "role" in params and not re.match(r"^[a-z][a-z0-9_]{0,39}$", str(params["role"])):
        return [(("role",), "role must be a role name, e.g. qa")]
    return []


JOBS["kpi_report"] = Job("kpi_report", kpi_report, check=_check_kpi_report)
