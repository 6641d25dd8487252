"""Dates and people (issue 17 item 6): date-only due dates shown as entered in every time
zone, "My training", an overdue training that stays in the trainee's inbox, and a delegate
list that offers only people who could take the task."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from tests.web.conftest import PASSWORD, csrf, login
from workflow import clock, tasks
from workflow.db.models import Record, Task, TaskStatus
from workflow.errors import WorkflowError
from workflow.identity import users as identity
from workflow.signatures.part11 import PasswordSignature


@pytest.fixture
def crew(account):
    return {"emp": account("emma", "employee"),
            "coord": account("tina", "training_coordinator", "employee"),
            "coord2": account("tom", "training_coordinator", "employee"),
            "trainer": account("trent", "trainer", "employee"),
            "trainer2": account("tara", "trainer", "employee"),
            "qa": account("quinn", "qa", "employee")}


def assign(engine, crew, due="2026-12-10", **extra):
    data = {"title": "SOP-12 v5 read and understood", "document": "SOP-12",
            "document_version": "5", "trainee": crew["emp"], "trainer": crew["trainer"],
            "due_date": due, **extra}
    return engine.start("training_assignment", crew["coord"], data)


def sign(username):
    return PasswordSignature(username, PASSWORD, None)


def set_zone(engine, username, zone):
    with engine.unit() as s:
        identity.get_user(s, username).timezone = zone


@pytest.mark.parametrize("zone", ["UTC", "Europe/Berlin", "Asia/Tokyo", "America/Los_Angeles",
                                  "Pacific/Kiritimati", "Pacific/Pago_Pago"])
def test_date_only_due_date_shows_as_entered_in_every_zone(engine, client, crew, zone):
    """R-UI-50: a due date entered as 2026-12-10 shows as 2026-12-10 in the inbox and on the
    record page whatever the viewer's zone (it used to show 2026-12-11: the end-of-day instant
    converted to the zone, then cut to a date)."""
    r = assign(engine, crew)
    set_zone(engine, crew["emp"], zone)
    login(client, crew["emp"])
    inbox = client.get("/").get_data(as_text=True)
    row = inbox[inbox.index(r.number):]
    row = row[:row.index("</tr>")]
    assert "2026-12-10" in row and "2026-12-11" not in row
    page = client.get(f"/records/{r.number}").get_data(as_text=True)
    assert "due 2026-12-10" in page and "2026-12-11" not in page


def test_clock_deadline_day_round_trips_every_date_only_form():
    """R-UI-50: the end-of-day instant of a date (and an extension's 23:59:59) maps back to the
    same date; a deadline with a time of day is not a date-only one."""
    from datetime import UTC, date, datetime
    day = date(2026, 12, 10)
    assert clock.deadline_day(clock.end_of_day(day)) == day
    assert clock.deadline_day(datetime(2026, 12, 10, 23, 59, 59, tzinfo=UTC)) == day
    assert clock.deadline_day(datetime(2026, 12, 10, 14, 30, tzinfo=UTC)) is None
    assert clock.deadline_day(None) is None


def test_overdue_training_stays_in_trainees_inbox_and_my_training(engine, client, crew):
    """R-UI-51: past its due date the training moves to the coordinator's task, yet the
    trainee's inbox still lists it (overdue) and "My training" shows it overdue; once done and
    verified it is listed as completed, and leaves the inbox."""
    r = assign(engine, crew, due="2026-03-10")
    other = assign(engine, crew, due="2026-04-30", title="SOP-13 v1")
    login(client, crew["emp"])
    page = client.get("/training").get_data(as_text=True)
    assert r.number in page and other.number in page
    clock.advance(timedelta(days=9, hours=16))  # 2026-03-11 01:00 UTC
    assert engine.run_due_timers() == [f"{r.number}: mark_overdue -> overdue"]
    with engine.reader() as s:
        rid = s.execute(select(Record.id).where(Record.number == r.number)).scalar_one()
        emma = identity.get_user(s, crew["emp"])
        assert not s.execute(select(Task).where(Task.record_id == rid,
                                                Task.assignee_id == emma.id,
                                                Task.status == TaskStatus.OPEN)).first()
    login(client, crew["emp"])  # days later: the idle timeout ended the session
    inbox = client.get("/").get_data(as_text=True)
    block = inbox[inbox.index("Your overdue training"):inbox.index('class="tabs"')]
    assert r.number in block and "2026-03-10" in block and other.number not in block
    mine = client.get("/training").get_data(as_text=True)
    overdue = mine[mine.index('id="h-overdue"'):mine.index('id="h-open"')]
    opened = mine[mine.index('id="h-open"'):mine.index('id="h-done"')]
    assert r.number in overdue and other.number not in overdue
    assert other.number in opened and r.number not in opened

    engine.fire(r.number, "complete", crew["emp"], signature=sign(crew["emp"]))
    engine.fire(r.number, "verify", crew["trainer"], signature=sign(crew["trainer"]))
    inbox = client.get("/").get_data(as_text=True)
    assert "Your overdue training" not in inbox
    mine = client.get("/training").get_data(as_text=True)
    done = mine[mine.index('id="h-done"'):]
    assert r.number in done


def test_my_training_lists_only_own_trainings(engine, client, crew):
    """R-UI-51: another trainee's training never appears in my list."""
    assign(engine, crew, trainee=crew["qa"], trainer=crew["trainer"])
    login(client, crew["emp"])
    page = client.get("/training").get_data(as_text=True)
    assert "TRN-" not in page


def delegate_choices(client, task_id):
    html = client.get(f"/tasks/{task_id}/delegate").get_data(as_text=True)
    select_html = html[html.index('<select'):html.index('</select>')]
    return set(re.findall(r'value="([^"]+)"', select_html))


def test_delegate_list_offers_only_people_who_could_take_the_task(engine, client, crew):
    """R-WF-40: the coordinator's overdue task is offered only to the other coordinator; the
    trainer's verification task only to another trainer, never to the trainee (a guard about
    who acts, and separation of duties); a forged choice is refused by the command."""
    r = assign(engine, crew, due="2026-03-10")
    clock.advance(timedelta(days=9, hours=16))
    engine.run_due_timers()
    with engine.reader() as s:
        rid = s.execute(select(Record.id).where(Record.number == r.number)).scalar_one()
        (task,) = s.execute(select(Task).where(Task.record_id == rid,
                                               Task.status == TaskStatus.OPEN)).scalars()
    tasks.claim(engine, task.id, crew["coord"])
    login(client, crew["coord"])
    assert delegate_choices(client, task.id) == {crew["coord2"]}
    token = csrf(client, f"/tasks/{task.id}/delegate")
    resp = client.post(f"/tasks/{task.id}/delegate",
                       data={"to": crew["emp"], "reason": "holiday", "csrf_token": token})
    assert resp.status_code == 200 and "Not a valid choice" in resp.get_data(as_text=True)
    with pytest.raises(WorkflowError, match="does not hold the role"):
        tasks.delegate(engine, task.id, crew["coord"], crew["emp"], "holiday")

    engine.fire(r.number, "complete", crew["emp"], signature=sign(crew["emp"]))
    with engine.reader() as s:
        (vt,) = s.execute(select(Task).where(Task.record_id == rid,
                                             Task.status == TaskStatus.OPEN)).scalars()
    client.post("/logout", data={"csrf_token": csrf(client, "/")})
    login(client, crew["trainer"])
    offered = delegate_choices(client, vt.id)
    assert crew["trainer2"] in offered
    assert crew["emp"] not in offered  # the trainee may not verify their own training
    with pytest.raises(WorkflowError):
        tasks.delegate(engine, vt.id, crew["trainer"], crew["emp"], "please")
