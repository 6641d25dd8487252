"""The scheduler: schedules as validated configuration, one access review per system and
period (also with two schedulers at once), catch-up once after downtime, SLA reminders and
escalations once per task, timers, CAPA effectiveness checks, training refreshers, and the
operators' commands (R-A11-12-3, R-P11-10h-1, R-P11-10d-1, R-P11-10i-1, R-A11-12-1).

Time travels with workflow.clock; nothing sleeps.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from tests.factories import sign
from workflow import clock, tasks
from workflow.audit import trail as audit
from workflow.db.models import AuditEvent, JobRun, OutboxMessage, Record, RoleGrant, Task, TaskStatus
from workflow.errors import NotAuthorized
from workflow.identity import users as identity
from workflow.scheduling import claims
from workflow.scheduling.context import Job
from workflow.scheduling.jobs import default_jobs
from workflow.scheduling.schedules import load_schedules_text
from workflow.scheduling.service import run_due

JOBS = default_jobs()

QUARTERLY = """
schedules:
  access_review_quarterly:
    job: access_review
    cron: "0 6 1 1,4,7,10 *"
    period: quarter
    params:
      systems:
        - {name: QMS, owner: sam}
        - {name: LIMS, owner: sam}
"""


@pytest.fixture
def staff(people, make_user):
    return {
        **people,
        "sam": make_user("sam", "system_owner", "employee", full_name="Sam System-Owner"),
        "sonia": make_user("sonia", "system_owner", "employee", full_name="Sonia System-Owner"),
        "adam": make_user("adam", "access_admin", "employee", full_name="Adam Access-Admin"),
        "ivy": make_user("ivy", "isms", "employee", full_name="Ivy ISMS"),
    }


def reviews(engine):
    with engine.reader() as s:
        return [(r.data["system"], r.data["period"], r.number) for r in s.execute(
            select(Record).where(Record.workflow_key == "access_review").order_by(Record.id)
        ).scalars()]


# ------------------------------------------------------------------ access reviews


def test_quarterly_review_opens_one_review_per_system_and_period(engine, staff):
    """R-A11-12-3 R-P11-10h-1: one review per system and quarter, listing every active QMS
    grant, assigned to the system owner, created by the system user with the job named."""
    schedules = load_schedules_text(QUARTERLY, jobs=JOBS)
    # 2026-03-02: the Q1 occurrence (1 January) is due
    lines = run_due(engine, schedules, jobs=JOBS)
    assert lines == ["access_review_quarterly [2026-Q1]: opened ['AR-2026-0001', 'AR-2026-0002']"]
    assert reviews(engine) == [("QMS", "2026-Q1", "AR-2026-0001"),
                               ("LIMS", "2026-Q1", "AR-2026-0002")]
    assert run_due(engine, schedules, jobs=JOBS) == []  # same period: nothing more
    clock.advance(timedelta(hours=1))
    assert run_due(engine, schedules, jobs=JOBS) == []

    with engine.reader() as s:
        qms = s.execute(select(Record).where(Record.number == "AR-2026-0001")).scalar_one()
        expected = sorted((u, r) for u, r in s.execute(
            select(identity.User.username, RoleGrant.role)
            .join(RoleGrant, RoleGrant.user_id == identity.User.id)
            .where(RoleGrant.revoked_at.is_(None))))
        assert sorted((g["user"], g["role"]) for g in qms.data["grants"]) == expected
        assert ("olga", "capa_owner") in expected
        lims = s.execute(select(Record).where(Record.number == "AR-2026-0002")).scalar_one()
        assert lims.data["grants"] == [] and "Export the user list of LIMS" in lims.data["scope"]
        sam = identity.get_user(s, "sam")
        (task,) = s.execute(select(Task).where(Task.record_id == qms.id)).scalars()
        assert (task.role, task.assignee_id, task.status) == ("system_owner", sam.id,
                                                              TaskStatus.OPEN)
        events = s.execute(select(AuditEvent).where(AuditEvent.record_id == qms.id)
                           .order_by(AuditEvent.seq)).scalars().all()
        assert {e.actor_name for e in events} == {"System (scheduler and engine)"}
        assert all(e.reason == "scheduled job access_review_quarterly (access_review), period "
                               "2026-Q1" for e in events)
        assert [e.action for e in events] == ["create", "task_assigned"]
        msg = s.execute(select(OutboxMessage).where(OutboxMessage.record_id == qms.id,
                                                    OutboxMessage.kind == "review_opened")
                        ).scalar_one()
        assert msg.recipient_user_id == sam.id
        assert s.execute(select(func.count()).select_from(JobRun).where(
            JobRun.job == "access_review_quarterly")).scalar_one() == 3  # 2 systems + period

    clock.set(datetime(2026, 4, 1, 6, 0, tzinfo=UTC))  # next quarter
    assert run_due(engine, schedules, jobs=JOBS) == [
        "access_review_quarterly [2026-Q2]: opened ['AR-2026-0003', 'AR-2026-0004']"]


def test_scheduler_that_was_down_catches_up_once(engine, staff):
    """A scheduler down for three quarters runs the latest missed period once on restart,
    not once per missed quarter or tick."""
    schedules = load_schedules_text(QUARTERLY, jobs=JOBS)
    run_due(engine, schedules, jobs=JOBS)
    clock.set(datetime(2026, 12, 15, 12, 0, tzinfo=UTC))  # Q2, Q3, Q4 occurrences missed
    assert run_due(engine, schedules, jobs=JOBS) == [
        "access_review_quarterly [2026-Q4]: opened ['AR-2026-0003', 'AR-2026-0004']"]
    for _ in range(5):
        clock.advance(timedelta(minutes=1))
        assert run_due(engine, schedules, jobs=JOBS) == []
    assert [p for _, p, _ in reviews(engine)] == ["2026-Q1"] * 2 + ["2026-Q4"] * 2


def test_an_occurrence_older_than_two_periods_is_not_replayed(engine, staff):
    """Misfire grace: a once-a-year occurrence (1 April 2025) lies more than two quarters
    back on 31 March 2026, so nothing is due until 1 April 2026."""
    schedules = load_schedules_text(QUARTERLY.replace("1,4,7,10", "4"), jobs=JOBS)
    clock.set(datetime(2026, 3, 31, 23, 59, tzinfo=UTC))
    assert run_due(engine, schedules, jobs=JOBS) == []
    clock.set(datetime(2026, 4, 1, 6, 0, tzinfo=UTC))
    assert len(run_due(engine, schedules, jobs=JOBS)) == 1


def test_revocations_from_a_scheduled_review_take_effect_at_once(engine, staff):
    """R-A11-12-3 R-A11-12-1 R-P11-10d-1: the owner marks a grant revoke, the grant is
    revoked and audited in the same transaction, and the person loses the access at once."""
    run_due(engine, load_schedules_text(QUARTERLY, jobs=JOBS), jobs=JOBS)
    capa = engine.start("capa", staff["emp"], {"title": "T", "description": "D"})
    engine.fire(capa.number, "assign", staff["qa"], {"owner": "olga"})
    rec = engine.get("AR-2026-0001")
    grants = [{**g, "decision": "revoke", "comment": "left the team"}
              if (g["user"], g["role"]) == ("olga", "capa_owner") else
              g if g["user"] == "sonia" else {**g, "decision": "keep"}
              for g in rec.data["grants"]]
    # the scheduler assigned the review to its system owner (sam): the task is his until
    # he hands it on (a claim holds, R-WF-12)
    with engine.reader() as s:
        task_id = s.execute(select(Task.id).where(Task.record_id == rec.id,
                                                  Task.status == TaskStatus.OPEN)).scalar_one()
    tasks.delegate(engine, task_id, "sam", "sonia", "sonia reviews this quarter")
    # sonia's own rows go to a second reviewer (R-WF-23); the revocation follows their decision
    engine.fire("AR-2026-0001", "attest_own_access_pending", "sonia", {"grants": grants},
                signature=sign("sonia"))
    decided = [{**g, "decision": "keep"} if g["user"] == "sonia" else g for g in grants]
    engine.fire("AR-2026-0001", "second_attest", "ivy", {"grants": decided},
                signature=sign("ivy"))
    with engine.reader() as s:
        assert "capa_owner" not in identity.roles_of(s, identity.get_user(s, "olga"))
        ev = s.execute(select(AuditEvent).where(AuditEvent.chain == audit.SYSTEM_CHAIN,
                                                AuditEvent.action == "role_revoked")).scalar_one()
        assert ev.reason == "access review AR-2026-0001"
    with pytest.raises(NotAuthorized):
        engine.fire(capa.number, "submit_root_cause", "olga",
                    {"root_cause_category": "method", "root_cause": "x"})


def opened_once(results, numbers):
    """Each opened record is reported by exactly one racing scheduler (none twice, none
    hidden), whichever of them marked the period done."""
    lines = [line for r in results for line in r]
    for n in numbers:
        assert sum(n in line.split("already open")[0] for line in lines) == 1, (n, lines)


def race(n, action):
    barrier = threading.Barrier(n)

    def run(i):
        barrier.wait(timeout=30)
        return action(i)

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(run, range(n), timeout=60))


@pytest.mark.committed
@pytest.mark.parametrize("leader_lock", [True, False])
def test_two_schedulers_at_once_open_one_review_per_system(committed_engine, leader_lock):
    """R-A11-12-3: schedulers racing on the same database (threads, real commits) open one
    review per system and period, with or without the leader lock: the claim row is the
    guarantee, the lock only saves work."""
    with committed_engine.unit() as s:
        system = identity.system_user(s)
        for name, role in (("sam", "system_owner"), ("olga", "capa_owner")):
            u = identity.create_user(s, name, name.title(), actor=system, reason="test")
            identity.grant_role(s, u, role, actor=system, reason="test")
    schedules = load_schedules_text(QUARTERLY, jobs=JOBS)
    results = race(4, lambda i: run_due(committed_engine, schedules,
                                        use_leader_lock=leader_lock, jobs=JOBS))
    assert sorted(s for s, _, _ in reviews(committed_engine)) == ["LIMS", "QMS"]
    opened_once(results, [n for _, _, n in reviews(committed_engine)])
    with committed_engine.reader() as s:
        assert s.execute(select(func.count()).select_from(JobRun)).scalar_one() == 3
    assert run_due(committed_engine, schedules, jobs=JOBS) == []


# ------------------------------------------------------------------ SLA, timers, CAPA, training

SLA = """
schedules:
  sla_sweep:
    job: sla_sweep
    cron: "5 * * * *"
    period: hour
    params: {remind_before: 2d}
