"""The query plans of the everyday pages grow with the user's work, not with the site.

Issue 18 target 2 (pages at a million records): the inbox (tests/integration/
test_inbox_plans.py), the QA inbox with thousands of claimable tasks, the system audit
trail, the record search and list, and the record page. With tens of thousands of records,
tasks and audit events and fresh statistics, each statement these pages send is checked:

- PostgreSQL (``EXPLAIN (FORMAT JSON)``): no sequential scan of records, tasks, audit_events
  or the search index (a capped count over rows most records are may read records or the
  search index in their own order until the cap: it stops there);
- SQLite (``EXPLAIN QUERY PLAN``): no "SCAN" of tasks or audit_events without an index, and
  the pages that show a table's rows newest first read them in index order (no temporary
  B-tree to sort them), so a page stops after its rows.

The rows are inserted (and on PostgreSQL ANALYZEd) inside the test's transaction, so they
and their statistics are rolled back afterwards.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select, text

from tests.factories import dba, plan_nodes, statements
from workflow import tasks
from workflow.db.models import Record
from workflow.identity import users as identity
from workflow.queries import audit as trail
from workflow.queries import records as record_queries
from workflow.queries import search

RECORDS = 60_000
EVENTS = 100_000
BIG = ("records", "tasks", "audit_events", "record_search")


def _series(s: Any, n: int) -> str:
    """A FROM clause of the numbers 1..n as ``g`` (both databases)."""
    if s.get_bind().dialect.name == "postgresql":
        return f"generate_series(1, {n}) g"
    return f"(WITH RECURSIVE c(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM c WHERE g < {n}) " \
        "SELECT g FROM c) AS gs"


def _fill(engine: Any, people: dict[str, str]) -> str:
    """RECORDS CAPAs (90 % closed) with one task each (10 % open to QA, 40 assigned to
    olga) and EVENTS audit events on them; returns a CAPA's number for the record page."""
    template = engine.start("capa", people["emp"], {"title": "T pump", "description": "d"}
                            ).number
    with dba(engine) as s:
        pg = s.get_bind().dialect.name == "postgresql"
        rec = s.execute(select(Record).where(Record.number == template)).scalar_one()
        olga = identity.get_user(s, people["owner"]).id
        ago = "now() - (g || ' minutes')::interval" if pg else \
            "datetime('now', '-' || g || ' minutes')"
        now = "now()" if pg else "datetime('now')"
        s.execute(text(f"""
            INSERT INTO records (number, workflow_key, definition_id, definition_hash, title,
                state, state_visit, data, version, created_by_id, created_at, updated_at,
                audit_seq, audit_head, seal)
            SELECT 'BULK-' || g, 'capa', :did, :dhash, 'Bulk pump ' || g,
                   CASE WHEN g % 10 = 0 THEN 'open' ELSE 'closed' END, 1, '{{}}', 1, :uid,
                   {ago}, {now}, 0, '', ''
            FROM {_series(s, RECORDS)}"""),
            {"did": rec.definition_id, "dhash": rec.definition_hash, "uid": rec.created_by_id})
        due = "r.created_at + interval '30 days'" if pg else "datetime(r.created_at, '+30 days')"
        s.execute(text(f"""
            INSERT INTO tasks (record_id, state, state_visit, role, assignee_id, status,
                opened_at, due_at, closed_at)
            SELECT r.id, r.state, 1,
                   CASE WHEN r.id % 1500 = 0 THEN NULL ELSE 'qa' END,
                   CASE WHEN r.id % 1500 = 0 THEN :olga END,
                   CASE WHEN r.state = 'open' OR r.id % 1500 = 0 THEN 'open' ELSE 'done' END,
                   r.created_at, {due},
                   CASE WHEN r.state = 'open' OR r.id % 1500 = 0 THEN NULL ELSE {now} END
            FROM records r WHERE r.number LIKE 'BULK-%'"""), {"olga": olga})
        lo = s.execute(text("SELECT min(id) FROM records WHERE number LIKE 'BULK-%'")).scalar()
        s.execute(text(f"""
            INSERT INTO audit_events (chain, seq, at, actor_id, actor_name, action, record_id,
                record_version, changes, prev_hash, hash)
            SELECT 'bulk:' || g, 1, {ago}, :uid, 'Bulk Person', 'update',
                   :lo + (g % {RECORDS}), 1, '{{}}', '', ''
            FROM {_series(s, EVENTS)}"""), {"uid": rec.created_by_id, "lo": lo})
        s.execute(text("ANALYZE"))
    return template


