"""The inbox's "Your overdue training" statement on PostgreSQL reads open trainings through
the (workflow_key, state) index, not every training record ever made: with 60,000 completed
trainings (and fresh statistics) it must not scan ``records`` sequentially."""

from __future__ import annotations

import pytest
from sqlalchemy import select, text

from tests.factories import dba, plan_nodes, statements
from workflow import clock
from workflow.db.models import Record
from workflow.identity import users as identity
from workflow.queries import training

RECORDS = 60_000


def test_overdue_training_in_the_inbox_uses_the_index(engine, people, make_user):
    """R-UI-51: the inbox's overdue-training statement is served by an index at 60,000
    completed trainings, reading the open trainings only (measured: without the open-states
    condition the index scan read all 60,000 rows and filtered them)."""
    if engine.sessions.kw["bind"].dialect.name != "postgresql":
        pytest.skip("PostgreSQL query plans")
    make_user("tina", "training_coordinator", "employee")
    r = engine.start("training_assignment", "tina", {
        "title": "SOP-1 v1", "document": "SOP-1", "document_version": "1",
        "trainee": people["emp"], "due_date": clock.now().date().isoformat()})
    with dba(engine) as s:
        rec = s.execute(select(Record).where(Record.number == r.number)).scalar_one()
        s.execute(text("""
            INSERT INTO records (number, workflow_key, definition_id, definition_hash, title,
                state, state_visit, data, version, created_by_id, created_at, updated_at,
                closed_at, outcome, audit_seq, audit_head, seal)
            SELECT 'TRNB-' || g, 'training_assignment', :did, :dhash, 'Bulk ' || g,
                   'completed', 1,
                   json_build_object('trainee', 'user' || (g % 500), 'document', 'SOP-' || g,
                                     'due_date', '2025-01-01'),
                   1, :uid, now(), now(), now(), 'done', 0, '', ''
            FROM generate_series(1, :n) g"""),
            {"did": rec.definition_id, "dhash": rec.definition_hash, "uid": rec.created_by_id,
             "n": RECORDS})
        s.execute(text("ANALYZE records"))
    with engine.reader() as s:
        emma = identity.get_user(s, people["emp"])
        roles = identity.roles_of(s, emma)
        with statements(engine) as seen:
            rows = training.overdue_unheld(s, engine.registry, emma, roles)
        assert rows == []  # due today, and emma holds its task: nothing to add to her inbox
        (statement, params), = [(q, p) for q, p in seen if "record_people" in q]
        plan = s.connection().exec_driver_sql("EXPLAIN (ANALYZE, FORMAT JSON) " + statement,
                                              params).scalar()
        nodes = list(plan_nodes(plan[0]["Plan"]))
        assert not [n for n in nodes if n["Node Type"] == "Seq Scan"
                    and n.get("Relation Name") == "records"], nodes
        # and the index reads the open trainings only, not the 60,000 completed ones
        read = sum(n.get("Actual Rows", 0) + n.get("Rows Removed by Filter", 0)
                   for n in nodes if n.get("Relation Name") == "records")
        assert read < 100, read
