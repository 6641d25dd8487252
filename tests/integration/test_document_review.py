"""Periodic review of effective documents (issue 19): a timer on the effective version opens a
review record for the owner when the next review date comes (clock moved, never slept); "no
change" (signed) keeps the version and the next review is scheduled; "revise" starts the next
draft version of the same number. Runs on SQLite and, with QMS_TEST_DATABASE_URL, on
PostgreSQL."""

from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import select

from tests.factories import sign
from tests.integration import test_controlled_documents as base
from tests.integration.test_controlled_documents import approve, new_version, to_approval, upload
from workflow import clock
from workflow.db.models import Record, Task, TaskStatus
from workflow.errors import NotYetOpen
from workflow.queries import documents, records

crew = base.crew  # the fixtures, shared
store = base.store


def reviews(engine) -> list[Record]:
    with engine.reader() as s:
        return list(s.execute(select(Record).where(Record.workflow_key == "document_review")
                              .order_by(Record.id)).scalars())


def at(day: str) -> None:
    clock.set(datetime.fromisoformat(day + "T00:01:00+00:00"))


def test_periodic_review_no_change_then_revise(engine, crew, store):
    """R-DOC-13: effective on 2026-03-23 with a 12-month interval, the next review is
    2027-03-23; on that day the timer opens a review for the owner (the version stays in
    force, its approvals stay valid) and the next review moves to 2028-03-23; "no change" is
    signed; at the next review "revise" creates draft version 2 of the same number."""
    n = new_version(engine, crew, review_interval_months=12)
    to_approval(engine, crew, n, upload(engine, crew["author"]))
    approve(engine, crew, n, "2026-03-23")
    at("2026-03-23")
    engine.run_due_timers()
    assert engine.get(n).state == "effective"
    assert engine.get(n).data["next_review_date"] == "2027-03-23" and reviews(engine) == []
    at("2027-03-22")
    assert engine.run_due_timers() == []
    with pytest.raises(NotYetOpen):
        engine.fire(n, "periodic_review_due", crew["qa"], reason="early")
    at("2027-03-23")
    assert engine.run_due_timers() == [f"{n}: periodic_review_due -> effective"]
    [r] = reviews(engine)
    assert r.state == "open" and r.data["doc_number"] == "SOP-QA-001" and r.data["doc_version"] == 1
    assert r.data["document"] == n and r.data["owner"] == crew["author"]
    with engine.reader() as s:
        holders = s.execute(select(Task.assignee_id).where(
            Task.record_id == r.id, Task.status == TaskStatus.OPEN)).scalars().all()
        assert holders and holders[0] is not None
        v = documents.effective_version(s, "SOP-QA-001")
        assert v.record_number == n and v.next_review.isoformat() == "2028-03-23"
        assert records.superseded(s, engine.get(n, session=s)) == frozenset()
    engine.fire(r.number, "confirm_no_change", crew["author"],
                {"review_notes": "Still accurate and followed."}, signature=sign(crew["author"]))
    assert engine.get(r.number).state == "no_change"

    at("2028-03-23")
    engine.run_due_timers()
    second = reviews(engine)[-1]
    assert second.number != r.number and second.state == "open"
    result = engine.fire(second.number, "revise", crew["author"],
                         {"review_notes": "Add the new escalation route."})
    [draft] = [x for x in result.created if x.startswith("DOC-")]
    d = engine.get(draft)
    assert d.state == "draft" and d.data["doc_number"] == "SOP-QA-001"
    assert d.data["version"] == 2 and "escalation route" in d.data["change_summary"]
    assert engine.get(n).state == "effective"  # in force until version 2 is effective
