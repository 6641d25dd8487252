"""Schedules over records (``for_each_record``): the quarterly access review takes its
systems from the computerised-system inventory, once per entry and period, also with
schedulers racing on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from tests.factories import sign
from tests.integration.test_scheduling import opened_once, race
from tests.integration.test_system_inventory import ENTRY
from workflow import clock
from workflow.db.models import JobRun, Record, RecordLink, Task, TaskStatus
from workflow.identity import users as identity
from workflow.scheduling.jobs import default_jobs
from workflow.scheduling.schedules import ScheduleError, load_schedules_text
from workflow.scheduling.service import run_due

JOBS = default_jobs()

PER_ENTRY = """
schedules:
  access_review_quarterly:
    job: access_review
    cron: "0 6 1 1,4,7,10 *"
    period: quarter
    for_each_record:
      capability: inventory
      states: [draft, approval, active]
      when: "access_review_in_scope"
"""


@pytest.fixture
def staff(people, make_user):
    return {**people,
            "sam": make_user("sam", "system_owner", "employee", full_name="Sam System-Owner"),
            "ivy": make_user("ivy", "isms", "employee", full_name="Ivy ISMS")}


def inventory(engine):
    """QMS (active), LIMS (active), a CDS out of the access review, an ERP retired."""
    numbers = {}
    for name, in_scope, retire in (("QMS", True, False), ("LIMS", True, False),
                                   ("CDS", False, False), ("ERP", True, True)):
        r = engine.start("system_inventory", "sam", {"title": name,
                                                     "access_review_in_scope": in_scope})
        engine.fire(r.number, "submit", "sam", {k: v for k, v in ENTRY.items() if k != "title"})
        engine.fire(r.number, "approve", "quinn", signature=sign("quinn"))
        if retire:
            engine.fire(r.number, "retire", "quinn", {"retirement_notes": "Archived."},
                        signature=sign("quinn"), reason="Replaced")
        numbers[name] = r.number
    return numbers


def reviews(engine):
    with engine.reader() as s:
        return {r.data["system"]: r for r in s.execute(
            select(Record).where(Record.workflow_key == "access_review").order_by(Record.id)
        ).scalars()}


def test_one_access_review_per_inventory_entry_and_period(engine, staff):
    """R-SYS-10 R-SYS-11 R-A11-12-3: one review per registered system in scope, each
    referencing (and linked to) its entry and assigned to its system owner; this QMS lists
    its real grants, another system starts empty; a second run in the period does nothing;
    the next quarter opens the next reviews."""
    numbers = inventory(engine)
    schedules = load_schedules_text(PER_ENTRY, jobs=JOBS)
    clock.set(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    (line,) = run_due(engine, schedules, jobs=JOBS)
    assert line.startswith("access_review_quarterly [2026-Q1]: records 2, opened ")
    got = reviews(engine)
    assert sorted(got) == ["LIMS", "QMS"]
    assert got["QMS"].data["system_entry"] == numbers["QMS"]
    assert {g["user"] for g in got["QMS"].data["grants"]} >= {"sam", "quinn", "ivy"}
    assert got["LIMS"].data["grants"] == []
    with engine.reader() as s:
        for name, rec in got.items():
            task = s.execute(select(Task).where(Task.record_id == rec.id,
                                                Task.status == TaskStatus.OPEN)).scalar_one()
            assert task.assignee_id == identity.get_user(s, "sam").id
            target = s.execute(select(Record.number).join(
                RecordLink, RecordLink.target_id == Record.id)
                .where(RecordLink.source_id == rec.id)).scalar_one()
            assert target == numbers[name]
        keys = sorted(s.execute(select(JobRun.period_key).where(
            JobRun.job == "access_review_quarterly")).scalars())
    assert keys == sorted(["2026-Q1", f"2026-Q1/{numbers['LIMS']}", f"2026-Q1/{numbers['QMS']}"])
    assert run_due(engine, schedules, jobs=JOBS) == []
    clock.set(datetime(2026, 4, 1, 6, 0, tzinfo=UTC))
    (line,) = run_due(engine, schedules, jobs=JOBS)
    assert "records 2" in line and len(reviews(engine)) == 2  # keyed by system: Q2's now
    with engine.reader() as s:
        assert s.execute(select(func.count()).select_from(Record).where(
            Record.workflow_key == "access_review")).scalar_one() == 4


def test_an_entry_added_later_is_reviewed_once_in_the_next_period(engine, staff):
    """R-SYS-10: the records are selected at each run; a claimed record is never redone."""
    schedules = load_schedules_text(PER_ENTRY, jobs=JOBS)
    clock.set(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    assert run_due(engine, schedules, jobs=JOBS) == []  # no entry yet: period done, empty
    inventory(engine)
    assert run_due(engine, schedules, jobs=JOBS) == []
    clock.set(datetime(2026, 4, 1, 6, 0, tzinfo=UTC))
    assert len(run_due(engine, schedules, jobs=JOBS)) == 1
    assert sorted(reviews(engine)) == ["LIMS", "QMS"]


def test_for_each_record_is_validated_like_the_rest_of_the_file():
    """R-SYS-10: unknown keys, both or neither of workflow/capability, an unknown capability,
    a workflow without states, a bad expression, a job that does not run per record and
    `every: minute` are refused at their line."""
    bad = """
