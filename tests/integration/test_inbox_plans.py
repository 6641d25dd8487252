"""The inbox's query plans on PostgreSQL grow with the user's work, not with the site.

With tens of thousands of records and tasks (most done, thousands claimable by QA) and
fresh statistics, PostgreSQL's planner would scan ``records`` or ``tasks`` sequentially for a
query that no index serves; the inbox's statements (the page and its counts, for a user
with a few tasks of their own and for a QA user with thousands claimable) must each be
served by indexes. The rows are inserted and ANALYZEd inside the test's transaction, so
they and their statistics are rolled back afterwards.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select, text

from tests.factories import dba, plan_nodes, statements
from workflow import tasks
from workflow.db.models import Record
from workflow.identity import users as identity

RECORDS = 60_000


def _fill(engine, people) -> None:  # type: ignore[no-untyped-def]
    """RECORDS CAPAs with one task each: 90 % done, 10 % open to QA (claimable), and 40
    open ones assigned to olga; dates spread over a year."""
    template = engine.start("capa", people["emp"], {"title": "T", "description": "d"}).number
    with dba(engine) as s:
        rec = s.execute(select(Record).where(Record.number == template)).scalar_one()
        olga = identity.get_user(s, people["owner"]).id
        s.execute(text("""
            INSERT INTO records (number, workflow_key, definition_id, definition_hash, title,
                state, state_visit, data, version, created_by_id, created_at, updated_at,
                audit_seq, audit_head, seal)
            SELECT 'BULK-' || g, 'capa', :did, :dhash, 'Bulk ' || g,
                   CASE WHEN g % 10 = 0 THEN 'open' ELSE 'closed' END, 1, '{}', 1, :uid,
                   now() - (g || ' minutes')::interval, now(), 0, '', ''
            FROM generate_series(1, :n) g"""),
            {"did": rec.definition_id, "dhash": rec.definition_hash, "uid": rec.created_by_id,
             "n": RECORDS})
        s.execute(text("""
            INSERT INTO tasks (record_id, state, state_visit, role, assignee_id, status,
                opened_at, due_at, closed_at)
            SELECT r.id, r.state, 1,
                   CASE WHEN r.id % 1500 = 0 THEN NULL ELSE 'qa' END,
                   CASE WHEN r.id % 1500 = 0 THEN :olga END,
                   CASE WHEN r.state = 'open' OR r.id % 1500 = 0 THEN 'open' ELSE 'done' END,
                   r.created_at, r.created_at + interval '30 days',
                   CASE WHEN r.state = 'open' OR r.id % 1500 = 0 THEN NULL ELSE now() END
            FROM records r WHERE r.number LIKE 'BULK-%'"""), {"olga": olga})
        s.execute(text("ANALYZE records"))
        s.execute(text("ANALYZE tasks"))


def test_inbox_statements_use_indexes_not_sequential_scans(engine, people):
    """R-PERF-12 (R-PERF-10): olga (40 tasks of her own) and quinn (6,000 claimable by QA)
    get their inbox pages, a filtered page and a second page without a sequential scan of
    records or tasks."""
    if engine.sessions.kw["bind"].dialect.name != "postgresql":
        pytest.skip("PostgreSQL query plans")
    _fill(engine, people)
    plans = []
    with engine.reader() as s:
        for name in (people["owner"], people["qa"]):
            user = identity.get_user(s, name)
            first = tasks.inbox(s, user)
            assert len(first.rows) == 25 and first.next_cursor
            with statements(engine) as seen:
                tasks.inbox(s, user)
                tasks.inbox(s, user, cursor=first.next_cursor)
                tasks.inbox(s, user, workflow="capa", overdue=True, scope="claimable")
            inbox_sql = [(q, p) for q, p in seen if "tasks" in q]
            assert len(inbox_sql) >= 6, seen
            for statement, params in inbox_sql:
                plan = s.connection().exec_driver_sql("EXPLAIN (FORMAT JSON) " + statement,
                                                      params).scalar()
                nodes = [(n["Node Type"], n.get("Relation Name", ""))
                         for n in plan_nodes(plan[0]["Plan"])]
                plans.append(nodes)
                seq = [rel for kind, rel in nodes if kind == "Seq Scan"
                       and rel in ("records", "tasks")]
                assert not seq, (name, statement, nodes)
        # the QA user's claimable branch walks the partial index made for it
        assert any(("Index Scan", "tasks") in p or ("Index Only Scan", "tasks") in p
                   for p in plans)
