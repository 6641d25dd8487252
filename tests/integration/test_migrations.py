"""Alembic is the only way the schema changes, and the migrations match the models
(R-A11-4-2, R-P11-10a-3, R-P11-10e-3, R-A11-17-1).

Runs on a committed database of its own: upgrade to head, downgrade to base, upgrade again;
then alembic's autogenerate comparison must find no difference between the migrated schema
and ``workflow.models.Base.metadata`` on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from tests.factories import owner_url, run_alembic
from workflow.db import engines as db
from workflow.db.models import Base, modelled

pytestmark = [
    pytest.mark.committed,
    # SQLite cannot reflect the expression index; SQLAlchemy says so, and we know
    pytest.mark.filterwarnings(
        "ignore:Skipped unsupported reflection of expression-based index:"
        "sqlalchemy.exc.SAWarning"),
    pytest.mark.filterwarnings(
        "ignore:autogenerate skipping metadata-specified expression-based index:UserWarning"),
]

#: the case-insensitive unique index on users is an expression index, which alembic's
#: autogenerate cannot reflect on every dialect; it is checked by name below instead
EXPRESSION_INDEXES = {"uq_users_username_lower"}
APPEND_ONLY = ("audit_events", "signatures", "definition_versions")


def _differences(dbe: Any) -> list[Any]:
    """What ``alembic revision --autogenerate`` would emit, with migrations/env.py's options
    (compare_type on; server defaults are not compared, as there)."""
    with dbe.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True,
                                                  "include_object": modelled})
        diffs = compare_metadata(ctx, Base.metadata)
    return [d for d in diffs if not _is_expression_index(d)]


def _is_expression_index(diff: Any) -> bool:
    # ("add_index"/"remove_index", Index) or a list of modify tuples
    if isinstance(diff, tuple) and diff and diff[0] in ("add_index", "remove_index"):
        return diff[1].name in EXPRESSION_INDEXES
    return False


def _tables(dbe: Any) -> set[str]:
    return set(inspect(dbe).get_table_names())


def _expected_triggers(dbe: Any) -> set[str]:
    suffixes = ("no_update", "no_delete") if dbe.dialect.name == "sqlite" else \
        ("append_only", "no_truncate")
    return {f"{t}_{s}" for t in APPEND_ONLY for s in suffixes}


def _append_only_triggers(dbe: Any) -> set[str]:
    """The append-only triggers present, from the catalog."""
    sql = ("SELECT name FROM sqlite_master WHERE type = 'trigger'"
           if dbe.dialect.name == "sqlite" else
           "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal AND tgenabled <> 'D'")
    with dbe.connect() as conn:
        names = set(conn.execute(text(sql)).scalars())
    return {n for n in names if n.startswith(APPEND_ONLY)}


def _index_names(dbe: Any, table: str) -> set[str]:
    """Index names from the catalog (reflection skips expression indexes on SQLite)."""
    sql = ("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = :t"
           if dbe.dialect.name == "sqlite" else
           "SELECT indexname FROM pg_indexes WHERE tablename = :t")
    with dbe.connect() as conn:
        return set(conn.execute(text(sql), {"t": table}).scalars())


def test_upgrade_downgrade_upgrade_round_trip(committed_url):
    """R-A11-4-2 R-P11-10a-3 R-P11-10e-3: head -> base -> head works; base leaves only
    alembic's own table; after the second upgrade the append-only triggers are back."""
    head = ScriptDirectory.from_config(db.alembic_config(committed_url)).get_current_head()
    dbe = db.make_engine(owner_url(committed_url))  # migrations: the schema owner
    try:
        assert db.current_revision(dbe) == head
        model_tables = set(Base.metadata.tables)
        assert model_tables <= _tables(dbe)
        assert _append_only_triggers(dbe) == _expected_triggers(dbe)

        run_alembic(dbe, "downgrade", "base")
        assert db.current_revision(dbe) is None
        assert _tables(dbe) <= {"alembic_version"}
        assert _append_only_triggers(dbe) == set()
        if dbe.dialect.name == "postgresql":  # nothing left behind by the downgrade
            with dbe.connect() as conn:
                left = conn.execute(text(
                    "SELECT proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                    "WHERE n.nspname = 'public' UNION ALL SELECT typname FROM pg_type t JOIN "
                    "pg_namespace n ON n.oid = t.typnamespace WHERE n.nspname = 'public' AND "
                    "t.typtype = 'e'")).scalars().all()
            assert left == []

        db.upgrade(dbe)
        assert db.current_revision(dbe) == head
        assert model_tables <= _tables(dbe)
        with dbe.begin() as conn:
            conn.execute(text("INSERT INTO audit_chains (name, seq, head) VALUES ('t', 1, 'x')"))
        # the triggers were recreated by the second upgrade: audit rows cannot be rewritten
        with pytest.raises(DBAPIError, match="append-only"), dbe.begin() as conn:
            conn.execute(text(
                "INSERT INTO audit_events (chain, seq, at, actor_name, action, changes, "
                "prev_hash, hash) VALUES ('t', 1, :at, 'x', 'x', '{}', 'p', 'h')"),
                {"at": "2026-03-02 09:00:00+00:00"})
            conn.execute(text("UPDATE audit_events SET hash = 'forged'"))
        assert _differences(dbe) == []
    finally:
        dbe.dispose()


