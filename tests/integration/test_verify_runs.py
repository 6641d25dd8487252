"""verify-audit as a background run (workflow/audit/runs.py, workflow/scheduling/jobs/
verify_audit.py): queued requests, the claim, progress and heartbeat, stale runs, the daily
schedule, and the alarm a failed verification raises. SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import text

from workflow import clock
from workflow.audit import integrity, runs
from workflow.db.models import AuditEvent, JobRun, OutboxMessage
from workflow.engine.core import Engine
from workflow.scheduling.jobs import default_jobs
from workflow.scheduling.jobs import verify_audit as job
from workflow.scheduling.schedules import load_schedules_text
from workflow.scheduling.service import run_due

JOBS = default_jobs()
DAILY = """
schedules:
  verify_audit_daily:
    job: verify_audit_daily
    cron: "30 2 * * *"
    period: day
"""


def _run(engine: Engine, run_id: int) -> JobRun:
    with engine.reader() as s:
        row = s.get(JobRun, run_id)
        assert row is not None
        s.expunge(row)
        return row


def _alarms(engine: Engine) -> tuple[list[AuditEvent], list[OutboxMessage]]:
    with engine.reader() as s:
        events = s.query(AuditEvent).filter_by(action=job.FAILED_ACTION).all()
        messages = s.query(OutboxMessage).filter_by(kind=job.FAILED_ACTION).all()
        return events, messages


def test_a_queued_run_is_claimed_once_and_reports_progress(engine, people):
    """R-SEC-40: a request is claimed by one runner only (a second claim finds nothing);
    while it runs, its row carries the events checked of the total and a heartbeat."""
    engine.start("capa", people["emp"], {"title": "t", "description": "d"})
    run_id, queued = runs.request(engine, "web:quinn")
    assert queued and _run(engine, run_id).status == "queued"
    assert runs.request(engine, "web:quentin") == (run_id, False)  # one at a time
    assert runs.claim_next(engine, "runner-a") == run_id
    assert runs.claim_next(engine, "runner-b") is None
    row = _run(engine, run_id)
    assert (row.status, row.runner) == ("running", "runner-a")

    seen: list[tuple[int, int]] = []
    beat = runs.Heartbeat(engine, run_id, every=0)

    def progress(checked: int, total: int) -> None:
        beat(checked, total)
        p = _run(engine, run_id).result["progress"]
        seen.append((p["checked"], p["total"]))

    report = integrity.verify_all(engine, progress=progress)
    total = report.events
    assert seen[0] == (0, total) and seen[-1] == (total, total) and total > 0
    with engine.unit() as s:
        runs.finish(s, run_id, report)
    row = _run(engine, run_id)
    assert row.status == "done" and row.result["ok"] is True
    assert row.result["requested_by"] == "web:quinn"
    with engine.reader() as s:
        assert runs.status(row).as_dict()["percent"] == 100
        assert runs.latest_result(s).id == run_id and runs.active(s) is None


def test_a_run_without_heartbeat_is_stale_and_a_new_request_may_run(engine):
    """R-SEC-40: a run whose process died (no heartbeat for five minutes) is shown stale,
    the scheduler marks it, and a new request is queued instead of waiting for it forever."""
    run_id, _ = runs.request(engine, "web:quinn")
    assert runs.claim_next(engine, "runner-a") == run_id
    assert runs.status(_run(engine, run_id)).status == "running"
    clock.advance(runs.STALE_AFTER + timedelta(seconds=1))
    assert runs.status(_run(engine, run_id)).status == "stale"
    again, queued = runs.request(engine, "web:quinn")
    assert queued and again != run_id
    assert runs.expire_stale(engine) == [run_id]
    row = _run(engine, run_id)
    assert row.status == "stale" and "no heartbeat since" in (row.error or "")


def test_the_daily_schedule_verifies_once_a_day(engine, people):
    """R-SEC-40 R-A11-7-2: verify_audit_daily (02:30 UTC by default in the shipped
    schedules) runs once per day and keeps its result."""
    schedules = load_schedules_text(DAILY, jobs=JOBS)
    clock.set(clock.now().replace(hour=2, minute=31))
    (line,) = run_due(engine, schedules, jobs=JOBS)
    assert line.startswith("verify_audit_daily [") and ": OK (" in line
    assert run_due(engine, schedules, jobs=JOBS) == []  # once per day
    with engine.reader() as s:
        last = runs.latest_result(s)
        assert last is not None and last.result["requested_by"] == \
            "schedule verify_audit_daily"
    clock.advance(timedelta(days=1))
    assert len(run_due(engine, schedules, jobs=JOBS)) == 1


def test_a_failed_command_line_verification_raises_the_alarm(engine, people, monkeypatch):
    """R-SEC-41 R-P11-10e-4: `qms verify-audit`'s path (verify_now): a sealed row changed
    with SQL fails the run, appends integrity_check_failed to the system chain and queues a
    message to QMS_SECURITY_ROLE; a clean database raises nothing."""
    monkeypatch.setenv("QMS_SECURITY_ROLE", "isms")
    _, report = job.verify_now(engine, "host:1", "qms CLI, OS user test")
    assert report.ok and _alarms(engine) == ([], [])
    with engine.unit() as s:
        s.execute(text("UPDATE users SET failed_attempts = 0, locked_at = NULL, "
                       "email = 'x@evil.example' WHERE username = :u"), {"u": people["qa"]})
    run_id, report = job.verify_now(engine, "host:1", "qms CLI, OS user test")
    assert not report.ok
    assert _run(engine, run_id).status == "failed"
    events, messages = _alarms(engine)
    assert len(events) == 1 and events[0].chain == "system"
    assert events[0].changes["run"] == run_id and events[0].changes["requested_by"] == \
        "qms CLI, OS user test"
    assert len(messages) == 1 and messages[0].recipient_role == "isms"


def test_the_alarm_gets_through_when_the_system_chain_itself_is_broken(engine, people):
    """R-SEC-41 R-P11-10e-4: the system chain's head changed with SQL: the security event
    cannot be chained to it (the engine refuses to write a head whose seal is broken), but
    the result is stored and the message to the security role says why the event is
    missing."""
    with engine.unit() as s:
        s.execute(text("UPDATE audit_chains SET seq = seq + 1 WHERE name = 'system'"))
    run_id, report = job.verify_now(engine, "host:1", "test")
    assert not report.ok and _run(engine, run_id).status == "failed"
    events, messages = _alarms(engine)
    assert events == [] and len(messages) == 1
    assert "could not be appended to the system audit trail" in messages[0].body
