"""The people index (``record_people``, migration 0015): the database keeps, with every
record write, which people a record's data names and in which field, so "the records that
name me" is an index look-up. The inbox's overdue-training panel reads it instead of every
open training record's JSON (issue 18: 250-380 ms at 1M records)."""

from __future__ import annotations

import pytest
from sqlalchemy import select, text

from tests.factories import dba, plan_nodes, statements
from workflow import clock
from workflow.db import records
from workflow.db.models import Record, RecordPerson
from workflow.identity import users as identity
from workflow.queries import training

OTHERS = 20_000


def _people(engine, number):
    with engine.reader() as s:
        rid = s.execute(select(Record.id).where(Record.number == number)).scalar_one()
        return sorted((p.field, p.username) for p in s.execute(
            select(RecordPerson).where(RecordPerson.record_id == rid)).scalars())


def _assign(engine, people, coord, **extra):
    return engine.start("training_assignment", coord, {
        "title": "SOP-1 v1", "document": "SOP-1", "document_version": "1",
        "trainee": people["emp"], "due_date": clock.now().date().isoformat(), **extra})


def test_people_index_follows_every_record_write(engine, people, make_user):
    """R-PERF-20: the people a record names (user fields, lists of users, user columns of
    table fields) are indexed in the statement that writes the record: at creation, when a
    step changes them (names gone are removed, new ones added), and not at all when a unit
    rolls back."""
    coord = make_user("tina", "training_coordinator", "employee")
    trainer = make_user("trent", "trainer", "employee")
    r = _assign(engine, people, coord, trainer=trainer)
    assert _people(engine, r.number) == [("trainee", people["emp"]), ("trainer", trainer)]

    # the write-back of a changed record (the path every step takes)
    with engine.unit() as s:
        rec = records.lock(s, r.number)
        rec.data = {**rec.data, "trainer": people["qa"]}
    assert _people(engine, r.number) == [("trainee", people["emp"]), ("trainer", people["qa"])]

    # a table field's user column (CAPA actions: responsible)
    capa = engine.start("capa", people["owner"], {"title": "Fix the mixer", "description": "Mixer leaks"})
    with engine.unit() as s:
        rec = records.lock(s, capa.number)
        rec.data = {**rec.data, "actions": [
            {"action": "Clean", "responsible": people["emp"], "due": "2026-12-31"},
            {"action": "Train", "responsible": people["qa2"], "due": "2026-12-31"}]}
    named = _people(engine, capa.number)
    assert ("actions", people["emp"]) in named and ("actions", people["qa2"]) in named

    # a rolled-back unit leaves the index as it was
    with pytest.raises(RuntimeError), engine.unit() as s:
        rec = records.lock(s, r.number)
        rec.data = {**rec.data, "trainer": people["qa2"]}
        s.flush()
        raise RuntimeError("rolled back")
    assert _people(engine, r.number) == [("trainee", people["emp"]), ("trainer", people["qa"])]


def test_people_index_is_rewritten_only_when_the_people_change(engine, people, make_user):
    """R-PERF-81: a write that changes a record's data but none of the people it names leaves
    the people index alone (the trigger compares the old and new value at each people place
    first; migration 0018): an index row removed by hand stays removed through such a write,
    and the next write that changes a person rebuilds the record's rows completely. A new
    definition version re-indexes too."""
    coord = make_user("tina", "training_coordinator", "employee")
    trainer = make_user("trent", "trainer", "employee")
    r = _assign(engine, people, coord, trainer=trainer)
    with dba(engine) as s:
        s.execute(text("DELETE FROM record_people WHERE field = 'trainer' AND record_id = "
                       "(SELECT id FROM records WHERE number = :n)"), {"n": r.number})
    # a change of data that names nobody new: the trigger does nothing
    with engine.unit() as s:
        rec = records.lock(s, r.number)
        rec.data = {**rec.data, "title": "SOP-1 v1 (renamed)", "document_version": "2"}
    assert _people(engine, r.number) == [("trainee", people["emp"])]
    # a person changes: the record's rows are rebuilt, the one removed by hand too
    with engine.unit() as s:
        rec = records.lock(s, r.number)
        rec.data = {**rec.data, "trainee": people["qa2"]}
    assert _people(engine, r.number) == [("trainee", people["qa2"]), ("trainer", trainer)]
    # a list's user column: a change in another column of a row re-indexes (conservative),
    # and the people stay exactly those named
    capa = engine.start("capa", people["owner"], {"title": "Fix", "description": "Leaks"})
    row = {"action": "Clean", "responsible": people["emp"], "due": "2026-12-31"}
    with engine.unit() as s:
        rec = records.lock(s, capa.number)
        rec.data = {**rec.data, "actions": [row]}
    with engine.unit() as s:
        rec = records.lock(s, capa.number)
        rec.data = {**rec.data, "actions": [{**row, "action": "Clean twice"}]}
    assert ("actions", people["emp"]) in _people(engine, capa.number)


