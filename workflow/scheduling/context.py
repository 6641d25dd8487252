"""What a scheduled job is (:class:`Job`) and what it gets when it runs (:class:`JobContext`).

**Attributable** (R-P11-10h-1): scheduled actions act as the system user and every audit
event they cause names the job and period in its reason (:attr:`JobContext.reason`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from workflow import outbox
from workflow.db.models import Record, User
from workflow.engine.core import Engine
from workflow.identity import users as identity
from workflow.queries.selection import RecordItem
from workflow.scheduling import claims
from workflow.scheduling.schedules import ParamsCheck, Schedule


@dataclass
class JobContext:
    """What a job gets: the engine, its schedule, the period and time of the run."""

    engine: Engine
    schedule: Schedule
    period: str
    now: datetime
    runner: str = field(default_factory=claims.runner_name)
    marked: bool = False  # the job wrote its period's row itself
    #: the record this run is for (a schedule with ``for_each_record``), else None
    record: RecordItem | None = None

    @property
    def uow(self) -> Engine:
        """What opens write units and read sessions (for jobs outside the engine, e.g.
        notifications/): the engine today."""
        return self.engine

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
        done, result = claims.once(self.engine, job, key, self.now, self.runner, work)
        if done and (job, key) == (self.schedule.name, self.period):
            self.marked = True
        return done, result

    def once_for_period(self, item: str, work: Callable[[Session], Any]) -> tuple[bool, Any]:
        """``once`` for one item of this schedule's period (e.g. one system's review)."""
        return self.once(self.schedule.name, f"{self.period}/{item}", work)

    def once_for_record(self, work: Callable[[Session], Any]) -> tuple[bool, Any]:
        """``once`` for this run's record and period (``for_each_record``): the claim key is
        the period and the record number, so each record is done once per period however
        many schedulers run."""
        assert self.record is not None, "once_for_record needs a schedule with for_each_record"
        return self.once(self.schedule.name, f"{self.period}/{self.record.number}", work)

    def system(self, session: Session) -> User:
        return identity.system_user(session)

    def start_record(self, session: Session, workflow: str, data: dict[str, Any]) -> Record:
        """Create a record inside the caller's unit (the same transaction as the claim), as
        the system user, the reason naming the job."""
        return self.engine.start_as_system(session, workflow, data, reason=self.reason)

    def outbox(self, session: Session, *, kind: str, subject: str, body: str = "",
               record_id: int | None = None, role: str | None = None,
               user_id: int | None = None, details: dict[str, Any] | None = None) -> None:
        """Queue a message (delivered after commit by notifications/); ``details``: what it
        is about (``outbox.details``)."""
        outbox.enqueue(session, at=self.now, record_id=record_id, recipient_role=role,
                       recipient_user_id=user_id, subject=subject, body=body, kind=kind,
                       details=details)


@dataclass(frozen=True)
class Job:
    """A job a schedule may name: its function, whether it may run on every tick, and the
    check of its ``params`` (run when the schedules file is loaded)."""

    name: str
    fn: Callable[[JobContext], dict[str, Any] | None]
    idempotent: bool = False  # may run on every tick (``every: minute``)
    check: ParamsCheck | None = None
    per_record: bool = False  # may run once per record of a ``for_each_record`` schedule

    @property
    def summary(self) -> str:
        return (self.fn.__doc__ or "").strip().splitlines()[0]


#: the job registry: jobs by the names schedules use (built by scheduling.jobs.default_jobs,
#: passed to the loader and the runner)
Jobs = Mapping[str, Job]
