"""A record's data is stored parsed on PostgreSQL (jsonb, migration 0021) and reads back
exactly as it was written, on both databases (R-PERF-75).

What an inspector would check: the values a person entered come back unchanged, the seals
and the audit chain still verify, search still finds the words; what an attacker would try:
a NUL character, which PostgreSQL's jsonb cannot store, is refused with a reason and writes
nothing, and an upgrade over a record that holds one stops, names it and changes nothing.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select, text

from tests.factories import is_pg, owner_url, run_alembic
from workflow.audit import integrity
from workflow.db import engines as db
from workflow.db.models import Record
from workflow.errors import ValidationFailed
from workflow.identity import enablement
from workflow.identity import users as identity
from workflow.queries import search

DEV = {"title": "Ünïcode “quotes” and a back\\slash",
       "description": 'Interlock "tripped" at 03:00 \u2014 see \\u0000 in the manual 🙂',
       "occurred_on": "2026-03-01", "discovered_on": "2026-03-01", "area": "Packaging",
       "immediate_actions": "Line cleared.\nSecond line."}


def _column_type(session: Any) -> str:
    return session.execute(text(
        "SELECT data_type FROM information_schema.columns WHERE table_name = 'records' "
        "AND column_name = 'data'")).scalar_one()


def test_record_data_reads_back_exactly_and_verifies(engine, people):
    """R-PERF-75: the values written (non-ASCII text, quotes, a backslash, the six letters
    ``\\u0000`` typed as text, a list of objects) come back unchanged; the record's seal
    and the audit chain verify; search finds a word of the description; on PostgreSQL the
    column is jsonb and a field reads with ->> in SQL."""
    dev = engine.start("deviation", people["emp"], DEV)
    capa = engine.start("capa", people["emp"], {"title": "t", "description": "d"})
    engine.fire(capa.number, "assign", people["qa"], {"owner": people["owner"]})
    engine.fire(capa.number, "submit_root_cause", people["owner"],
                {"root_cause_category": "method", "root_cause": "r"})
    plan = {"actions": [{"description": "Add a check ✓", "due": "2026-04-30"},
                        {"description": "Train the team", "due": "2026-05-31"}],
            "effectiveness_criteria": "No recurrence in 3 months", "effectiveness_check_days": 90}
    engine.fire(capa.number, "submit_plan", people["owner"], plan)
    with engine.reader() as s:
        data = s.execute(select(Record.data).where(Record.number == dev.number)).scalar_one()
        assert {k: data[k] for k in DEV} == DEV
        cdata = s.execute(select(Record.data).where(Record.number == capa.number)).scalar_one()
        assert cdata["actions"] == plan["actions"]
        assert cdata["effectiveness_check_days"] == 90
        assert type(cdata["effectiveness_check_days"]) is int
        title = s.execute(select(Record.data["title"].as_string())
                          .where(Record.number == dev.number)).scalar_one()
        assert title == DEV["title"]
        if s.get_bind().dialect.name == "postgresql":
            assert _column_type(s) == "jsonb"
        qa = identity.get_user(s, people["qa"])
        page = search.search(s, engine.registry, qa, identity.roles_of(s, qa),
                             search.RecordQuery(q="interlock"))
        assert [r.number for r in page.records] == [dev.number]
    assert integrity.verify_all(engine, workers=1).ok


def test_a_nul_character_is_refused_and_writes_nothing(engine, people):
    """R-PERF-75: a NUL in a text field is refused with the field's name and a reason, on
    both databases (PostgreSQL's jsonb cannot store it; before, the step failed there with
    a database error); nothing is written."""
    dev = engine.start("deviation", people["emp"], DEV)
    with engine.reader() as s:
        before = s.execute(select(Record.version, Record.data)
                           .where(Record.number == dev.number)).one()
    with pytest.raises(ValidationFailed, match="must not contain a NUL character") as exc:
        engine.fire(dev.number, "triage", people["qa"], {
            "classification": "minor", "classification_rationale": "no\x00impact",
            "capa_required": False, "investigator": people["owner"]})
    assert exc.value.errors == {"classification_rationale": "must not contain a NUL character"}
    with engine.reader() as s:
        after = s.execute(select(Record.version, Record.data)
                          .where(Record.number == dev.number)).one()
    assert after == before


def _reporter(committed_engine: Any) -> str:
    with committed_engine.unit() as s:
        system = identity.system_user(s)
        u = identity.create_user(s, "rita", "Rita Reporter", email="rita@example.com",
                                 actor=system, reason="test")
        enablement.enable_for_system(s, u, reason="test")
        identity.grant_role(s, u, "employee", actor=system, reason="test")
    return "rita"


def test_upgrade_stops_on_a_record_holding_a_nul_and_changes_nothing(committed_url,
                                                                      committed_engine):
    """R-PERF-75 R-A11-4-2: on PostgreSQL, a database at 0020 whose record holds a NUL (the
    triggers disabled by hand to write it) is not converted: the upgrade names the record
    and stops at 0020 with the column and the value as they were. With the value corrected
    it converts, and the record still verifies (its data is the same values)."""
    if not is_pg(committed_url):
        pytest.skip("PostgreSQL only: SQLite stores JSON as text, 0021 changes nothing there")
    number = committed_engine.start("deviation", _reporter(committed_engine), DEV).number
    committed_engine.sessions.kw["bind"].dispose()
    owner = db.make_engine(owner_url(committed_url))
    nul = ("UPDATE records SET data = replace(data::text, 'Interlock', 'Inter\\u0000lock')::json "
           "WHERE number = :n")
    fix = ("UPDATE records SET data = replace(data::text, 'Inter\\u0000lock', 'Interlock')::json "
           "WHERE number = :n")
    try:
        run_alembic(owner, "downgrade", "0020")
        with owner.begin() as c:
            assert _column_type(c) == "json"
            c.execute(text("ALTER TABLE records DISABLE TRIGGER USER"))
            c.execute(text(nul), {"n": number})
            c.execute(text("ALTER TABLE records ENABLE TRIGGER USER"))
            held = c.execute(text("SELECT data::text FROM records WHERE number = :n"),
                             {"n": number}).scalar_one()
        assert "Inter\\u0000lock" in held
        with pytest.raises(Exception, match=f"records {number} hold a NUL character") as exc:
            run_alembic(owner, "upgrade", "head")
        assert type(exc.value).__name__ == "NulInRecordData"
        assert db.current_revision(owner) == "0020"
        with owner.connect() as c:
            assert _column_type(c) == "json"
            assert c.execute(text("SELECT data::text FROM records WHERE number = :n"),
                             {"n": number}).scalar_one() == held

        with owner.begin() as c:
            c.execute(text("ALTER TABLE records DISABLE TRIGGER USER"))
            c.execute(text(fix), {"n": number})
            c.execute(text("ALTER TABLE records ENABLE TRIGGER USER"))
        run_alembic(owner, "upgrade", "head")
        with owner.connect() as c:
            assert _column_type(c) == "jsonb"
            assert c.execute(text("SELECT data ->> 'description' FROM records WHERE number = :n"),
                             {"n": number}).scalar_one() == DEV["description"]
    finally:
        owner.dispose()
    assert integrity.verify_all(committed_engine, workers=1).ok
