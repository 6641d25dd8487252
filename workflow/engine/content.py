"""The content controls a step's changes must pass (issue 15), in one place, run by
``lifecycle.fire`` inside the step's unit before anything is written:

1. signed content is locked (Part 11 §11.70, R-P11-70-2): the fields a signed step ``locks``
   are read-only after it, except its ``editable_after`` fields and columns, until a step
   that ``unlocks`` it (a send-back for re-approval) is taken;
2. a reason for change (Annex 11 §9, R-P11-10e-7): changing or clearing a value another person
   or an earlier step entered needs a reason, recorded with the old and new value in the
   update event; a field an earlier step required cannot be cleared;
5. generated populations (R-WF-23): the rows of a ``generated`` list are fixed (only its
   ``editable`` columns change) and nobody decides the rows about themselves (``subject``).

Everything is decided from the record's own audit trail (which steps were taken, who entered
each value, which signatures were given), so the controls need no state of their own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from workflow.db.models import AuditEvent, Record, User
from workflow.db.uow import connection
from workflow.errors import (
    ChangeReasonRequired,
    ContentLocked,
    PopulationFixed,
    RequiredEarlier,
)
from workflow.spec import content as spec
from workflow.spec.fields import is_empty
from workflow.spec.model import TransitionSpec, WorkflowDefinition

START = "__start__"
SYSTEM = "__system__"


@dataclass(frozen=True)
class Event:
    """What the controls need of one audit event of the record."""

    action: str
    transition: str | None
    actor_id: int | None
    actor_name: str
    changes: Mapping[str, Any]


def history(session: Session, rec: Record) -> list[Event]:
    """The record's create, update, transition and sign events, oldest first."""
    rows = connection(session).execute(_HISTORY, {"rid": rec.id})
    return [Event(a, t, u, n, c or {}) for a, t, u, n, c in rows]


_ev = AuditEvent.__table__.c
# built once, on the table's columns (Core): read on nearly every step
_HISTORY = (
    select(_ev.action, _ev.transition, _ev.actor_id, _ev.actor_name, _ev.changes)
    .where(_ev.record_id == bindparam("rid"),
           _ev.action.in_(("create", "update", "transition", "sign")))
    .order_by(_ev.seq)
)


@dataclass(frozen=True)
class Lock:
    """A signed step whose locks are in force, with who signed it."""

    step: TransitionSpec
    signers: tuple[str, ...]


def active_locks(
    d: WorkflowDefinition, events: list[Event], releasing: TransitionSpec | None = None
) -> list[Lock]:
    """The signed steps whose locks are in force: taken, and not released since by a step
    that ``unlocks`` them (``releasing``: the step being taken, which releases too)."""
    last: dict[str, int] = {}
    for i, ev in enumerate(events):
        if ev.action == "transition" and ev.transition:
            last[ev.transition] = i
    out = []
    for t in d.transitions.values():
        if not t.locks or t.name not in last:
            continue
        unlockers = [u.name for u in d.transitions.values() if t.name in u.unlocks]
        if releasing is not None and releasing.name in unlockers:
            continue
        released = max((last[u] for u in unlockers if u in last), default=-1)
        if released > last[t.name]:
            continue
        signers = tuple(
            dict.fromkeys(
                ev.actor_name
                for i, ev in enumerate(events)
                if ev.action == "sign" and ev.transition == t.name and i > released
            )
        )
        out.append(Lock(t, signers))
    return out


def check_fixed(
    session: Session,
    d: WorkflowDefinition,
    rec: Record,
    t: TransitionSpec,
    user: User,
    old: Mapping[str, Any],
    new: Mapping[str, Any],
    events: Callable[[], list[Event]] | None = None,
) -> None:
    """Refuse ``t``'s change when it touches content a signature in force locks, or rows of
    a generated population (run before the step's guards: what is fixed is the reason,
    whatever else is wrong).

    Raises:
        ContentLocked, PopulationFixed.
    """
    changed = [f for f in sorted(set(old) | set(new)) if old.get(f) != new.get(f)]
    if not changed:
        return
    # only a field some step locks can be locked: the trail is read when one changes
    if any(f in x.locks for x in d.transitions.values() for f in changed):
        _locks(d, rec, t, events() if events else history(session, rec), old, new, changed)
    _populations(d, user, old, new, changed)


