"""record_people is rewritten only when a step changes the people a record names

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-01 15:40:00

Issue 18 (engine regression since 0015): the people-index trigger ran on every write of a
record's data, and each run walked every people place of the record with json_tree, deleted
what was gone and inserted what was new, about 140 us of each step's record UPDATE on SQLite,
although most steps leave the people alone (a CAPA names its owner once, at assignment). Now
the update trigger (SQLite) and the trigger function (PostgreSQL) first compare the record's
value at each people place of its definition, old against new, and do the work only when one
differs or the definition version changed: the index holds exactly what it held before, and
a step that changes no person writes nothing here and reads one JSON value per place.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# the (field, username) pairs a row names (as in 0015; a migration never imports another)
_SQLITE_PEOPLE = (
    "SELECT p.field AS field, j.value AS username FROM definition_people p, "
    "json_tree({row}.data, '$.\"' || p.field || '\"') j "
    "WHERE p.definition_hash = {row}.definition_hash AND j.type = 'text' AND j.value <> '' "
    "AND (p.sub = '' OR j.key = p.sub)")
_SQLITE_BODY = (
    "BEGIN "
    "DELETE FROM record_people WHERE record_id = new.id AND (field, username) NOT IN "
    f"(SELECT field, username FROM ({_SQLITE_PEOPLE.format(row='new')})); "
    "INSERT OR IGNORE INTO record_people (record_id, field, username) "
    f"SELECT new.id, field, username FROM ({_SQLITE_PEOPLE.format(row='new')}); END")
_SQLITE_CHANGED = (
    "WHEN old.definition_hash IS NOT new.definition_hash OR EXISTS (SELECT 1 FROM "
    "definition_people p WHERE p.definition_hash = new.definition_hash AND "
    "json_extract(old.data, '$.\"' || p.field || '\"') IS NOT "
    "json_extract(new.data, '$.\"' || p.field || '\"')) ")
_SQLITE_TRIGGER = ("CREATE TRIGGER record_people_update AFTER UPDATE OF data, definition_hash "
                   "ON records {when}" + _SQLITE_BODY)

_PG_FUNCTION = (
    "CREATE OR REPLACE FUNCTION record_people_sync() RETURNS trigger LANGUAGE plpgsql AS $$ "
    "BEGIN "
    "IF TG_OP = 'UPDATE' THEN "
    "{skip}"
    "DELETE FROM record_people r WHERE r.record_id = NEW.id AND (r.field, r.username) "
    "NOT IN (SELECT o.field, o.username FROM record_people_of(NEW.definition_hash, NEW.data) o); "
    "END IF; "
    "INSERT INTO record_people (record_id, field, username) "
    "SELECT NEW.id, o.field, o.username FROM record_people_of(NEW.definition_hash, NEW.data) o "
    "ON CONFLICT DO NOTHING; "
    "RETURN NULL; END $$")
_PG_SKIP = (
    "IF OLD.definition_hash = NEW.definition_hash AND NOT EXISTS (SELECT 1 FROM "
    "definition_people p WHERE p.definition_hash = NEW.definition_hash AND "
    "(OLD.data -> p.field::text)::text IS DISTINCT FROM (NEW.data -> p.field::text)::text) "
    "THEN RETURN NULL; END IF; ")


def _apply(changed_only: bool) -> None:
    conn = op.get_bind()
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("DROP TRIGGER IF EXISTS record_people_update")
        conn.exec_driver_sql(_SQLITE_TRIGGER.format(when=_SQLITE_CHANGED if changed_only
                                                    else ""))
    else:
        conn.exec_driver_sql(_PG_FUNCTION.format(skip=_PG_SKIP if changed_only else ""))


def upgrade() -> None:
    _apply(changed_only=True)


def downgrade() -> None:
    _apply(changed_only=True)