def _bulk_open_trainings(engine, number, n):
    """``n`` open, overdue trainings of 500 other trainees, written with plain SQL (as bulk
    loaded data would be): the triggers index them too."""
    with dba(engine) as s:
        rec = s.execute(select(Record).where(Record.number == number)).scalar_one()
        pg = s.get_bind().dialect.name == "postgresql"
        series = ("generate_series(1, :n) g" if pg else
                  "(WITH RECURSIVE c(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM c "
                  "WHERE g < :n) SELECT g FROM c)")
        data = ("json_build_object('trainee', 'user' || (g % 500), 'document', 'SOP-' || g, "
                "'due_date', '2025-01-01')" if pg else
                "json_object('trainee', 'user' || (g % 500), 'document', 'SOP-' || g, "
                "'due_date', '2025-01-01')")
        s.execute(text(f"""
            INSERT INTO records (number, workflow_key, definition_id, definition_hash, title,
                state, state_visit, data, version, created_by_id, created_at, updated_at,
                audit_seq, audit_head, seal)
            SELECT 'TRNB-' || g, 'training_assignment', :did, :dhash, 'Bulk ' || g,
                   'overdue', 1, {data}, 1, :uid, :now, :now, 0, '', ''
            FROM {series}"""),
            {"did": rec.definition_id, "dhash": rec.definition_hash, "uid": rec.created_by_id,
             "n": n, "now": clock.now()})
        if pg:
            s.execute(text("ANALYZE"))  # autovacuum would; SQLite instances are never analysed
        indexed = s.execute(text("SELECT count(*) FROM record_people WHERE field = 'trainee' "
                                 "AND username = 'user7'")).scalar_one()
        assert indexed == n // 500


def test_overdue_training_panel_reads_the_users_rows_only(engine, people, make_user):
    """R-PERF-21: the inbox's overdue-training statement starts from the user's own rows of
    the people index, whatever the number of open trainings of others (20,000 overdue ones
    here): on PostgreSQL no sequential scan and a handful of ``records`` rows read; on
    SQLite the plan searches ``record_people`` by username and ``records`` by id."""
    coord = make_user("tina", "training_coordinator", "employee")
    r = _assign(engine, people, coord)
    _bulk_open_trainings(engine, r.number, OTHERS)
    with engine.reader() as s:
        emma = identity.get_user(s, people["emp"])
        roles = identity.roles_of(s, emma)
        with statements(engine) as seen:
            rows = training.overdue_unheld(s, engine.registry, emma, roles)
        assert rows == []  # due today, and emma holds its task: nothing to add to her inbox
        (statement, params), = [(q, p) for q, p in seen if "record_people" in q]
        assert "JOIN" not in statement.split("WHERE")[0], statement
        conn = s.connection()
        if conn.dialect.name == "postgresql":
            plan = conn.exec_driver_sql("EXPLAIN (ANALYZE, FORMAT JSON) " + statement,
                                        params).scalar()
            nodes = list(plan_nodes(plan[0]["Plan"]))
            assert not [n for n in nodes if n["Node Type"] == "Seq Scan"
                        and n.get("Relation Name") in ("records", "record_people")], nodes
            read = sum(n.get("Actual Rows", 0) + n.get("Rows Removed by Filter", 0)
                       for n in nodes if n.get("Relation Name") == "records")
            assert read < 100, read
        else:
            plan = [row[-1] for row in conn.exec_driver_sql(
                "EXPLAIN QUERY PLAN " + statement, params).all()]
            # records are reached by the ids of the user's rows (rowid=?), not by walking
            # every open training of the (workflow, state) index
            assert any("SEARCH record_people USING COVERING INDEX ix_record_people_username"
                       in p for p in plan), plan
            assert any(p.startswith("SEARCH records") and "rowid=?" in p for p in plan), plan


def test_overdue_training_panel_finds_a_bulk_loaded_training(engine, people, make_user):
    """R-PERF-20: a training written without the engine (bulk-loaded data) is found by the
    panel like any other: the index is kept by the database, not by one writer."""
    coord = make_user("tina", "training_coordinator", "employee")
    r = _assign(engine, people, coord)
    _bulk_open_trainings(engine, r.number, 1000)
    name = make_user("user7", "employee")
    with engine.reader() as s:
        user7 = identity.get_user(s, name)
        rows = training.overdue_unheld(s, engine.registry, user7,
                                       identity.roles_of(s, user7))
    assert len(rows) == 2 and {x.status for x in rows} == {"overdue"}