def check(
    session: Session,
    d: WorkflowDefinition,
    rec: Record,
    t: TransitionSpec,
    user: User,
    old: Mapping[str, Any],
    new: Mapping[str, Any],
    reason: str | None,
    events: Callable[[], list[Event]] | None = None,
) -> None:
    """Refuse ``t``'s change of ``old`` into ``new`` when a field an earlier step required
    is cleared, or a reason for change is missing (run after the step's guards, which name
    what the step itself needs first).

    Raises:
        RequiredEarlier, ChangeReasonRequired.
    """
    changed = [f for f in sorted(set(old) | set(new)) if old.get(f) != new.get(f)]
    # the trail decides only for a field cleared (was it required earlier?) or a value
    # changed without a reason (who entered it?): a step that only enters values where
    # there were none, or gives a reason and clears nothing, needs no trail (nothing read)
    cleared = [f for f in changed if not is_empty(old.get(f)) and is_empty(new.get(f))]
    altered = [] if (reason or "").strip() else [
        f for f in changed if f in d.fields
        and is_change(old.get(f), new.get(f), spec.column_exemptions(d, f))]
    if not cleared and not altered:
        return
    trail = events() if events else history(session, rec)
    _required_earlier(d, trail, old, new, cleared)
    _reason(d, rec, t, user, trail, old, new, altered, reason)


def _locks(
    d: WorkflowDefinition,
    rec: Record,
    t: TransitionSpec,
    events: list[Event],
    old: Mapping[str, Any],
    new: Mapping[str, Any],
    changed: list[str],
) -> None:
    for lock in active_locks(d, events, releasing=t):
        step = lock.step
        free = spec.free_columns(step)
        for f in step.locks:
            if f not in changed or f in spec.whole_free(step):
                continue
            cols = free.get(f, frozenset())
            if spec.without(old.get(f), cols) == spec.without(new.get(f), cols):
                continue
            unlock = tuple(u.label for u in d.transitions.values() if step.name in u.unlocks)
            label = d.fields[f].label if f in d.fields else f
            raise ContentLocked(
                rec.number,
                f,
                label,
                step.signature.meaning if step.signature else step.label,
                step.label,
                ", ".join(lock.signers) or "signed",
                unlock,
            )


def _populations(
    d: WorkflowDefinition, user: User, old: Mapping[str, Any], new: Mapping[str, Any], changed: list[str]
) -> None:
    for f in changed:
        fs = d.fields.get(f)
        if fs is None or fs.type != "list" or not fs.generated:
            continue
        before = old.get(f) or []
        after = new.get(f) or []
        editable = frozenset(fs.editable)
        if before:
            if len(after) != len(before):
                raise PopulationFixed(
                    f,
                    (
                        f"{fs.label} is a population the system generated ({len(before)} rows): "
                        f"rows cannot be added or removed by hand (this change has {len(after)})."
                    ),
                )
            for n, (o, a) in enumerate(zip(before, after, strict=True), start=1):
                fixed = {k for k in set(o) | set(a) if k not in editable and o.get(k) != a.get(k)}
                if fixed:
                    cols = ", ".join(_col_label(fs, k) for k in sorted(fixed))
                    raise PopulationFixed(
                        f,
                        (
                            f"{fs.label} row {n}: {cols} was generated by the system and cannot "
                            f"be changed; only {', '.join(_col_label(fs, k) for k in fs.editable)} "
                            "can."
                        ),
                    )
        if fs.subject:
            for n, a in enumerate(after, start=1):
                if a.get(fs.subject) != user.username:
                    continue
                o = before[n - 1] if n - 1 < len(before) else {}
                if any(a.get(k) != o.get(k) for k in (editable or set(a) | set(o))):
                    raise PopulationFixed(
                        f,
                        (
                            f"{fs.label} row {n} is about you ({user.username}): another reviewer "
                            "decides it. Leave it as it is; it goes to another reviewer."
                        ),
                    )


def _col_label(fs: Any, name: str) -> str:
    return next((c.label for c in fs.fields if c.name == name), name)