def test_every_step_downgrades_and_upgrades_again(committed_url):
    """R-A11-4-2: each revision's downgrade undoes exactly its upgrade: stepping down one
    revision at a time and back up to head works, and the case-insensitive username index
    and the append-only triggers survive every step."""
    script = ScriptDirectory.from_config(db.alembic_config(committed_url))
    revisions = [r.revision for r in script.walk_revisions()]  # head first
    dbe = db.make_engine(owner_url(committed_url))  # migrations: the schema owner
    try:
        for rev in revisions:
            below = script.get_revision(rev).down_revision
            assert db.current_revision(dbe) == rev
            run_alembic(dbe, "downgrade", "-1")
            assert db.current_revision(dbe) == below
            run_alembic(dbe, "upgrade", rev)  # and up again: the step is repeatable
            assert db.current_revision(dbe) == rev
            assert EXPRESSION_INDEXES <= _index_names(dbe, "users"), rev
            assert _append_only_triggers(dbe) == _expected_triggers(dbe), rev
            run_alembic(dbe, "downgrade", "-1")  # on to the next step down
        assert db.current_revision(dbe) is None
        db.upgrade(dbe)
        assert db.current_revision(dbe) == revisions[0]
        assert _differences(dbe) == []
    finally:
        dbe.dispose()


KPI_INDEXES = {"ix_audit_events_to_state", "ix_audit_events_from_state"}


def test_kpi_indexes_migration_both_ways(committed_url):
    """R-A11-4-2: 0005 adds the KPI indexes on audit_events and its downgrade removes exactly
    them (0004's schema is back, the append-only triggers stay); upgrading again restores
    them."""
    dbe = db.make_engine(owner_url(committed_url))  # migrations: the schema owner
    try:
        assert KPI_INDEXES <= _index_names(dbe, "audit_events")
        run_alembic(dbe, "downgrade", "0004")
        assert db.current_revision(dbe) == "0004"
        left = _index_names(dbe, "audit_events")
        assert not KPI_INDEXES & left
        assert {"ix_audit_events_record_id", "ix_audit_events_at"} <= left
        assert _append_only_triggers(dbe) == _expected_triggers(dbe)
        run_alembic(dbe, "upgrade", "0005")
        assert KPI_INDEXES <= _index_names(dbe, "audit_events")
        run_alembic(dbe, "upgrade", "head")
        assert _differences(dbe) == []
    finally:
        dbe.dispose()


def test_models_match_migrations(committed_url):
    """R-A11-4-2 R-A11-17-1 R-P11-300a-1 R-P11-100a-1: autogenerate finds nothing to do at
    head: the models and the migrations describe the same schema (tables, columns, types,
    indexes, constraints). The expression index the comparison must skip is there and does
    its job: two usernames differing only in case are refused by the database."""
    dbe = db.make_engine(committed_url)
    try:
        assert _differences(dbe) == []
        assert EXPRESSION_INDEXES <= _index_names(dbe, "users")
        row = ("INSERT INTO users (username, full_name, email, timezone, active, is_system, "
               "created_at) VALUES (:u, 'X', '', 'UTC', true, false, :at)")
        with dbe.begin() as conn:
            conn.execute(text(row), {"u": "casey", "at": "2026-03-02 09:00:00+00:00"})
        with pytest.raises(IntegrityError, match="uq_users_username_lower|UNIQUE"), \
                dbe.begin() as conn:
            conn.execute(text(row), {"u": "Casey", "at": "2026-03-02 09:00:00+00:00"})
    finally:
        dbe.dispose()
