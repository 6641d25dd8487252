"""Inbox commands (workflow/tasks.py) check what they are given themselves: a task whose record
is hidden from the person is "not found" for the CLI, the API and the web alike."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from workflow import tasks
from workflow.db.models import AuditEvent, Record, Task, TaskStatus
from workflow.errors import TaskNotFound

DEV = {"title": "Dev", "description": "d", "occurred_on": "2026-03-01",
       "discovered_on": "2026-03-01", "area": "Filling", "immediate_actions": "hold"}


def test_claim_of_a_hidden_or_missing_task_is_not_found_and_changes_nothing(engine, people,
                                                                            make_user):
    """R-P11-10d-2: task ids cannot be used to probe or touch records one may not see."""
    make_user("otto", "capa_owner")  # holds a task role but no role of deviations
    number = engine.start("deviation", people["emp"], DEV).number
    with engine.reader() as s:
        task = s.execute(select(Task).join(Record, Record.id == Task.record_id).where(
            Record.number == number, Task.status == TaskStatus.OPEN)).scalars().first()
        events = s.execute(select(AuditEvent.id)).scalars().all()
    assert task is not None
    for command in (lambda: tasks.claim(engine, task.id, "otto"),
                    lambda: tasks.release(engine, task.id, "otto"),
                    lambda: tasks.delegate(engine, task.id, "otto", people["qa"], "away")):
        with pytest.raises(TaskNotFound) as info:
            command()
        assert number not in str(info.value)
    with pytest.raises(TaskNotFound):
        tasks.claim(engine, 999_999, "otto")
    with engine.reader() as s:
        assert s.get(Task, task.id).assignee_id == task.assignee_id
        assert s.execute(select(AuditEvent.id)).scalars().all() == events
