"""Records that share key values (siblings): the ``exclusive:`` control of a definition and
the records a ``fire_on_matching`` action reaches.

``exclusive:`` (R-DOC-9): at most one record of the workflow with the same values of the key
fields is in one of the rule's states at a time - one effective version per document number,
one version in work, unique version numbers. When a record enters such a state, the unit
first takes a lock on the key (PostgreSQL: a transaction-scoped advisory lock on a hash of
workflow, rule and values; SQLite: the unit already holds the database's write lock), then
runs the state's on-enter actions (which may move a sibling out, e.g. supersede the previous
version), then looks for a sibling still in the states and refuses with
:class:`~workflow.errors.ExclusiveStateTaken`. Two units racing for the same key queue on the
lock; the second one's look runs after the first committed (READ COMMITTED: each statement
sees what was committed before it), finds the first, and is refused - nothing of it is
written. A partial unique index cannot express this on JSON data in every database; the lock
and the look are the same on both.

Siblings changed earlier in the same unit are read from the unit's tracked records (written
back only at flush/commit), never from their stale rows.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from workflow import canonical
from workflow.db import records
from workflow.db.engines import is_sqlite
from workflow.db.models import Record
from workflow.engine.context import Ctx
from workflow.errors import ExclusiveStateTaken
from workflow.spec.model import Exclusive, WorkflowDefinition

_records = Record.__table__.c


@dataclass(frozen=True)
class Sibling:
    """Another record with the same key values, as this unit sees it."""

    id: int
    number: str
    state: str
    data: Mapping[str, Any]


def key_of(rec: Record, fields: Iterable[str]) -> dict[str, Any] | None:
    """The record's values of ``fields``; None when one is empty (no key, no rule)."""
    values = {f: (rec.data or {}).get(f) for f in fields}
    if any(v is None or v == "" for v in values.values()):
        return None
    return values


def siblings(session: Session, workflow: str, states: Iterable[str], values: Mapping[str, Any],
             exclude: int) -> list[Sibling]:
    """The other records of ``workflow`` in one of ``states`` whose fields hold ``values``,
    oldest first, as this unit sees them (its own changes included)."""
    states = set(states)
    q = select(_records.id, _records.number, _records.state, _records.data).where(
        _records.workflow_key == workflow, _records.state.in_(sorted(states)),
        _records.id != exclude)
    for name, value in values.items():
        if isinstance(value, str):  # text compares alike in SQLite and PostgreSQL JSON
            q = q.where(Record.data[name].as_string() == value)
    tracked = {r.id: r for r in records.tracked(session) if r.workflow_key == workflow}
    found: dict[int, Sibling] = {}
    for row in session.execute(q.order_by(_records.id)):
        rec = tracked.get(row.id)
        found[row.id] = (Sibling(rec.id, rec.number, rec.state, rec.data) if rec is not None
                         else Sibling(row.id, row.number, row.state, row.data or {}))
    for rec in tracked.values():  # moved into the states in this unit
        if rec.id != exclude and rec.id not in found:
            found[rec.id] = Sibling(rec.id, rec.number, rec.state, rec.data)
    return [s for _, s in sorted(found.items())
            if s.state in states and all(s.data.get(k) == v for k, v in values.items())]


def _rules(d: WorkflowDefinition, state: str) -> list[tuple[int, Exclusive]]:
    return [(i, x) for i, x in enumerate(d.exclusive) if state in x.states]


def lock(ctx: Ctx, d: WorkflowDefinition, rec: Record) -> None:
    """Take the key locks of the rules covering the state ``rec`` enters (PostgreSQL: a
    transaction advisory lock each, in a fixed order; SQLite: the unit's write lock)."""
    rules = _rules(d, rec.state)
    if not rules or is_sqlite(ctx.session):
        return
    keys = set()
    for i, rule in rules:
        values = key_of(rec, rule.key)
        if values is not None:
            keys.add(_lock_key(d.key, i, values))
    for k in sorted(keys):  # one order everywhere: no deadlock between two rules' locks
        ctx.session.execute(select(func.pg_advisory_xact_lock(k)))


def _lock_key(workflow: str, rule: int, values: Mapping[str, Any]) -> int:
    text = canonical.dumps({"w": workflow, "r": rule, "v": dict(values)})
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big", signed=True)


def check(ctx: Ctx, d: WorkflowDefinition, rec: Record) -> None:
    """Refuse ``rec`` in its state when a sibling is in one of an exclusive rule's states."""
    for _, rule in _rules(d, rec.state):
        values = key_of(rec, rule.key)
        if values is None:
            continue
        others = siblings(ctx.session, d.key, rule.states, values, rec.id)
        if not others:
            continue
        other = others[0]
        labels = {s: d.states[s].label if s in d.states else s for s in rule.states}
        what = ", ".join(f"{d.fields[k].label if k in d.fields else k} {v}"
                         for k, v in values.items())
        lead = f"{rule.message.rstrip('.')}: " if rule.message else ""
        raise ExclusiveStateTaken(
            f"{lead}{rec.number} cannot be {labels[rec.state]!r}: {other.number} already is "
            f"{labels.get(other.state, other.state)!r} for {what} (rule: only one record per "
            f"{' and '.join(rule.key)} may be {' or '.join(repr(x) for x in labels.values())}"
            " at a time).", state=rec.state, other=other.number)
