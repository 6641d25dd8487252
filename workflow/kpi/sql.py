"""Portable SQL for the KPIs (SQLite and PostgreSQL) and the cross-cutting rules they apply.

The rules (visibility, an active role grant, a completed training) are the engine's rules
written as SQL conditions on ``records`` / ``role_grants``; each is one function here, marked
``# rule:``, so that the predicate and its SQL twin can later live side by side.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Float, String, and_, exists, false, or_, true
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import expression
from sqlalchemy.sql.elements import ColumnElement

from workflow.db.models import Record, RoleGrant, Task, User
from workflow.kpi.specs import DONE
from workflow.spec.model import WorkflowDefinition

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
    return (f"(SELECT count(*) FROM json_array_elements(CASE WHEN json_typeof(records.data -> "
            f"'{items_field}') = 'array' THEN records.data -> '{items_field}' ELSE '[]'::json END)"
            f" AS li WHERE li ->> '{key}' = '{value}')")


def lists_user_sql(dialect: str, table: str, items: str) -> str:
    """Correlated SQL: the JSON list ``<table>.data[items]`` has an entry whose ``user`` is
    ``users.username`` (case-insensitive); ``table`` is the alias of a records table."""
    safe_name(items)
    safe_name(table)
    if dialect == "sqlite":
        return (f"EXISTS (SELECT 1 FROM json_each({table}.data, '$.{items}') AS gi "
                "WHERE lower(json_extract(gi.value, '$.user')) = lower(users.username))")
    return (f"EXISTS (SELECT 1 FROM json_array_elements(CASE WHEN json_typeof({table}.data "
            f"-> '{items}') = 'array' THEN {table}.data -> '{items}' ELSE '[]'::json END) "
            "AS gi WHERE lower(gi ->> 'user') = lower(users.username))")


# --------------------------------------------------------------------------- rules


# rule: moves to workflow/rules.py
def visible_clause(user: User, roles: set[str],
                   definitions: Iterable[WorkflowDefinition]) -> ColumnElement[bool]:
    """The engine's visibility rule (``Engine._visible``) as one SQL condition on ``records``:
    a user sees a record when they hold a role of its workflow version, initiated it, or have
    (had) a task on it assigned to them; the system account sees every record.

    ``roles``: the user's roles; ``definitions``: every published version of every workflow
    (neither is read for the system account).
    """
    if user.is_system:
        return true()
    hashes = [d.content_hash for d in definitions if roles & (set(d.roles) | set(d.start_roles))]
    return or_(
        Record.definition_hash.in_(hashes) if hashes else false(),
        Record.created_by_id == user.id,
        exists().where(Task.record_id == Record.id, Task.assignee_id == user.id))


# rule: moves to workflow/rules.py
def active_grant_clause(at: datetime) -> ColumnElement[bool]:
    """A ``role_grants`` row is active at ``at``: granted by then, neither revoked nor expired
    by then."""
    g = RoleGrant
    return and_(g.granted_at <= at, or_(g.revoked_at.is_(None), g.revoked_at > at),
                or_(g.expires_at.is_(None), g.expires_at > at))


#: the training workflow and the fields naming its trainee and document (literals until a
#: definition declares them as a capability: reference/redesign-map.md)
TRAINING_WORKFLOW = "training_assignment"
TRAINEE_FIELD = "trainee"
DOCUMENT_FIELD = "document"


def trainee_of() -> ColumnElement[str]:
    """The trainee (username) of a training record."""
    return Record.data[TRAINEE_FIELD].as_string()


def training_document_of() -> ColumnElement[str]:
    """The document a training record trains on."""
    return Record.data[DOCUMENT_FIELD].as_string()


# rule: moves to workflow/rules.py
def training_done_clause(as_of: datetime) -> ColumnElement[bool]:
    """A training is completed: a ``training_assignment`` record closed with outcome done by
    ``as_of`` (the engine's training gate asks the same of the actor's assignments)."""
    return and_(Record.workflow_key == TRAINING_WORKFLOW, Record.outcome == DONE,
                Record.closed_at <= as_of)
