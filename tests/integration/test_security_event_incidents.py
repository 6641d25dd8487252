"""Security incidents opened from the product's own security events (scheduled job
security_event_incidents): lockout storms, a failed verify-audit and repeated signature
failures each open one draft incident for ISMS per cause and period, as the system user,
also with schedulers racing on the same database (SQLite here; PostgreSQL when
QMS_TEST_DATABASE_URL points at it). Time travels with workflow.clock; nothing sleeps."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from tests.conftest import T0
from workflow import clock
from workflow.audit import integrity
from workflow.audit import trail as audit
from workflow.audit.trail import ChainProblem, VerifyReport
from workflow.db.models import JobRun, Record, Task, TaskStatus
from workflow.identity import users as identity
from workflow.scheduling.jobs import default_jobs
from workflow.scheduling.jobs import verify_audit as verify_job
from workflow.scheduling.schedules import load_schedules_text
from workflow.scheduling.service import run_due

JOBS = default_jobs()
SCHEDULE = """
schedules:
  security_event_incidents:
    job: security_event_incidents
    cron: "2 * * * *"
    period: hour
"""


def schedules():
    return load_schedules_text(SCHEDULE, jobs=JOBS)


def security_events(engine, action, n, start, user="mallory"):
    """``n`` system-chain events ``action`` one minute apart from ``start``."""
    with engine.unit() as s:
        for i in range(n):
            audit.system_event(s, at=start + timedelta(minutes=i), actor=None, action=action,
                               changes={"username": f"{user}{i % 3}"})


def incidents(engine):
    with engine.reader() as s:
        return s.execute(select(Record).where(Record.workflow_key == "security_incident")
                         .order_by(Record.id)).scalars().all()


def tick(engine, at):
    clock.set(at)
    return run_due(engine, schedules(), jobs=JOBS, use_leader_lock=False)


def test_lockout_storm_opens_one_draft_incident_for_isms_per_period(engine, make_user):
    """R-INC-20 R-INC-23 R-A11-13-2 R-ISO-525: five account lockouts in an hour open one
    incident in ISMS's triage, initiated by the system user, the reason naming the job and
    the description listing the events; running again, or in the next hour without a storm,
    opens nothing; four lockouts are no storm."""
    make_user("ivy", "isms", "employee")
    security_events(engine, "account_locked", 5, T0 + timedelta(minutes=10))
    lines = tick(engine, T0 + timedelta(hours=1, minutes=2))
    (inc,) = incidents(engine)
    assert any(inc.number in line for line in lines), lines
    assert inc.state == "reported" and inc.title.startswith("Lockout storm: 5 account lockouts")
    assert "cause lockout_storm" in inc.data["description"]
    assert inc.data["description"].count("account_locked mallory") == 5
    assert inc.data["occurred_at"].startswith("2026-03-02T09:10:00")
    with engine.reader() as s:
        assert inc.created_by_id == identity.system_user(s).id
        task = s.execute(select(Task).where(Task.record_id == inc.id)).scalar_one()
        assert (task.role, task.status) == ("isms", TaskStatus.OPEN)
    # the same period again (another tick, and a catch-up later in the hour): nothing new
    assert tick(engine, T0 + timedelta(hours=1, minutes=3)) == []
    assert tick(engine, T0 + timedelta(hours=1, minutes=40)) == []
    # the next hour has no storm of its own
    tick(engine, T0 + timedelta(hours=2, minutes=2))
    assert len(incidents(engine)) == 1
    # four lockouts in the following hour are below the threshold
    security_events(engine, "account_locked", 4, T0 + timedelta(hours=2, minutes=5))
    tick(engine, T0 + timedelta(hours=3, minutes=2))
    assert len(incidents(engine)) == 1


def test_thresholds_come_from_the_settings(engine, monkeypatch):
    """R-INC-22 R-INC-24: repeated signature failures open an incident at the configured
    threshold (QMS_INCIDENT_SIGNATURE_FAILURES); 0 stops watching a cause."""
    security_events(engine, "signature_failed", 3, T0 + timedelta(minutes=5))
    security_events(engine, "account_locked", 6, T0 + timedelta(minutes=5))
    monkeypatch.setenv("QMS_INCIDENT_SIGNATURE_FAILURES", "3")
    monkeypatch.setenv("QMS_INCIDENT_LOCKOUTS", "0")
    tick(engine, T0 + timedelta(hours=1, minutes=2))
    (inc,) = incidents(engine)
    assert inc.title.startswith("Repeated signature failures: 3 failed signatures")
    monkeypatch.setenv("QMS_INCIDENT_SIGNATURE_FAILURES", "-1")
    from workflow.config import ConfigError, settings
    with pytest.raises(ConfigError, match="QMS_INCIDENT_SIGNATURE_FAILURES"):
        settings()


def test_failed_verify_audit_opens_an_incident(engine, monkeypatch):
    """R-INC-21 R-A11-13-2: a verification that finds a problem (its run failed, its
    integrity_check_failed security event on the system chain) opens one incident naming the
    run and its first problem."""
    clock.set(T0 + timedelta(minutes=20))
    broken = VerifyReport(chains=3, events=10, problems=[ChainProblem(
        "record DEV-2026-0001", 4, 17, "hash does not match the event's content")])
    monkeypatch.setattr(integrity, "verify_all", lambda *a, **k: broken)
    run_id, report = verify_job.verify_now(engine, "test-runner", "test")
    assert not report.ok
    tick(engine, T0 + timedelta(hours=1, minutes=2))
    (inc,) = incidents(engine)
    assert inc.title.startswith("Audit-trail verification failed (1 run(s))")
    assert f"verify-audit run #{run_id}: 1 problem(s)" in inc.data["description"]
    assert "hash does not match" in inc.data["description"]


def race(n, action):
    barrier = threading.Barrier(n)

    def run(i):
        barrier.wait(timeout=30)
        return action(i)

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(run, range(n), timeout=120))


@pytest.mark.committed
def test_two_schedulers_racing_open_each_cause_once(committed_engine):
    """R-INC-23: two schedulers ticking at the same moment (threads, real commits, no leader
    lock) open exactly one incident per cause and period: the claim row is written in the
    unit that starts the incident, so the loser rolls back."""
    security_events(committed_engine, "account_locked", 5, T0 + timedelta(minutes=10))
    security_events(committed_engine, "signature_failed", 10, T0 + timedelta(minutes=10))
    clock.set(T0 + timedelta(hours=1, minutes=2))
    results = race(2, lambda i: run_due(committed_engine, schedules(), jobs=JOBS,
                                        use_leader_lock=False))
    found = incidents(committed_engine)
    assert sorted(i.title.split(":")[0] for i in found) == [
        "Lockout storm", "Repeated signature failures"]
    lines = [line for r in results for line in r]
    for inc in found:  # each reported by exactly one of the racing schedulers
        assert sum(inc.number in line for line in lines) == 1, lines
    with committed_engine.reader() as s:
        keys = sorted(s.execute(select(JobRun.period_key).where(
            JobRun.job == "security_event_incidents")).scalars())
        assert keys == ["2026-03-02T09/lockout_storm", "2026-03-02T09/signature_failures",
                        "2026-03-02T10"]
        assert s.execute(select(func.count()).select_from(Record)).scalar_one() == 2
    # and once more, sequentially: nothing
    assert run_due(committed_engine, schedules(), jobs=JOBS, use_leader_lock=False) == []