"""


def outbox(engine, kind):
    with engine.reader() as s:
        return s.execute(select(OutboxMessage).where(OutboxMessage.kind == kind)
                         .order_by(OutboxMessage.id)).scalars().all()


def test_sla_sweep_reminds_then_escalates_once_per_task(engine, people):
    """Reminder before the due date, escalation to the process-owner role when overdue, each
    once per task however often the sweep runs."""
    schedules = load_schedules_text(SLA, jobs=JOBS)
    r = engine.start("capa", people["emp"], {"title": "T", "description": "D"})  # QA task, 5 d
    clock.advance(timedelta(hours=1))
    assert run_due(engine, schedules, jobs=JOBS) == []
    clock.advance(timedelta(days=3, hours=1))  # due in < 2 days
    # 11:00; the hour's occurrence was at 10:05
    assert run_due(engine, schedules, jobs=JOBS) == ["sla_sweep [2026-03-05T10]: reminders 1"]
    (m,) = outbox(engine, "due_soon")
    assert (m.recipient_role, m.subject) == ("qa", f"{r.number}: due 2026-03-07 09:00 UTC")
    for _ in range(3):
        clock.advance(timedelta(hours=1))
        run_due(engine, schedules, jobs=JOBS)
    assert len(outbox(engine, "due_soon")) == 1
    clock.advance(timedelta(days=2))
    run_due(engine, schedules, jobs=JOBS)
    clock.advance(timedelta(hours=1))
    run_due(engine, schedules, jobs=JOBS)
    (over,) = outbox(engine, "overdue")
    (esc,) = outbox(engine, "escalation")
    assert over.recipient_role == "qa" and esc.recipient_role == "qa"  # capa process owner
    assert esc.subject == f"Escalation: {r.number} overdue since 2026-03-07 09:00 UTC"


def test_timers_job_fires_due_timers_as_system_user(engine, people, make_user):
    """R-P11-10h-1: the every-minute timers job moves an overdue training via the engine."""
    make_user("tina", "training_coordinator", "employee")
    schedules = load_schedules_text("schedules:\n  timers: {job: run_timers, every: minute}\n", jobs=JOBS)
    r = engine.start("training_assignment", "tina", {
        "title": "SOP-1", "document": "SOP-1", "document_version": "1",
        "trainee": people["emp"], "due_date": "2026-03-05"})
    assert run_due(engine, schedules, jobs=JOBS) == []
    clock.set(datetime(2026, 3, 6, 0, 1, tzinfo=UTC))
    assert run_due(engine, schedules, jobs=JOBS) == ["timers [now]: timers 1"]
    assert engine.get(r.number).state == "overdue"


def test_capa_effectiveness_check_due_notifies_once(engine, people):
    schedules = load_schedules_text(
        "schedules:\n  eff: {job: capa_effectiveness_due, cron: '30 6 * * *', period: day}\n", jobs=JOBS)
    r = engine.start("capa", people["emp"], {"title": "T", "description": "D"})
    engine.fire(r.number, "assign", people["qa"], {"owner": people["owner"]})
    engine.fire(r.number, "submit_root_cause", people["owner"],
                {"root_cause_category": "method", "root_cause": "x"})
    engine.fire(r.number, "submit_plan", people["owner"], {
        "actions": [{"description": "a", "responsible": people["owner"], "done": True}],
        "effectiveness_criteria": "c", "effectiveness_check_days": 30})
    engine.fire(r.number, "approve_plan", people["qa2"], signature=sign(people["qa2"]))
    engine.fire(r.number, "complete_implementation", people["owner"],
                {"implementation_summary": "done"})
    engine.fire(r.number, "verify", people["qa2"], {"verification_evidence": "ok"},
                signature=sign(people["qa2"]))
    clock.set(datetime(2026, 3, 3, 7, tzinfo=UTC))
    run_due(engine, schedules, jobs=JOBS)
    assert outbox(engine, "effectiveness_due") == []
    clock.set(datetime(2026, 4, 1, 7, tzinfo=UTC))  # effectiveness_due 2026-04-01
    assert run_due(engine, schedules, jobs=JOBS) == [f"eff [2026-04-01]: notified ['{r.number}']"]
    clock.set(datetime(2026, 4, 2, 7, tzinfo=UTC))
    run_due(engine, schedules, jobs=JOBS)
    msgs = outbox(engine, "effectiveness_due")
    assert sorted((m.recipient_role or "", m.recipient_user_id is not None) for m in msgs) == [
        ("", True), ("qa", False)]


def test_training_refresher_assigned_before_the_last_training_expires(engine, people, make_user):
    """R-P11-10i-1: a document with a yearly retraining interval gets a new assignment
    30 days before the trainee's last training expires, once."""
    make_user("tina", "training_coordinator", "employee")
    make_user("trent", "trainer", "employee")
    schedules = load_schedules_text("""
schedules:
  refreshers:
    job: training_refreshers
    cron: "0 7 * * *"
    period: day
    params: {documents: [{document: SOP-9, interval: 365d, lead: 30d}]}
""", jobs=JOBS)
    r = engine.start("training_assignment", "tina", {
        "title": "SOP-9", "document": "SOP-9", "document_version": "3",
        "trainee": people["emp"], "trainer": "trent", "due_date": "2026-03-10"})
    engine.fire(r.number, "complete", people["emp"], signature=sign(people["emp"]))
    engine.fire(r.number, "verify", "trent", signature=sign("trent"))
    clock.set(datetime(2027, 1, 30, 7, tzinfo=UTC))
    assert run_due(engine, schedules, jobs=JOBS) == []
    clock.set(datetime(2027, 2, 1, 7, tzinfo=UTC))
    (line,) = run_due(engine, schedules, jobs=JOBS)
    assert line == "refreshers [2027-02-01]: assigned ['TRN-2027-0001']"
    new = engine.get("TRN-2027-0001")
    assert (new.data["trainee"], new.data["document_version"], new.data["due_date"]) == (
        people["emp"], "3", "2027-03-02")
    clock.set(datetime(2027, 2, 2, 7, tzinfo=UTC))
    assert run_due(engine, schedules, jobs=JOBS) == []