def _plans(engine: Any, s: Any, seen: list[tuple[str, Any]]) -> list[tuple[str, list[Any]]]:
    """(statement, plan nodes) of each statement that reads a big table."""
    pg = engine.sessions.kw["bind"].dialect.name == "postgresql"
    out = []
    for statement, params in seen:
        if not any(t in statement for t in BIG) or not statement.lstrip().upper().startswith(
                ("SELECT", "WITH")):
            continue
        conn = s.connection()
        if pg:
            plan = conn.exec_driver_sql("EXPLAIN (FORMAT JSON) " + statement, params).scalar()
            out.append((statement, list(plan_nodes(plan[0]["Plan"]))))
        else:
            out.append((statement, [row[-1] for row in conn.exec_driver_sql(
                "EXPLAIN QUERY PLAN " + statement, params)]))
    return out


def _no_table_scans(engine: Any, plans: list[tuple[str, list[Any]]], page: str,
                    ordered: tuple[str, ...] = ()) -> None:
    pg = engine.sessions.kw["bind"].dialect.name == "postgresql"
    assert plans, page
    for statement, nodes in plans:
        if pg:
            # records and the search index may be read in their own order only by a capped
            # count (a word most records hold, the list of a person who sees most records:
            # the scan stops after COUNT_CAP + 1 rows); tasks and events never
            capped = nodes[0]["Node Type"] == "Aggregate" and any(
                n["Node Type"] == "Limit" for n in nodes)
            seq = [n.get("Relation Name") for n in nodes if n["Node Type"] == "Seq Scan"
                   and n.get("Relation Name") in BIG
                   and not (capped and n.get("Relation Name") in ("records", "record_search"))]
            assert not seq, (page, seq, statement, [n["Node Type"] for n in nodes])
        else:
            scans = [n for n in nodes if n.startswith("SCAN ")
                     and n.split()[1] in ("tasks", "audit_events")]
            # a rowid walk in the order asked for stops after the page (no sort follows)
            sorted_all = any("TEMP B-TREE FOR ORDER BY" in n for n in nodes)
            assert not (scans and sorted_all), (page, statement, nodes)
            if any(f"FROM {t} " in statement for t in ordered):
                assert not sorted_all, (page, statement, nodes)


@pytest.fixture
def filled(engine: Any, people: dict[str, str]) -> str:
    return _fill(engine, people)


def test_qa_inbox_reads_indexes(engine, people, filled):
    """R-PERF-60: the QA inbox (6,000 tasks claimable by QA) and its counts, first and
    second page: every statement served by indexes (no sequential scan of records or
    tasks on PostgreSQL; the partial indexes of migration 0012 on SQLite)."""
    with engine.reader() as s:
        user = identity.get_user(s, people["qa"])
        first = tasks.inbox(s, user)
        assert len(first.rows) == 25 and first.capped
        with statements(engine) as seen:
            tasks.inbox(s, user)
            tasks.inbox(s, user, cursor=first.next_cursor)
        plans = _plans(engine, s, seen)
        _no_table_scans(engine, plans, "qa inbox")
        # every claimable branch walks the claimable index (R-PERF-66)
        assert all("ix_tasks_claimable_role_due" in str(nodes) for _st, nodes in plans)


