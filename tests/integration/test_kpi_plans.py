"""How the KPI cohorts read the database (issue 18 item 5): the query shapes behind the
dashboard's speed, checked on the statements the code builds. The figures themselves are
the known-answer tests of test_kpi.py and test_kpi_declared.py (unchanged by these)."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, inspect, select, text

from tests.integration.test_kpi import (
    kpi,
    org,  # noqa: F401 - fixture
)


def _sql(k, key: str) -> str:
    c = k.cohort(key).subquery()
    stmt = select(func.count(), func.sum(c.c.hit)).select_from(c)
    return str(stmt.compile(k.session.get_bind(), compile_kwargs={"literal_binds": True}))


def _plan(k, key: str) -> str:
    if k.session.get_bind().dialect.name != "sqlite":
        pytest.skip("PostgreSQL's plans depend on its statistics (bench/kpi.py measures them)")
    return " | ".join(str(r[-1]) for r in k.session.execute(text("EXPLAIN QUERY PLAN " +
                                                                  _sql(k, key))))


def test_visibility_clause_left_out_only_for_who_sees_every_version(engine, org):  # noqa: F811
    """R-PERF-40: a viewer holding a role of every version of a workflow sees all its
    records, so its cohorts carry no visibility clause (no per-record task lookup); anyone
    else keeps it (initiator, assigned tasks)."""
    assert "tasks" not in _sql(kpi(engine, "quinn"), "capa.open")
    assert "tasks" in _sql(kpi(engine, "otto"), "capa.open")
    assert kpi(engine, "quinn").scope.sees_all_of("capa")
    assert not kpi(engine, "otto").scope.sees_all_of("capa")


def test_record_cohorts_read_the_kpi_index_alone(engine, org):  # noqa: F811
    """R-PERF-41: closed-in-the-period, open and due-date cohorts read ix_records_kpi as a
    covering index, never the wide record rows."""
    k = kpi(engine, "quinn")
    for key in ("capa.open", "capa.overdue", "capa.closure_days", "capa.on_time",
                "cr.void_share"):
        assert "COVERING INDEX ix_records_kpi" in _plan(k, key), key


def test_the_kpi_index_holds_every_record_column_a_cohort_reads(engine, org):  # noqa: F811
    """R-PERF-41: on both databases ix_records_kpi holds every column of records the
    closed-in-the-period, open and due-date cohorts read, the record id they select
    included: SQLite keeps the row id in every index, PostgreSQL only an INCLUDEd column
    (migration 0022; before it, PostgreSQL read every record row too, and at a million
    records scanned the whole table). Checked from the catalog and the statements, so it
    does not depend on the planner's statistics."""
    k = kpi(engine, "quinn")
    bind = k.session.get_bind()
    index = next(i for i in inspect(k.session.connection()).get_indexes("records")
                 if i["name"] == "ix_records_kpi")
    held = set(index["column_names"]) | set(
        index.get("dialect_options", {}).get("postgresql_include", []))
    if bind.dialect.name == "sqlite":
        held.add("id")  # the row id (INTEGER PRIMARY KEY) is in every SQLite index
    assert "id" in held
    for key in ("capa.open", "capa.overdue", "capa.closure_days", "capa.on_time",
                "cr.void_share"):
        read = set(re.findall(r"\brecords\.(\w+)", _sql(k, key)))
        assert read and read <= held, (key, sorted(read - held))


def test_milestones_read_entries_per_finisher_from_the_state_index(engine, org):  # noqa: F811
    """R-PERF-42: a milestone reads each finisher's state entries from
    ix_audit_events_record_state (index only), not every entry into the states."""
    k = kpi(engine, "quinn")
    for key in ("dev.triage_days", "cr.cycle_days", "deviation.triaged_in_time"):
        plan = _plan(k, key)
        assert "COVERING INDEX ix_audit_events_record_state" in plan, (key, plan)


def test_series_read_records_once(engine, org):  # noqa: F811
    """R-PERF-43: the training and deviation series and a count_by KPI's groups carry their
    group on the cohort's rows: the statements read records once (no join back to it)."""
    from tests.factories import statements
    k = kpi(engine, "quinn")
    with statements(engine) as seen:
        k.deviations_by_class()
        k.training_by_document()
        k.training_by_role()
        k.metric("deviation.by_classification")
    for sql, _ in seen:
        assert sql.count("FROM records") + sql.count("JOIN records") <= 1, sql