def _required_earlier(
    d: WorkflowDefinition,
    events: list[Event],
    old: Mapping[str, Any],
    new: Mapping[str, Any],
    changed: list[str],
) -> None:
    required: dict[str, str] = {f: "starting the record" for f in d.start_requires}
    for ev in events:
        step = d.transitions.get(ev.transition or "")
        if ev.action == "transition" and step is not None:
            for f in step.requires:
                required.setdefault(f, repr(step.label))
    errors = {
        f: f"was required at {required[f]} and cannot be cleared"
        for f in changed
        if f in required and not is_empty(old.get(f)) and is_empty(new.get(f))
    }
    if errors:
        raise RequiredEarlier(errors)


def entered_by(d: WorkflowDefinition, events: list[Event]) -> dict[str, tuple[int | None, str]]:
    """Field -> (who, at which step) last entered its value: the step's name, START for
    the record's creation, SYSTEM for a value an on-enter action set. A field's default
    (given at creation to a field the start form does not edit) was entered by nobody."""
    out: dict[str, tuple[int | None, str]] = {}
    for ev in events:
        if ev.action == "create":
            step = START
        elif ev.action == "update":
            step = ev.transition or SYSTEM
        else:
            continue
        for f in ev.changes:
            if step == START and f not in d.start_edits:
                continue
            out[f] = (ev.actor_id, step)
    return out


def is_change(old: Any, new: Any, exempt: frozenset[str] = frozenset()) -> bool:
    """Whether ``new`` changes or clears a value of ``old`` (entering a value where there was
    none is not a change; list rows may be added, not removed or rewritten; ``exempt``
    columns are meant to be completed later)."""
    if isinstance(old, list):
        if not isinstance(new, list) or len(new) < len(old):
            return bool(old)
        for o, n in zip(old, new, strict=False):
            if isinstance(o, dict) and isinstance(n, dict):
                if any(k not in exempt and not is_empty(v) and n.get(k) != v for k, v in o.items()):
                    return True
            elif o != n:
                return True
        return False
    return not is_empty(old) and old != new


def _reason(
    d: WorkflowDefinition,
    rec: Record,
    t: TransitionSpec,
    user: User,
    events: list[Event],
    old: Mapping[str, Any],
    new: Mapping[str, Any],
    changed: list[str],
    reason: str | None,
) -> None:
    if (reason or "").strip():
        return
    who = entered_by(d, events)
    need: dict[str, str] = {}
    for f in changed:
        if (
            f not in d.fields
            or d.fields[f].computed  # the engine's own value, recomputed from the others
            or f not in who
            or not is_change(old.get(f), new.get(f), spec.column_exemptions(d, f))
        ):
            continue
        if who[f] == (user.id, t.name):
            continue  # your own value, entered at this same step
        need[f] = d.fields[f].label
    if need:
        raise ChangeReasonRequired(rec.number, need)


def superseded(events: list[Any], data: Mapping[str, Any],
               damaged: frozenset[str] = frozenset()) -> frozenset[int]:
    """Ids of the signatures whose covered content has changed since they were given
    (R-P11-70-2): shown "superseded" wherever signatures are shown. ``events``: the record's
    audit events (anything with ``action`` and ``changes``), ``data``: its current values;
    ``damaged``: SHA-256s of attached files whose stored bytes no longer match: a signature
    given over such a file (in the fields it locks, or anywhere in the content when it locks
    none) is superseded too."""
    out = set()
    files: dict[str, str] = {}  # field -> the SHA-256 of its file at this point of the trail
    for ev in events:
        changes = ev.changes or {}
        if damaged and ev.action in ("create", "update"):
            for f, ch in changes.items():
                new = ch[1] if isinstance(ch, list) and len(ch) == 2 else None
                if isinstance(new, dict) and isinstance(new.get("sha256"), str):
                    files[f] = new["sha256"]
                else:
                    files.pop(f, None)
        sig = changes.get("signature") if ev.action == "sign" else None
        if not isinstance(sig, dict):
            continue
        signed = {files[f] for f in sig["covers"] if f in files} if "covers" in sig \
            else set(files.values())
        if signed & damaged:
            out.add(sig["id"])
        elif "covered_hash" in sig and spec.covered_now(
                sig.get("covers", ()), sig.get("free", {}), data) != sig["covered_hash"]:
            out.add(sig["id"])
    return frozenset(out)