def test_claimable_branches_never_read_the_assigned_tasks_index(engine, people, filled):
    """R-PERF-66: with the statistics SQLite had at a million records (250,000 unassigned
    open tasks, ~1,650 open tasks an assignee on average), no claimable branch of an inbox
    is read through ix_tasks_open_assignee_due (it indexes assigned tasks only, migration
    0020): before, the planner walked every unassigned open task of the site there."""
    with engine.reader() as s:
        conn = s.connection()
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("DELETE FROM sqlite_stat1 WHERE tbl = 'tasks'")
            conn.exec_driver_sql(
                "INSERT INTO sqlite_stat1 VALUES ('tasks', 'ix_tasks_open_assignee_due', "
                "'383509 1654 1 1'), ('tasks', 'ix_tasks_claimable_role_due', "
                "'249585 124793 1 1'), ('tasks', 'ix_tasks_record_status', '3734918 4 4'), "
                "('tasks', 'ix_tasks_assignee_record', '3734918 16030 3')")
            conn.exec_driver_sql("ANALYZE sqlite_schema")
        for name in (people["owner"], people["qa"]):
            user = identity.get_user(s, name)
            roles = identity.roles_of(s, user)
            with statements(engine) as seen:
                tasks.inbox(s, user)
            plans = _plans(engine, s, seen)
            assert len(plans) == 2  # the page and its counts
            for statement, nodes in plans:
                # one walk of the claimable index per role at least (the page reads dated
                # and undated tasks apart)
                walks = str(nodes).count("ix_tasks_claimable_role_due")
                assert walks >= len(roles), (name, statement, nodes)


def test_system_audit_trail_pages_read_the_newest_events_by_index(engine, people, filled):
    """R-PERF-61: the system audit trail's first page and the page before an event read
    the newest events in index order (no sequential scan of audit_events, no sort of the
    whole trail), and the action filter's list comes from the definitions, not the trail."""
    with engine.reader() as s:
        first = trail.page(s, trail.AuditFilter(), 100)
        assert len(first.rows) == 100 and first.older
        with statements(engine) as seen:
            trail.page(s, trail.AuditFilter(), 100)
            trail.page(s, trail.AuditFilter(before_id=first.older), 100)
            trail.page(s, trail.AuditFilter(after_id=first.older), 100)
            trail.actions()
        plans = _plans(engine, s, seen)
        assert len(plans) == 3  # actions() reads nothing
        _no_table_scans(engine, plans, "audit trail", ordered=("audit_events",))


def test_record_search_and_list_read_indexes(engine, people, filled):
    """R-PERF-62 R-PERF-65: the record search for a word most records hold ("pump", 60,000 matches),
    its capped count, its second page and the unfiltered list: no sequential scan of
    records, tasks or the search index. The visibility rule's "had a task on it" reads the
    person's own tasks (ix_tasks_assignee_record, migration 0019), never all tasks."""
    with engine.reader() as s:
        user = identity.get_user(s, people["qa"])
        roles = identity.roles_of(s, user)
        first = search.search(s, engine.registry, user, roles, search.RecordQuery(q="pump"),
                              count=True)
        assert first.capped and first.next
        with statements(engine) as seen:
            search.search(s, engine.registry, user, roles, search.RecordQuery(q="pump"),
                          count=True)
            search.search(s, engine.registry, user, roles, search.RecordQuery(q="pump"),
                          cursor=first.next)
            search.search(s, engine.registry, user, roles, search.RecordQuery(), count=True)
        _no_table_scans(engine, _plans(engine, s, seen), "record search")


def test_record_page_reads_one_records_rows(engine, people, filled):
    """R-PERF-63: the record page (record, trail, signatures, links, tasks, step options)
    reads the record's own rows by index: no sequential scan of records, tasks or
    audit_events, whatever the size of the site."""
    with engine.reader() as s, statements(engine) as seen:
        record_queries.record_page(s, engine, filled, people["owner"])
    with engine.reader() as s:
        _no_table_scans(engine, _plans(engine, s, seen), "record page")


def test_newest_definitions_are_read_in_one_statement(engine):
    """R-PERF-64: the record search and list pages (and every caller of the newest
    definitions) read the newest version of every workflow in one statement, not one a
    workflow (22 statements a request with the shipped definitions)."""
    from workflow.queries import definitions

    with engine.reader() as s:
        first = definitions.latest_definitions(s, engine.registry)
        with statements(engine) as seen:
            again = definitions.latest_definitions(s, engine.registry)
            known = engine.registry.known(s)
    assert len(first) > 10 and [d.content_hash for d in again] == [
        d.content_hash for d in first]
    assert sorted(known) == [d.key for d in first]
    assert len(seen) == 2, seen