schedules:
  a:
    job: access_review
    cron: "0 6 1 * *"
    period: month
    for_each_record: {capability: nope, colour: red, when: "x ="}
  b:
    job: access_review
    cron: "0 6 1 * *"
    period: month
    for_each_record: {workflow: system_inventory}
  c:
    job: sla_sweep
    every: minute
    for_each_record: {capability: inventory}
"""
    with pytest.raises(ScheduleError) as exc:
        load_schedules_text(bad, "s.yaml", jobs=JOBS)
    text = str(exc.value)
    for expected in ("s.yaml:7: unknown key 'colour'", "unknown capability 'nope'",
                     "when: ", "s.yaml:12: with workflow: name the states",
                     "job 'sla_sweep' does not run per record",
                     "a job run per record runs once per period"):
        assert expected in text, (expected, text)


@pytest.mark.committed
def test_two_schedulers_open_one_review_per_entry(committed_engine):
    """R-SYS-10 R-A11-12-3: schedulers racing (threads, real commits; SQLite, and PostgreSQL
    when QMS_TEST_DATABASE_URL names it) open exactly one review per entry and period."""
    e = committed_engine
    with e.unit() as s:
        system = identity.system_user(s)
        for name, roles in (("sam", ["system_owner"]), ("quinn", ["qa"]),
                            ("paul", ["process_owner"])):
            u = identity.create_user(s, name, name.title(), actor=system, reason="test")
            from workflow.identity import enablement
            enablement.enable_for_system(s, u, reason="test")
            for role in roles:
                identity.grant_role(s, u, role, actor=system, reason="test")
    for name in ("QMS", "LIMS", "ERP"):
        r = e.start("system_inventory", "sam", {"title": name})
        e.fire(r.number, "submit", "sam", {k: v for k, v in ENTRY.items() if k != "title"})
        e.fire(r.number, "approve", "quinn", signature=sign("quinn"))
    clock.set(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    schedules = load_schedules_text(PER_ENTRY, jobs=JOBS)
    results = race(4, lambda i: run_due(e, schedules, jobs=JOBS))
    got = reviews(e)
    assert sorted(got) == ["ERP", "LIMS", "QMS"]
    opened_once(results, [r.number for r in got.values()])
    with e.reader() as s:
        assert s.execute(select(func.count()).select_from(JobRun).where(
            JobRun.job == "access_review_quarterly")).scalar_one() == 4  # 3 entries + period
    assert run_due(e, schedules, jobs=JOBS) == []


REVIEW_DUE = """
schedules:
  system_periodic_review_due:
    job: record_date_due
    cron: "0 7 1 * *"
    period: month
    for_each_record:
      capability: inventory
      when: "next_periodic_review"
    params: {date_field: next_periodic_review, before: 30d, notify_field: system_owner,
             role: system_owner}
"""


def test_periodic_review_reminder_once_per_entry_and_month(engine, staff):
    """R-SYS-12 R-SYS-10: each active entry whose periodic review is due within 30 days (or
    overdue) reminds its system owner, once per entry and month; others are left alone."""
    from workflow.db.models import OutboxMessage

    numbers = {}
    for name, due in (("QMS", "2026-03-20"), ("LIMS", "2026-02-01"), ("CDS", "2026-09-01")):
        r = engine.start("system_inventory", "sam", {"title": name})
        engine.fire(r.number, "submit", "sam", {**{k: v for k, v in ENTRY.items()
                                                   if k != "title"},
                                                "next_periodic_review": due})
        engine.fire(r.number, "approve", "quinn", signature=sign("quinn"))
        numbers[name] = r.number
    schedules = load_schedules_text(REVIEW_DUE, jobs=JOBS)
    clock.set(datetime(2026, 3, 1, 8, 0, tzinfo=UTC))
    (line,) = run_due(engine, schedules, jobs=JOBS)
    assert line == (f"system_periodic_review_due [2026-03]: records 3, reminded "
                    f"['{numbers['QMS']}', '{numbers['LIMS']}']")
    with engine.reader() as s:
        sam = identity.get_user(s, "sam").id
        msgs = s.execute(select(OutboxMessage.subject, OutboxMessage.recipient_user_id)
                         .order_by(OutboxMessage.id)).all()
    subjects = [m for m, uid in msgs if uid == sam and "Next periodic review" in m]
    assert subjects == [f"{numbers['QMS']}: Next periodic review due due on 2026-03-20",
                        f"{numbers['LIMS']}: Next periodic review due overdue since 2026-02-01"]
    assert run_due(engine, schedules, jobs=JOBS) == []
    clock.set(datetime(2026, 4, 1, 8, 0, tzinfo=UTC))
    (line,) = run_due(engine, schedules, jobs=JOBS)
    assert "reminded" in line and numbers["CDS"] not in line
