"""verify-audit reads the record chains in ranges of record ids, each with a fixed number of Core
statements (events streamed in batches), and splits the ranges over worker processes; a
tampered row is named wherever it lies, also in the last range of a multi-process run
(workflow/audit/chains.py, workflow/audit/integrity.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event, text

from tests.conftest import TEST_KEY
from tests.factories import acting_engine, dba
from workflow.audit import chains, integrity
from workflow.audit import trail as audit
from workflow.db import engines as db
from workflow.db.models import Record
from workflow.engine.core import Engine
from workflow.identity import enablement
from workflow.identity import users as identity
from workflow.registry import Registry


def _people(engine: Engine) -> None:
    with engine.unit() as s:
        system = identity.system_user(s)
        for name, roles in (("emma", ["employee"]), ("quinn", ["qa", "employee"])):
            u = identity.create_user(s, name, name.title(), email="", actor=system, reason="t")
            for r in roles:
                identity.grant_role(s, u, r, actor=system, reason="t")
            enablement.enable_for_system(s, u, reason="t")


def _records(engine: Engine, n: int) -> list[int]:
    ids = []
    for i in range(n):
        r = engine.start("capa", "emma", {"title": f"Batch {i}", "description": "d"})
        engine.fire(r.number, "assign", "quinn", {"owner": "quinn"})
        ids.append(r.record_id)
    return ids


def _alter_last_event(engine: Engine, record_id: int) -> tuple[int, int]:
    """Change the last event of ``record_id`` with plain SQL, the triggers removed as an
    administrator could; returns (seq, row id)."""
    with dba(engine) as s:
        sqlite = s.get_bind().dialect.name == "sqlite"
        if sqlite:
            s.execute(text("DROP TRIGGER audit_events_no_update"))
        else:
            s.execute(text("ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only"))
        seq, row_id = s.execute(text(
            "SELECT seq, id FROM audit_events WHERE chain = :c ORDER BY seq DESC LIMIT 1"),
            {"c": audit.record_chain(record_id)}).one()
        s.execute(text("UPDATE audit_events SET reason = 'nothing happened' WHERE id = :i"),
                  {"i": row_id})
    return seq, row_id


def test_a_range_of_records_is_read_in_three_statements(engine, people):
    """R-PERF-51: verifying a range of records runs three statements (the records, their
    signatures, their events streamed in (record, seq) order), however many records and
    events the range holds, and the whole verification one such set per range."""
    for i in range(5):
        r = engine.start("capa", people["emp"], {"title": f"R {i}", "description": "d"})
        engine.fire(r.number, "assign", people["qa"], {"owner": people["owner"]})
    statements: list[str] = []
    with engine.reader() as s:
        conn = s.connection()

        def count(_c: Any, _cur: Any, statement: str, *_a: Any) -> None:
            statements.append(statement)

        event.listen(conn, "before_cursor_execute", count)
        try:
            parts = chains.ranges(conn, 2)
            for lo, hi in parts:
                before = len(statements)
                counts = chains.verify_range(conn, engine.signing_key, lo, hi)
                assert len(statements) - before == 3
                assert not counts.problems
            few = chains.verify_range(conn, engine.signing_key, 1, 2)
            many = chains.verify_range(conn, engine.signing_key, 1, parts[-1][1])
        finally:
            event.remove(conn, "before_cursor_execute", count)
    assert len(statements) == 3 + 3 * len(parts) + 3 + 3  # ranges(): two maxima, the bounds
    assert many.events > few.events and many.chains > few.chains
    assert all("audit_events" in q or "records" in q or "signatures" in q for q in statements)


def test_ranges_hold_size_records_however_sparse_the_ids(engine, people):
    """R-PERF-51: the ranges are cut at every ``size``-th existing record id, not at
    multiples of ``size``: ids far apart (a PostgreSQL sequence is not rolled back with the
    rows it numbered; the test database's ids reach hundreds of thousands) cost no empty
    ranges, and together the ranges still cover every id from 1 to the highest one."""
    for i in range(3):
        engine.start("capa", people["emp"], {"title": f"S {i}", "description": "d"})
    cols = [c.name for c in Record.__table__.columns]
    with dba(engine) as s:
        # the same rows again a million ids further on (copies: only their ids matter here)
        picked = ", ".join("id + 1000000" if c == "id" else "number || '-S'" if c == "number"
                           else c for c in cols)
        s.execute(text(f"INSERT INTO records ({', '.join(cols)}) SELECT {picked} FROM records"))
        conn = s.connection()
        ids = [i for (i,) in conn.execute(text("SELECT id FROM records ORDER BY id"))]
        parts = chains.ranges(conn, 2)
    assert ids[-1] > 1_000_000 and len(ids) >= 6
    assert len(parts) == (len(ids) + 1) // 2  # not ~500,000 ranges of two ids
    assert parts[0][0] == 1 and parts[-1][1] == ids[-1] + 1
    assert all(a[1] == b[0] for a, b in zip(parts, parts[1:], strict=False))  # no gap
    assert all(1 <= sum(lo <= i < hi for i in ids) <= 2 for lo, hi in parts)


@pytest.fixture
def committed(committed_url: str, database_url: str, shipped_definitions: dict[str, Any]
              ) -> Iterator[Engine]:
    """A committed database other processes can read, written by an engine that can take
    the administrator's rights (:func:`tests.factories.dba`)."""
    dbe = acting_engine(committed_url, database_url)
    engine = Engine(db.make_sessionmaker(dbe), TEST_KEY, registry=Registry())
    with engine.unit() as s:
        system = identity.system_user(s)
        for d in shipped_definitions.values():
            engine.registry.publish(s, d, system, reason="test")
    _people(engine)
    yield engine
    dbe.dispose()


@pytest.mark.committed
def test_workers_name_a_tampered_row_in_the_last_range(committed, monkeypatch):
    """R-PERF-52: with the record chains split over two worker processes in several ranges,
    a clean database verifies with the same counts as in one process, and an event altered
    in the last record of the last range is named (chain, sequence number, row id) first,
    as in one process."""
    ids = _records(committed, 7)
    monkeypatch.setattr(chains, "RANGE", 2)  # 4 ranges of record ids for 2 workers
    one = integrity.verify_all(committed, workers=1)
    two = integrity.verify_all(committed, workers=2)
    assert one.ok and two.ok, (one.problems, two.problems)
    assert (two.chains, two.events, two.signatures) == (one.chains, one.events, one.signatures)

    last = max(ids)
    with committed.reader() as s:
        assert chains.ranges(s.connection())[-1][0] <= last  # the last range holds it
    seq, row_id = _alter_last_event(committed, last)
    for report in (integrity.verify_all(committed, workers=2),
                   integrity.verify_all(committed, workers=1)):
        first = report.problems[0]
        assert (first.chain, first.seq, first.event_id) == (audit.record_chain(last), seq,
                                                            row_id)
        assert "altered" in first.message
        assert any(p.kind == "protection" for p in report.problems)
