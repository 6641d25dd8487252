"""record search: a full-text index of every record's number, title and text values,
kept by the database in the same transaction as the record row

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 09:00:00

Issue 17, item 1 (R-UI-30); also ``saved_searches``, a person's saved record searches.
 ``record_search`` holds one row per record: its number, title
and every text value of its data (text fields, choices, people, dates as written; table rows
included). Triggers on ``records`` write it in the statement that inserts the record or
changes its number, title or data, so it is part of the same unit of work as the change
(workflow/db/uow.py): a rollback takes it back too, no writer (the engine's create, the
write-back of a step, a migration, bulk-loaded benchmark data) can skip it, and nothing is
indexed "later".

- SQLite: an FTS5 table (tokenizer unicode61, diacritics removed), rowid = records.id.
- PostgreSQL: a table with a ``tsvector`` (configuration ``simple``: no stemming, any
  language) and a GIN index on it.

The query side is workflow/queries/search.py. Existing records are indexed here (backfill).
The table is derived data: it is not sealed and not part of verify-audit; dropping and
re-running this migration rebuilds it.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# the text values of a record's data, space-separated (SQLite JSON1)
_SQLITE_BODY = "(SELECT group_concat(value, ' ') FROM json_tree({row}.data) WHERE type = 'text')"

_SQLITE = [
    "CREATE VIRTUAL TABLE record_search USING fts5("
    "number, title, body, tokenize = 'unicode61 remove_diacritics 2')",
    "CREATE TRIGGER record_search_insert AFTER INSERT ON records BEGIN "
    "INSERT INTO record_search (rowid, number, title, body) VALUES "
    f"(new.id, new.number, new.title, {_SQLITE_BODY.format(row='new')}); END",
    "CREATE TRIGGER record_search_update AFTER UPDATE OF number, title, data ON records BEGIN "
    "UPDATE record_search SET number = new.number, title = new.title, "
    f"body = {_SQLITE_BODY.format(row='new')} WHERE rowid = new.id; END",
    "CREATE TRIGGER record_search_delete AFTER DELETE ON records BEGIN "
    "DELETE FROM record_search WHERE rowid = old.id; END",
    "INSERT INTO record_search (rowid, number, title, body) "
    f"SELECT id, number, title, {_SQLITE_BODY.format(row='records')} FROM records",
]

_POSTGRES = [
    "CREATE TABLE record_search ("
    "record_id integer NOT NULL, doc tsvector NOT NULL, "
    "CONSTRAINT pk_record_search PRIMARY KEY (record_id), "
    "CONSTRAINT fk_record_search_record_id_records FOREIGN KEY (record_id) "
    "REFERENCES records (id) ON DELETE CASCADE)",
    # the number, the title and every string in the data (at any depth), punctuation made
    # a space first, so "B-1001" is the words "b" and "1001" (PostgreSQL's parser would read
    # "-1001" as a negative number) - the words workflow/queries/search.py searches for
    "CREATE FUNCTION record_search_doc(number text, title text, data json) RETURNS tsvector "
    "LANGUAGE sql IMMUTABLE AS $$ SELECT to_tsvector('simple'::regconfig, regexp_replace("
    "coalesce(number, '') || ' ' || coalesce(title, '') || ' ' || coalesce(("
    "SELECT string_agg(v #>> '{}', ' ') FROM jsonb_path_query(coalesce(data, '{}')::jsonb, "
    "'strict $.** ? (@.type() == \"string\")') AS v), ''), "
    "'[[:punct:][:space:]]+', ' ', 'g')) $$",
    "CREATE FUNCTION record_search_sync() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
    "INSERT INTO record_search (record_id, doc) "
    "VALUES (NEW.id, record_search_doc(NEW.number, NEW.title, NEW.data)) "
    "ON CONFLICT (record_id) DO UPDATE SET doc = EXCLUDED.doc; "
    "RETURN NULL; END $$",
    "CREATE TRIGGER record_search_sync AFTER INSERT OR UPDATE OF number, title, data "
    "ON records FOR EACH ROW EXECUTE FUNCTION record_search_sync()",
    "INSERT INTO record_search (record_id, doc) "
    "SELECT id, record_search_doc(number, title, data) FROM records",
    "CREATE INDEX ix_record_search_doc ON record_search USING gin (doc)",
    "ANALYZE record_search",
]


def upgrade() -> None:
    op.create_table(
        "saved_searches",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("query", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"],
                                name=op.f("fk_saved_searches_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_saved_searches")),
        sa.UniqueConstraint("user_id", "name", name=op.f("uq_saved_searches_user_id_name")),
    )
    conn = op.get_bind()
    for sql in _SQLITE if conn.dialect.name == "sqlite" else _POSTGRES:
        # as written: no bind parameters (the regular expression holds colons)
        conn.exec_driver_sql(sql)


def downgrade() -> None:
    op.drop_table("saved_searches")
    if op.get_bind().dialect.name == "sqlite":
        for name in ("record_search_insert", "record_search_update", "record_search_delete"):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        op.execute("DROP TABLE IF EXISTS record_search")
        return
    op.execute("DROP TRIGGER IF EXISTS record_search_sync ON records")
    op.execute("DROP FUNCTION IF EXISTS record_search_sync()")
    op.execute("DROP TABLE IF EXISTS record_search")
    op.execute("DROP FUNCTION IF EXISTS record_search_doc(text, text, json)")
