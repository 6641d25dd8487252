"""Portable SQL for the KPIs (SQLite and PostgreSQL). The cross-cutting rules they apply
(visibility, an active role grant, a completed training) live in workflow/rules.py.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Boolean, Float, String, literal_column
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import expression

# --------------------------------------------------------------------------- portable SQL


class days_between(expression.FunctionElement):  # noqa: N801 - reads like a SQL function
    """(b - a) in days as a float, on SQLite (julianday) and PostgreSQL (epoch)."""

    type = Float()
    name = "days_between"
    inherit_cache = True


@compiles(days_between, "sqlite")
def _days_sqlite(element: Any, compiler: Any, **kw: Any) -> str:
    a, b = list(element.clauses)
    return f"(julianday({compiler.process(b, **kw)}) - julianday({compiler.process(a, **kw)}))"


@compiles(days_between, "postgresql")
def _days_pg(element: Any, compiler: Any, **kw: Any) -> str:
    a, b = list(element.clauses)
    return (f"(EXTRACT(EPOCH FROM ({compiler.process(b, **kw)} - {compiler.process(a, **kw)}))"
            " / 86400.0)")


class has_key(expression.FunctionElement):  # noqa: N801
    """``has_key(json_column, "name")``: the JSON object holds the key (with any value but
    null), on SQLite (json_type) and PostgreSQL (->)."""

    type = Boolean()
    name = "has_key"
    inherit_cache = True

    def __init__(self, column: Any, key: str) -> None:
        super().__init__(column, literal_column(f"'{safe_name(key)}'"))


@compiles(has_key, "sqlite")
def _has_key_sqlite(element: Any, compiler: Any, **kw: Any) -> str:
    col, key = list(element.clauses)
    kind = f"json_type({compiler.process(col, **kw)}, '$.' || {compiler.process(key, **kw)})"
    return f"({kind} IS NOT NULL AND {kind} <> 'null')"


@compiles(has_key, "postgresql")
def _has_key_pg(element: Any, compiler: Any, **kw: Any) -> str:
    col, key = list(element.clauses)
    return (f"(({compiler.process(col, **kw)})::jsonb -> {compiler.process(key, **kw)} "
            "IS NOT NULL)")


class month_of(expression.FunctionElement):  # noqa: N801
    """'YYYY-MM' of a timestamp, in UTC."""

    type = String()
    name = "month_of"
    inherit_cache = True


@compiles(month_of, "sqlite")
def _month_sqlite(element: Any, compiler: Any, **kw: Any) -> str:
    (a,) = list(element.clauses)
    return f"strftime('%Y-%m', {compiler.process(a, **kw)})"


@compiles(month_of, "postgresql")
def _month_pg(element: Any, compiler: Any, **kw: Any) -> str:
    (a,) = list(element.clauses)
    return f"to_char(({compiler.process(a, **kw)}) AT TIME ZONE 'UTC', 'YYYY-MM')"


class date_of(expression.FunctionElement):  # noqa: N801
    """'YYYY-MM-DD' of a timestamp, in UTC (compared with a date field's ISO text)."""

    type = String()
    name = "date_of"
    inherit_cache = True


@compiles(date_of, "sqlite")
def _date_sqlite(element: Any, compiler: Any, **kw: Any) -> str:
    (a,) = list(element.clauses)
    return f"strftime('%Y-%m-%d', {compiler.process(a, **kw)})"


@compiles(date_of, "postgresql")
def _date_pg(element: Any, compiler: Any, **kw: Any) -> str:
    (a,) = list(element.clauses)
    return f"to_char(({compiler.process(a, **kw)}) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"


def safe_name(name: str) -> str:
    """``name`` if it may be written into SQL text (letters, digits, underscores), else
    ValueError. The names come from a validated definition, never from a user."""
    if not name.replace("_", "").isalnum():
        raise ValueError(f"unsafe name {name!r}")
    return name


def list_count_sql(dialect: str, items_field: str, key: str, value: str) -> str:
    """Correlated SQL counting the entries of the JSON list ``records.data[items_field]``
    whose ``key`` equals ``value`` (names come from a validated definition, not a user)."""
    for name in (items_field, key, value):
        safe_name(name)
    if dialect == "sqlite":
        return (f"(SELECT count(*) FROM json_each(records.data, '$.{items_field}') AS li "
                f"WHERE json_extract(li.value, '$.{key}') = '{value}')")
    return (f"(SELECT count(*) FROM jsonb_array_elements(CASE WHEN jsonb_typeof(records.data -> "
            f"'{items_field}') = 'array' THEN records.data -> '{items_field}' ELSE '[]'::jsonb END)"
            f" AS li WHERE li ->> '{key}' = '{value}')")


def lists_user_sql(dialect: str, table: str, items: str) -> str:
    """Correlated SQL: the JSON list ``<table>.data[items]`` has an entry whose ``user`` is
    ``users.username`` (case-insensitive); ``table`` is the alias of a records table."""
    safe_name(items)
    safe_name(table)
    if dialect == "sqlite":
        return (f"EXISTS (SELECT 1 FROM json_each({table}.data, '$.{items}') AS gi "
                "WHERE lower(json_extract(gi.value, '$.user')) = lower(users.username))")
    return (f"EXISTS (SELECT 1 FROM jsonb_array_elements(CASE WHEN jsonb_typeof({table}.data "
            f"-> '{items}') = 'array' THEN {table}.data -> '{items}' ELSE '[]'::jsonb END) "
            "AS gi WHERE lower(gi ->> 'user') = lower(users.username))")


class field_time(expression.FunctionElement):  # noqa: N801
    """The timestamp a record's date/datetime field holds (ISO text in ``records.data``), for
    milestones that start at a field (``start_field``): UTC text in SQLite's timestamp form, a
    timestamptz on PostgreSQL."""

    type = String()
    name = "field_time"
    inherit_cache = True

    def __init__(self, column: Any, key: str) -> None:
        super().__init__(column, literal_column(f"'{safe_name(key)}'"))


@compiles(field_time, "sqlite")
def _field_time_sqlite(element: Any, compiler: Any, **kw: Any) -> str:
    col, key = list(element.clauses)
    # the form SQLite stores timestamps in (UTC, "YYYY-MM-DD HH:MM:SS.SSS"), so it compares
    # with audit_events.at as text
    return (f"strftime('%Y-%m-%d %H:%M:%f', json_extract({compiler.process(col, **kw)}, "
            f"'$.' || {compiler.process(key, **kw)}))")


@compiles(field_time, "postgresql")
def _field_time_pg(element: Any, compiler: Any, **kw: Any) -> str:
    col, key = list(element.clauses)
    return (f"((({compiler.process(col, **kw)})::jsonb ->> {compiler.process(key, **kw)})"
            "::timestamptz)")