def test_a_failing_job_is_recorded_and_retried(engine, people, monkeypatch):
    def boom(ctx):
        raise RuntimeError("disk on fire")

    jobs = {**JOBS, "sla_sweep": Job("sla_sweep", boom, idempotent=True)}
    schedules = load_schedules_text(SLA, jobs=jobs)
    (line,) = run_due(engine, schedules, jobs=jobs)
    assert "FAILED: RuntimeError: disk on fire" in line
    (line,) = run_due(engine, schedules, jobs=jobs)  # the period is still open: retried
    runs = claims.last_runs(engine)
    assert runs["sla_sweep"].status == "failed"
    assert runs["sla_sweep"].result == {"attempts": 2}


# ------------------------------------------------------------------ commands


def test_scheduler_and_jobs_commands(committed_url, tmp_path, monkeypatch):
    """`qms scheduler --once`, `qms jobs list`, `qms jobs run NAME`, `qms jobs validate`."""
    from tests.factories import Qms

    schedules = tmp_path / "schedules.yaml"
    schedules.write_text(QUARTERLY)
    monkeypatch.delenv("QMS_SMTP_URL", raising=False)
    qms = Qms(committed_url)  # disposes the engines the commands open
    qms.runner.env["QMS_SCHEDULES_FILE"] = str(schedules)
    # went live before the quarter began: its review is due (R-OPS-16 has the fresh install)
    qms.runner.env["QMS_GO_LIVE"] = "2026-01-01"
    try:
        assert qms("init").exit_code == 0
        r = qms("jobs", "list")
        assert r.exit_code == 0 and "access_review_quarterly" in r.output
        assert "last: never" in r.output
        r = qms("scheduler", "--once")
        assert r.exit_code == 0, r.output
        assert "access_review_quarterly [2026-Q1]: opened ['AR-2026-0001', 'AR-2026-0002']" \
            in r.output
        r = qms("jobs", "run", "access_review_quarterly")
        assert r.output.strip() == \
            "access_review_quarterly [2026-Q1]: already done for this period"
        assert "last: done 2026-Q1" in qms("jobs", "list").output
        r = qms("jobs", "run", "nope")
        assert r.exit_code == 1 and "no schedule 'nope'" in r.output
        bad = tmp_path / "bad.yaml"
        bad.write_text("schedules:\n  x_y: {job: run_timers, every: hour}\n")
        r = qms("jobs", "validate", str(bad))
        assert r.exit_code == 1 and f"{bad}:2: every: takes only 'minute'" in r.output
        r = qms("notifications", "dispatch")
        # the two reviews' messages to the system_owner role, which nobody holds here
        assert r.exit_code == 0 and "dead=2" in r.output
        assert "2 dead letter(s)" in qms("notifications", "dead").output
    finally:
        qms.close()


