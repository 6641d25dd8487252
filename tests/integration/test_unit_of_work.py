"""The unit of work (workflow/db/uow.py): the one place a transaction begins. A read unit never
writes - not even a change made by mistake to an object read for display - and a write unit
that fails leaves nothing behind."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from workflow.db.models import AuditEvent, Record, User
from workflow.identity import users as identity


def test_a_read_unit_refuses_to_write_what_was_changed_on_its_objects(engine, people):
    """R-P11-10e-1: data changes only through commands (with their audit events); a read
    session that would flush a change fails instead, and the row keeps its value."""
    with pytest.raises(RuntimeError, match="a read unit never writes"):
        with engine.reader() as s:
            user = s.execute(select(User).where(User.username == people["emp"])).scalar_one()
            user.full_name = "Changed Behind The Trail"
            s.flush()
    with engine.reader() as s:
        assert identity.get_user(s, people["emp"]).full_name == "Emma Employee"


def test_a_failing_write_unit_leaves_no_record_no_event_and_no_number(engine, people):
    """R-P11-10e-1: everything a unit did is rolled back when it fails: the record row, its
    audit events, and the record number (the next record gets it, no gap)."""
    with engine.reader() as s:
        events = s.execute(select(func.count()).select_from(AuditEvent)).scalar_one()
    with pytest.raises(ZeroDivisionError):
        with engine.unit() as s:
            engine.start_in(s, "capa", identity.get_user(s, people["emp"]),
                            {"title": "Doomed", "description": "d"})
            raise ZeroDivisionError
    with engine.reader() as s:
        assert s.execute(select(func.count()).select_from(AuditEvent)).scalar_one() == events
        assert s.execute(select(Record).where(Record.title == "Doomed")).first() is None
    r = engine.start("capa", people["emp"], {"title": "Kept", "description": "d"})
    assert r.number.endswith("-0001")
