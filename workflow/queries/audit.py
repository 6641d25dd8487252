"""The audit trail as a read model: the system-wide list QA and administrators search
(newest first, keyset pages both ways), the actions to filter by, and each event as an
inspector reads it (labels, printed names, formatted values). Takes the caller's read
session."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from workflow.audit.actions import RECORD_ACTIONS, SYSTEM_ACTIONS, action_label
from workflow.audit.trail import SYSTEM_CHAIN
from workflow.db.models import AuditEvent, Record
from workflow.errors import ValidationFailed
from workflow.queries.copies import display
from workflow.queries.directories import people_names
from workflow.registry import Registry
from workflow.spec.model import WorkflowDefinition


@dataclass(frozen=True)
class AuditFilter:
    """What the audit page filters by; empty values filter nothing."""

    user: str = ""  # part of the actor's printed name
    record: str = ""  # a record number
    action: str = ""
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive
    before_id: int | None = None  # page cursor: events older than this one
    after_id: int | None = None  # page cursor: events newer than this one

    def check(self) -> None:
        """ValidationFailed naming a filter that cannot be used."""
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise ValidationFailed({"to": "the 'To' date is before the 'From' date; nothing "
                                          "can match"})
        if self.before_id is not None and self.after_id is not None:
            raise ValidationFailed({"before": "give either 'before' or 'after', not both"})


def _query(f: AuditFilter) -> Select[AuditEvent, str]:
    q = select(AuditEvent, Record.number).outerjoin(Record, Record.id == AuditEvent.record_id)
    if f.user:
        q = q.where(AuditEvent.actor_name.ilike(f"%{f.user[:100]}%"))
    if f.record:
        q = q.where(Record.number == f.record.strip().upper())
    if f.action:
        q = q.where(AuditEvent.action == f.action)
    if f.since:
        q = q.where(AuditEvent.at >= f.since)
    if f.until:
        q = q.where(AuditEvent.at < f.until)
    if f.before_id is not None:
        q = q.where(AuditEvent.id < f.before_id)
    if f.after_id is not None:
        return q.where(AuditEvent.id > f.after_id).order_by(AuditEvent.id.asc())
    return q.order_by(AuditEvent.id.desc())


def search(session: Session, f: AuditFilter, limit: int | None = None
           ) -> list[tuple[AuditEvent, str | None]]:
    """(event, its record's number) matching ``f``, newest first; all of them without
    ``limit``."""
    f.check()
    q = _query(f)
    if limit is not None:
        q = q.limit(limit)
    rows: list[tuple[AuditEvent, str | None]] = [(row[0], row[1]) for row in session.execute(q)]
    return rows[::-1] if f.after_id is not None else rows


@dataclass(frozen=True)
class TrailPage:
    """One page of the system trail, newest first, with the cursors of its neighbours."""

    rows: list[tuple[AuditEvent, str | None]]
    older: int | None  # pass as before_id
    newer: int | None  # pass as after_id


def page(session: Session, f: AuditFilter, limit: int) -> TrailPage:
    """A page of ``limit`` events matching ``f``, with whether older and newer pages exist
    (keyset on the event order; never OFFSET)."""
    rows = search(session, f, limit + 1)
    if f.after_id is not None:  # walked towards newer events: the extra one is the newest
        more_newer, rows = len(rows) > limit, rows[-limit:]
        return TrailPage(rows, rows[-1][0].id if rows else None,
                         rows[0][0].id if rows and more_newer else None)
    more_older, rows = len(rows) > limit, rows[:limit]
    return TrailPage(rows, rows[-1][0].id if rows and more_older else None,
                     rows[0][0].id if rows and f.before_id is not None else None)


def actions() -> dict[str, dict[str, str]]:
    """The actions to filter by, grouped (record events, system events), each with its
    label: the known actions (workflow/audit/actions.py), not a scan of the trail."""
    return {"Record events": dict(sorted(RECORD_ACTIONS.items(), key=lambda kv: kv[1])),
            "System events": dict(sorted(SYSTEM_ACTIONS.items(), key=lambda kv: kv[1]))}


# --------------------------------------------------------------------------- readable


@dataclass(frozen=True)
class Change:
    """One changed item: its label and the old and new value as a person reads them, or
    ``text`` for an item that is not an old/new pair."""

    label: str
    old: str | None = None
    new: str | None = None
    text: str | None = None


@dataclass(frozen=True)
class TrailRow:
    """An audit event as an inspector reads it."""

    event: AuditEvent
    #: "DEV-2026-0001" or "System": the chain the event belongs to
    chain: str
    seq: int
    record: str | None
    action: str
    step: str | None
    states: tuple[str, str] | None
    changes: list[Change] = field(default_factory=list)


#: keys whose values name a person (system events and task changes)
_PERSON_KEYS = {"username", "assignee", "by", "owner", "delegate", "delegated_to", "to",
                "from", "user", "actor", "requested_by", "decided_by"}


def _strings(value: Any, out: set[str]) -> None:
    if isinstance(value, str):
        if 0 < len(value) <= 64:
            out.add(value)
    elif isinstance(value, dict):
        for v in value.values():
            _strings(v, out)
    elif isinstance(value, list):
        for v in value:
            _strings(v, out)


def plain(value: Any, people: Mapping[str, str], key: str = "") -> str:
    """A value without a field definition as a person reads it: Yes/No, lists joined, a
    person's printed name, nested objects as ``label: value`` pairs; "—" for nothing."""
    if value is None or value == "" or value == [] or value == {}:
        return "—"
    if isinstance(value, bool):
        return "Yes" if value else "No"
    if isinstance(value, str):
        name = people.get(value) if key in _PERSON_KEYS else None
        return f"{name} ({value})" if name else value
    if isinstance(value, list):
        return "; ".join(plain(v, people, key) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{_label(k)}: {plain(v, people, k)}" for k, v in value.items())
    return str(value)


#: how keys of system events read where the plain rule (underscores to spaces) does not do
_KEY_LABELS = {"ip": "IP address", "mfa": "Second factor used", "totp": "Authenticator",
               "id": "Id", "api": "API", "url": "URL"}


def _label(name: str) -> str:
    return _KEY_LABELS.get(name) or str(name).replace("_", " ").capitalize()


def _shown(d: WorkflowDefinition | None, name: str, value: Any,
           people: Mapping[str, str]) -> str:
    """A field value through the definition (choice labels, Yes/No, printed names, list
    rows), like the true copy (workflow/queries/copies.display)."""
    spec = d.fields.get(name) if d is not None else None
    if spec is None:
        return plain(value, people, name)
    if value is None or value == "" or value == []:
        return "—"
    out = display(spec, value, people)
    if isinstance(out, dict):  # a list as a table: one line per row
        cols = out["columns"]
        return "; ".join(", ".join(f"{c}: {v}" for c, v in zip(cols, row, strict=False)
                                   if v not in ("", None)) if len(cols) > 1 else str(row[0])
                         for row in out["rows"])
    return out if isinstance(out, str) else plain(out, people)


def _signature(ev: AuditEvent, sig: Mapping[str, Any], d: WorkflowDefinition | None) -> str:
    """A signature's manifestation: printed name, meaning, time (UTC), the role signed as."""
    roles = d.roles if d is not None else {}
    role = " and ".join(roles.get(r, _label(r)) for r in str(sig.get("role") or "").split("+")
                        if r)
    when = ev.at.strftime("%Y-%m-%d %H:%M:%S UTC")
    text = f"{sig.get('meaning') or 'Signed'} by {ev.actor_name}, {when}"
    if role:
        text += f" (as {role})"
    if sig.get("id") is not None:
        text += f"; signature #{sig['id']}"
    return text


def _state(d: WorkflowDefinition | None, name: str | None) -> str:
    if not name:
        return "—"
    st = d.states.get(name) if d is not None else None
    return st.label if st is not None else _label(name)


def readable(session: Session, registry: Registry,
             rows: Iterable[tuple[AuditEvent, str | None]]) -> list[TrailRow]:
    """The events as an inspector reads them: field and choice labels from the record's
    definition version, printed names, values formatted, signature manifestations, state
    labels; the chain sequence, never an internal id. Two queries at most (the people)."""
    rows = list(rows)
    names: set[str] = set()
    for ev, _n in rows:
        _strings(ev.changes, names)
    people = people_names(session, names)
    defs: dict[str, WorkflowDefinition | None] = {}
    out = []
    for ev, number in rows:
        h = ev.definition_hash
        if h and h not in defs:
            defs[h] = registry.by_hash(session, h).definition
        d = defs.get(h) if h else None
        changes: list[Change] = []
        for k, v in (ev.changes or {}).items():
            if k == "signature" and isinstance(v, dict):
                changes.append(Change("Signature", text=_signature(ev, v, d)))
            elif k == "signature_id":
                changes.append(Change("Signature", text=f"#{v}"))
            elif isinstance(v, list) and len(v) == 2 and ev.action in ("create", "update",
                                                                       "migrated") or (
                    isinstance(v, list) and len(v) == 2 and d is None):
                label = d.fields[k].label if d is not None and k in d.fields else _label(k)
                changes.append(Change(label, _shown(d, k, v[0], people),
                                      _shown(d, k, v[1], people)))
            else:
                label = d.fields[k].label if d is not None and k in d.fields else _label(k)
                changes.append(Change(label, text=_shown(d, k, v, people)))
        states = None
        if ev.from_state or ev.to_state:
            states = (_state(d, ev.from_state), _state(d, ev.to_state))
        step = None
        if ev.transition:
            t = d.transitions.get(ev.transition) if d is not None else None
            step = t.label if t is not None else _label(ev.transition)
        out.append(TrailRow(
            event=ev, chain="System" if ev.chain == SYSTEM_CHAIN else (number or ev.chain),
            seq=ev.seq, record=number, action=action_label(ev.action), step=step,
            states=states, changes=changes))
    return out
