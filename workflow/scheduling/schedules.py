"""Schedules are configuration: ``definitions/schedules/schedules.yaml`` (or the file named by
``QMS_SCHEDULES_FILE``), validated like the workflow definitions: every problem is reported as
``file:line: message`` (:class:`ScheduleError`).

A schedule names a job of the registry it is validated against (the jobs are passed in; see
:func:`workflow.scheduling.jobs.default_jobs`) and says when it runs: a cron expression and the
period it runs once in, or ``every: minute`` for jobs that are safe to run on every tick.

**Misfires catch up once**: on each tick a schedule is due for the period of its most recent
cron occurrence at or before now (looking back two periods). A scheduler that was down runs
the missed period once on restart, never once per missed tick; older missed occurrences are
not replayed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from apscheduler.triggers.cron import CronTrigger

from workflow import config
from workflow.errors import Problem, WorkflowError
from workflow.queries.selection import RecordSelector, check_selector
from workflow.spec.load import DEFAULT_DEFINITIONS_DIR
from workflow.spec.source import compose, line_of

DEFAULT_SCHEDULES_FILE = DEFAULT_DEFINITIONS_DIR / "schedules" / "schedules.yaml"
PERIODS = ("minute", "hour", "day", "week", "month", "quarter", "half_year", "year")
_LOOKBACK = {"minute": timedelta(minutes=2), "hour": timedelta(hours=2),
             "day": timedelta(days=2), "week": timedelta(weeks=2),
             "month": timedelta(days=62), "quarter": timedelta(days=184),
             "half_year": timedelta(days=366),
             "year": timedelta(days=732)}
_NAME = re.compile(r"^[a-z][a-z0-9_]{1,59}$")

#: checks a job's ``params``: (path below params, message) per problem
ParamsCheck = Callable[[Mapping[str, Any]], list[tuple[tuple, str]]]


class JobTerms(Protocol):
    """What validating a schedule needs to know of a job (:class:`~workflow.scheduling.
    context.Job` has it)."""

    @property
    def idempotent(self) -> bool: ...

    @property
    def check(self) -> ParamsCheck | None: ...

    @property
    def per_record(self) -> bool: ...


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
    ``2026-03-02``, ``2026-03-02T09``, ``2026-03-02T09:05``, ``2026-H1``, ``2026``."""
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
    if period == "half_year":
        return f"{at.year}-H{(at.month - 1) // 6 + 1}"
    if period == "year":
        return f"{at.year}"
    raise ValueError(f"unknown period {period!r}")


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
    if period == "half_year":
        return day.replace(month=(at.month - 1) // 6 * 6 + 1, day=1)
    if period == "year":
        return day.replace(month=1, day=1)
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
    #: ``for_each_record``: the job runs once per selected record and period
    records: RecordSelector | None = None

    def trigger(self) -> CronTrigger:
        return CronTrigger.from_crontab(self.cron, timezone=UTC)

    def due_period(self, now: datetime, not_before: datetime | None = None) -> str | None:
        """The period of the latest cron occurrence at or before ``now`` (looking back two
        periods), or None. Every tick of that period gives the same key: catch-up runs once.
        An occurrence before ``not_before`` (the go-live, workflow/scheduling/golive.py) is
        not due: periods before the installation are not back-filled."""
        if self.cron is None or self.period is None:
            return None
        trig = self.trigger()
        t = trig.get_next_fire_time(None, now - _LOOKBACK[self.period])
        last = None
        while t is not None and t <= now:
            last = t
            t = trig.get_next_fire_time(t, t + timedelta(microseconds=1))
        if last is None or (not_before is not None and last < not_before):
            return None
        return period_key(self.period, last)

    def describe(self) -> str:
        when = f"cron '{self.cron}' once per {self.period}" if self.cron else "every minute"
        each = f", for {self.records.describe()}" if self.records else ""
        return f"{self.name}: job {self.job}, {when}{each}"


def schedules_file(settings: config.Settings | None = None) -> Path:
    """QMS_SCHEDULES_FILE, else the shipped definitions/schedules/schedules.yaml."""
    s = settings if settings is not None else config.settings()
    return s.schedules_file or DEFAULT_SCHEDULES_FILE


def load_schedules(path: str | Path | None = None, *,
                   jobs: Mapping[str, JobTerms]) -> dict[str, Schedule]:
    """Read and validate the schedules file against ``jobs`` (the job registry); raise
    :class:`ScheduleError` listing every problem as ``file:line: message``."""
    path = Path(path) if path else schedules_file()
    origin = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScheduleError([Problem(origin, 1, f"cannot read the file: {exc}")]) from None
    return load_schedules_text(text, origin, jobs=jobs)


def load_schedules_text(text: str, origin: str = "<string>", *,
                        jobs: Mapping[str, JobTerms]) -> dict[str, Schedule]:
    doc, lines, problems = compose(text, origin)
    if doc is None:
        raise ScheduleError(problems)

    def problem(path: tuple, message: str) -> None:
        problems.append(Problem(origin, line_of(lines, path), message))

    out: dict[str, Schedule] = {}
    if not isinstance(doc, dict) or set(doc) - {"schedules"} or \
            not isinstance(doc.get("schedules"), dict):
        problem((), "the file must be a mapping with one key, 'schedules', mapping each "
                    "schedule name to its job, cron and period")
        raise ScheduleError(problems)
    allowed = {"job", "cron", "period", "every", "params", "description", "enabled",
               "for_each_record"}
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
        if job not in jobs:
            problem((*at, "job") if "job" in entry else at,
                    f"unknown job {job!r}; known jobs: {', '.join(sorted(jobs))}")
        cron, period, every = entry.get("cron"), entry.get("period"), entry.get("every")
        if every is not None:
            if every != "minute":
                problem((*at, "every"), "every: takes only 'minute' (use cron: otherwise)")
            if cron is not None or period is not None:
                problem((*at, "every"), "give either 'every: minute' or 'cron' with 'period', "
                                        "not both")
            elif job in jobs and not jobs[job].idempotent:
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
        elif job in jobs:
            check = jobs[job].check
            if check is not None:
                for sub, message in check(params):
                    problem((*at, "params", *sub), message)
        selector = None
        if "for_each_record" in entry:
            selector, selector_problems = check_selector(entry["for_each_record"])
            for sub, message in selector_problems:
                problem((*at, "for_each_record", *sub), message)
            if isinstance(job, str) and job in jobs and not jobs[job].per_record:
                problem((*at, "for_each_record"), f"job {job!r} does not run per record")
            if every is not None:
                problem((*at, "for_each_record"), "a job run per record runs once per period: "
                                                  "give it a cron and a period")
        if entry.get("enabled", True) is False:
            continue
        out[name] = Schedule(name, str(job), cron if every is None else None,
                             period if every is None else None, params,
                             str(entry.get("description", "")), origin, line_of(lines, at),
                             records=selector)
    if problems:
        raise ScheduleError(problems)
    return out
