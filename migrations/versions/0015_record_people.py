"""record_people: the people a record's data names, kept by the database

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-01 12:00:00

Issue 18 (R-PERF-20): "the records that name me in field F" (the inbox's overdue-training
panel, My training) was a scan of every open training record's JSON (250-380 ms at 1M
records). Now it is a look-up in ``ix_record_people_username``.

- ``definition_people``: per published definition version, where its records name people
  (a user field or a list of users: ``sub`` = ''; a user column of a table field: ``sub`` =
  the column). Written by workflow/registry.py when a version is published; backfilled
  here from the stored sources.
- ``record_people`` (record_id, field, username): triggers on ``records`` write it in the
  statement that inserts the record or changes its data or definition version, so it is
  part of the same unit of work as the change (workflow/db/uow.py): a rollback takes it
  back too, and no writer (the engine's create, the write-back of a step, a migration,
  bulk-loaded benchmark data) can skip it. An update deletes only the names that are gone
  and inserts only new ones (INSERT ... ON CONFLICT DO NOTHING), so a step that leaves the
  people alone writes nothing here.

Derived data (like record_search, migration 0011): not sealed, not part of verify-audit;
dropping and re-running this migration rebuilds it.
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
import yaml
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# the (field, username) pairs a row names: every string found at a definition_people place
# (SQLite JSON1: json_tree of the field; a table's column is a key below it)
_SQLITE_PEOPLE = (
    "SELECT p.field AS field, j.value AS username FROM definition_people p, "
    "json_tree({row}.data, '$.\"' || p.field || '\"') j "
    "WHERE p.definition_hash = {row}.definition_hash AND j.type = 'text' AND j.value <> '' "
    "AND (p.sub = '' OR j.key = p.sub)")

_SQLITE = [
    "CREATE TRIGGER record_people_insert AFTER INSERT ON records BEGIN "
    "INSERT OR IGNORE INTO record_people (record_id, field, username) "
    f"SELECT new.id, field, username FROM ({_SQLITE_PEOPLE.format(row='new')}); END",
    "CREATE TRIGGER record_people_update AFTER UPDATE OF data, definition_hash ON records "
    "BEGIN "
    "DELETE FROM record_people WHERE record_id = new.id AND (field, username) NOT IN "
    f"(SELECT field, username FROM ({_SQLITE_PEOPLE.format(row='new')})); "
    "INSERT OR IGNORE INTO record_people (record_id, field, username) "
    f"SELECT new.id, field, username FROM ({_SQLITE_PEOPLE.format(row='new')}); END",
    # the backfill: the same places, joined (SQLite has no LATERAL; json_tree may read the
    # columns of a table joined before it)
    "INSERT OR IGNORE INTO record_people (record_id, field, username) "
    "SELECT r.id, p.field, j.value FROM definition_people p "
    "JOIN records r ON r.definition_hash = p.definition_hash, "
    "json_tree(r.data, '$.\"' || p.field || '\"') j "
    "WHERE j.type = 'text' AND j.value <> '' AND (p.sub = '' OR j.key = p.sub)",
]

_POSTGRES = [
    # lax mode: "[*]" wraps a single value, so one path serves a user field and a list
    "CREATE FUNCTION record_people_of(h text, data json) "
    "RETURNS TABLE (field text, username text) LANGUAGE sql STABLE AS $$ "
    "SELECT DISTINCT p.field::text, v #>> '{}' FROM definition_people p, "
    "jsonb_path_query(coalesce(data, '{}')::jsonb, ('lax $.\"' || p.field || '\"[*]' || "
    "CASE WHEN p.sub = '' THEN '' ELSE '.\"' || p.sub || '\"' END)::jsonpath) AS v "
    "WHERE p.definition_hash = h AND jsonb_typeof(v) = 'string' AND v #>> '{}' <> '' $$",
    "CREATE FUNCTION record_people_sync() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
    "IF TG_OP = 'UPDATE' THEN "
    "DELETE FROM record_people r WHERE r.record_id = NEW.id AND (r.field, r.username) "
    "NOT IN (SELECT o.field, o.username FROM record_people_of(NEW.definition_hash, NEW.data) o); "
    "END IF; "
    "INSERT INTO record_people (record_id, field, username) "
    "SELECT NEW.id, o.field, o.username FROM record_people_of(NEW.definition_hash, NEW.data) o "
    "ON CONFLICT DO NOTHING; "
    "RETURN NULL; END $$",
    "CREATE TRIGGER record_people_sync AFTER INSERT OR UPDATE OF data, definition_hash "
    "ON records FOR EACH ROW EXECUTE FUNCTION record_people_sync()",
    "INSERT INTO record_people (record_id, field, username) "
    "SELECT r.id, o.field, o.username FROM records r, "
    "LATERAL record_people_of(r.definition_hash, r.data) o ON CONFLICT DO NOTHING",
    "ANALYZE record_people",
]


def _places(source: str) -> list[tuple[str, str]]:
    """workflow.spec.fields.people_places over a stored source (kept here as it was when
    this migration was written: a migration never imports the code it migrates for)."""
    doc: Any = yaml.safe_load(source) or {}
    out: list[tuple[str, str]] = []
    for name, spec in (doc.get("fields") or {}).items():
        t = spec.get("type")
        if t == "user" or (t == "list" and (spec.get("item") or {}).get("type") == "user"):
            out.append((name, ""))
        elif t == "list":
            out += [(name, sub) for sub, s in (spec.get("fields") or {}).items()
                    if s.get("type") == "user"]
    return out


def upgrade() -> None:
    op.create_table(
        "definition_people",
        sa.Column("definition_hash", sa.String(length=64), nullable=False),
        sa.Column("field", sa.String(length=40), nullable=False),
        sa.Column("sub", sa.String(length=40), nullable=False),
        sa.PrimaryKeyConstraint("definition_hash", "field", "sub",
                                name=op.f("pk_definition_people")),
    )
    op.create_table(
        "record_people",
        sa.Column("record_id", sa.Integer(), nullable=False),
        sa.Column("field", sa.String(length=40), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["record_id"], ["records.id"],
                                name=op.f("fk_record_people_record_id_records")),
        sa.PrimaryKeyConstraint("record_id", "field", "username",
                                name=op.f("pk_record_people")),
    )
    op.create_index("ix_record_people_username", "record_people",
                    ["username", "field", "record_id"])
    conn = op.get_bind()
    rows = conn.execute(sa.text("SELECT content_hash, source FROM definition_versions")).all()
    places = [{"h": h, "f": f, "s": sub} for h, source in rows for f, sub in _places(source)]
    if places:
        conn.execute(sa.text("INSERT INTO definition_people (definition_hash, field, sub) "
                             "VALUES (:h, :f, :s)"), places)
    for sql in _SQLITE if conn.dialect.name == "sqlite" else _POSTGRES:
        conn.exec_driver_sql(sql)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name in ("record_people_insert", "record_people_update"):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    else:
        op.execute("DROP TRIGGER IF EXISTS record_people_sync ON records")
        op.execute("DROP FUNCTION IF EXISTS record_people_sync()")
        op.execute("DROP FUNCTION IF EXISTS record_people_of(text, json)")
    op.drop_index("ix_record_people_username", table_name="record_people")
    op.drop_table("record_people")
    op.drop_table("definition_people")