@pytest.mark.committed
def test_a_fresh_install_does_not_back_fill_before_its_go_live(committed_url, monkeypatch):
    """R-OPS-16 R-OPS-18: `qms init` records the go-live; the first `qms scheduler` run with
    the shipped schedules opens no periodic record (it used to open 13: definition reviews,
    last month's KPI report and audit-trail review, last quarter's access reviews); a
    month later the monthly ones open, and the access review covers this system only."""
    from tests.factories import CLI_KEY_HEX, Qms
    from workflow.db import engines as db
    from workflow.engine.core import Engine
    from workflow.registry import Registry
    from workflow.scheduling import golive

    def qms_engine(url):
        dbe = db.make_engine(url)
        return Engine(db.make_sessionmaker(dbe), bytes.fromhex(CLI_KEY_HEX),
                      registry=Registry()), dbe

    monkeypatch.delenv("QMS_SMTP_URL", raising=False)
    monkeypatch.delenv("QMS_SCHEDULES_FILE", raising=False)
    qms = Qms(committed_url)
    try:
        r = qms("init")
        assert r.exit_code == 0, r.output
        assert "go-live 2026-03-02 09:00 UTC" in r.output
        r = qms("scheduler", "--once")
        assert r.exit_code == 0, r.output
        assert "opened" not in r.output, r.output
        eng, dbe = qms_engine(committed_url)
        try:
            with eng.reader() as s:
                # the only record: this QMS's inventory entry, registered by init (R-SYS-5)
                assert s.execute(select(Record.workflow_key)).scalars().all() == \
                    ["system_inventory"]
            assert golive.recorded(eng) == clock.now()
            qms("init")  # re-run: the go-live stays
            assert golive.recorded(eng) == clock.now()
            clock.set(datetime(2026, 4, 1, 7, 0, tzinfo=UTC))  # the next month and quarter
            r = qms("scheduler", "--once")
            assert r.exit_code == 0, r.output
            with eng.reader() as s:
                opened = sorted(s.execute(select(Record.workflow_key, Record.data)).all(),
                                key=lambda row: row[0])
            kinds = [k for k, _ in opened]
            # from the inventory: this QMS's entry (R-SYS-11)
            assert kinds.count("access_review") == 1, kinds
            assert [d["system"] for k, d in opened if k == "access_review"] == ["QMS"]
            assert "audit_trail_review" in kinds and "definition_review" not in kinds
        finally:
            dbe.dispose()
    finally:
        qms.close()
