"""records.data is jsonb on PostgreSQL

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-01 21:05:00

Issue 18 target 5 (R-PERF-75): ``records.data`` was PostgreSQL's ``json`` type, stored as the
text it was given, so every ``data ->> 'field'`` parsed the whole document again: a KPI
statement grouping a year of deviations by classification parsed each deviation's data
once per field it read, and the dashboard runs 59 such statements. ``jsonb`` is stored
parsed; reading a field is a look-up. Measured on the 100k-record KPI set: the dashboard
1.91 -> 1.37 s (p50) on the same machine.

What changes for the data: nothing a reader of the record sees. The engine hashes and seals
a record from its data as Python values in canonical JSON (sorted keys), never from the
stored text, so jsonb's own key order and spacing change no seal or signature. Field values
are text, whole numbers, booleans, lists and objects (decimals are stored as text), which
jsonb keeps exactly.

jsonb cannot hold the NUL character (``\\u0000``). Since 0011 the search trigger already
converted every written record's data to jsonb, so a NUL could not be written (the step
failed with a database error); input validation now refuses it with a reason
(workflow/spec/fields.py). Should a database hold such a record all the same (triggers
disabled by hand), the upgrade stops, names those records, and changes nothing: a migration
never alters a GxP record's values.

The two functions the record-search and people-index triggers call took a ``json``
argument; they are recreated for ``jsonb`` with the same bodies. The triggers are dropped
and recreated around the type change (PostgreSQL refuses to retype a column a trigger's
column list names); the table is rewritten, which takes about 3 s per 100,000 records, and
the search and people tables stay as they are (they are derived from the same values).

SQLite stores JSON as text in any case: nothing to do there.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# the bodies of 0011 and 0015 (a migration never imports another), for a data argument of
# the given type
_SEARCH_DOC = (
    "CREATE FUNCTION record_search_doc(number text, title text, data {t}) RETURNS tsvector "
    "LANGUAGE sql IMMUTABLE AS $$ SELECT to_tsvector('simple'::regconfig, regexp_replace("
    "coalesce(number, '') || ' ' || coalesce(title, '') || ' ' || coalesce(("
    "SELECT string_agg(v #>> '{{}}', ' ') FROM jsonb_path_query(coalesce(data, '{{}}')::jsonb, "
    "'strict $.** ? (@.type() == \"string\")') AS v), ''), "
    "'[[:punct:][:space:]]+', ' ', 'g')) $$")
_PEOPLE_OF = (
    "CREATE FUNCTION record_people_of(h text, data {t}) "
    "RETURNS TABLE (field text, username text) LANGUAGE sql STABLE AS $$ "
    "SELECT DISTINCT p.field::text, v #>> '{{}}' FROM definition_people p, "
    "jsonb_path_query(coalesce(data, '{{}}')::jsonb, ('lax $.\"' || p.field || '\"[*]' || "
    "CASE WHEN p.sub = '' THEN '' ELSE '.\"' || p.sub || '\"' END)::jsonpath) AS v "
    "WHERE p.definition_hash = h AND jsonb_typeof(v) = 'string' AND v #>> '{{}}' <> '' $$")
_TRIGGERS = [
    "CREATE TRIGGER record_search_sync AFTER INSERT OR UPDATE OF number, title, data "
    "ON records FOR EACH ROW EXECUTE FUNCTION record_search_sync()",
    "CREATE TRIGGER record_people_sync AFTER INSERT OR UPDATE OF data, definition_hash "
    "ON records FOR EACH ROW EXECUTE FUNCTION record_people_sync()",
]

#: a json text holding the escape \u0000 (after an even number of backslashes: "\\u0000" is
#: a backslash followed by the letters u0000, which jsonb stores)
_NUL = r"(^|[^\\])(\\\\)*\\u0000"


class NulInRecordData(RuntimeError):
    """Records hold a NUL character, which jsonb cannot store: nothing was converted."""


def _retype(to: str) -> None:
    conn = op.get_bind()
    frm = "json" if to == "jsonb" else "jsonb"
    for sql in ("DROP TRIGGER record_search_sync ON records",
                "DROP TRIGGER record_people_sync ON records",
                f"DROP FUNCTION record_search_doc(text, text, {frm})",
                f"DROP FUNCTION record_people_of(text, {frm})",
                f"ALTER TABLE records ALTER COLUMN data TYPE {to} USING data::{to}",
                _SEARCH_DOC.format(t=to), _PEOPLE_OF.format(t=to), *_TRIGGERS):
        conn.exec_driver_sql(sql)


def upgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != "postgresql":
        return
    bad = conn.execute(sa.text("SELECT number FROM records WHERE data::text ~ :nul "
                               "ORDER BY id LIMIT 21"), {"nul": _NUL}).scalars().all()
    if bad:
        shown = ", ".join(bad[:20]) + (" and more" if len(bad) > 20 else "")
        raise NulInRecordData(
            f"records {shown} hold a NUL character (\\u0000) in their data, which "
            "PostgreSQL's jsonb type cannot store; nothing was changed. Correct those "
            "values through the application (a step with a reason, in the audit trail) and "
            "run the upgrade again.")
    _retype("jsonb")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    _retype("json")
