"""The audit trail: append-only, hash-chained per record (and per system chain).

Every event is written inside the caller's transaction, so a failed audit write rolls the
business change back (R-P11-10e-1). The database refuses UPDATE/DELETE on the table
(triggers in migrations/); the chain makes insertions, removals and edits done behind the
application's back detectable by :func:`verify` (R-P11-10e-4).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from json.encoder import encode_basestring
from typing import Any

from sqlalchemy import String, insert, select, type_coerce
from sqlalchemy.orm import Session

from workflow import canonical
from workflow.canonical import keyed_hash, keyed_ok
from workflow.clock import as_utc
from workflow.db.models import AuditChain, AuditEvent, Record, User
from workflow.db.uow import attributed, connection, session_key
from workflow.keyring import Key, as_ring

GENESIS = "0" * 64
#: who may read the system audit trail (logins, grants, definitions, exports)
SYSTEM_TRAIL_ROLES = ("qa", "admin", "isms")
SYSTEM_CHAIN = "system"


def record_chain(record_id: int) -> str:
    return f"record:{record_id}"


#: the hashed fields of an event, in the order :data:`EVENT_COLUMNS` selects them
PAYLOAD_FIELDS = ("chain", "seq", "at", "actor_id", "actor_name", "action", "record_id",
                  "record_version", "definition_hash", "transition", "from_state", "to_state",
                  "changes", "reason", "prev_hash")
#: an event as verify-audit reads it (Core rows): the payload first, then its id and hash
EVENT_COLUMNS = (*(AuditEvent.__table__.c[f] for f in PAYLOAD_FIELDS),
                 AuditEvent.__table__.c.id, AuditEvent.__table__.c.hash)


#: :data:`EVENT_COLUMNS` with the time as the database gives it, without SQLAlchemy's
#: conversion to a datetime (SQLite: its stored text, parsed by a regular expression per row;
#: PostgreSQL: the driver's datetime): verify-audit's record chains, a million rows
EVENT_COLUMNS_RAW_AT = tuple(type_coerce(c, String).label("at") if c.name == "at" else c
                             for c in EVENT_COLUMNS)


def canonical_at(value: Any) -> str:
    """An event's time as the canonical text its hash covers (ISO 8601, UTC, microseconds):
    from an aware or naive-UTC datetime, or from SQLite's stored text
    (``YYYY-MM-DD HH:MM:SS.ffffff``, UTC) without building a datetime."""
    if isinstance(value, str):
        if len(value) == 26 and value[10] == " " and value[19] == ".":
            return f"{value[:10]}T{value[11:]}+00:00"
        value = datetime.fromisoformat(value)  # any other text: parsed as SQLAlchemy would
    return as_utc(value).isoformat(timespec="microseconds")


def row_payload(row: Any) -> dict[str, Any]:
    """:func:`event_payload` of a Core row selected with :data:`EVENT_COLUMNS` (or
    :data:`EVENT_COLUMNS_RAW_AT`), built in C (verify-audit does it a million times); the
    time is put in its canonical text at once, so the encoder calls no hook."""
    payload = dict(zip(PAYLOAD_FIELDS, row, strict=False))
    payload["at"] = canonical_at(payload["at"])
    return payload


#: how :func:`payload_bytes` writes a plain value of the payload, by its exact type (what the
#: C encoder of :func:`canonical.dumps` writes for it); any other type takes the general path
_PLAIN: dict[type, Callable[[Any], str]] = {str: encode_basestring, int: int.__repr__,
                                            type(None): lambda _v: "null"}


def payload_bytes(row: Any) -> bytes:
    """The bytes an event's keyed hash covers, ``canonical.dumps(row_payload(row)).encode()``,
    for a Core row selected with :data:`EVENT_COLUMNS` (or :data:`EVENT_COLUMNS_RAW_AT`),
    written out in canonical key order without building the payload dict (verify-audit does
    it a million times; half the cost). Each plain value (text, an integer, null) is written
    by the encoder :func:`canonical.dumps` uses for it and ``changes`` by :func:`canonical.dumps`
    itself; a value of any other type (possible only in a row changed behind the
    application's back) takes the general path, so the bytes are always the same."""
    (chain, seq, at, actor_id, actor_name, action, record_id, record_version, definition_hash,
     transition, from_state, to_state, changes, reason, prev_hash) = row[:15]
    j = _PLAIN
    try:
        text = (
            f'{{"action":{j[type(action)](action)},"actor_id":{j[type(actor_id)](actor_id)},'
            f'"actor_name":{j[type(actor_name)](actor_name)},'
            f'"at":{encode_basestring(canonical_at(at))},"chain":{j[type(chain)](chain)},'
            f'"changes":{canonical.dumps(changes)},'
            f'"definition_hash":{j[type(definition_hash)](definition_hash)},'
            f'"from_state":{j[type(from_state)](from_state)},'
            f'"prev_hash":{j[type(prev_hash)](prev_hash)},"reason":{j[type(reason)](reason)},'
            f'"record_id":{j[type(record_id)](record_id)},'
            f'"record_version":{j[type(record_version)](record_version)},'
            f'"seq":{j[type(seq)](seq)},"to_state":{j[type(to_state)](to_state)},'
            f'"transition":{j[type(transition)](transition)}}}')
    except KeyError:  # a value of another type (a float, a bool...): the general encoder
        text = canonical.dumps(row_payload(row))
    return text.encode()


def event_payload(ev: Any) -> dict[str, Any]:
    """The hashed content of an event: everything but its own hash and row id."""
    return {
        "chain": ev.chain,
        "seq": ev.seq,
        "at": ev.at,
        "actor_id": ev.actor_id,
        "actor_name": ev.actor_name,
        "action": ev.action,
        "record_id": ev.record_id,
        "record_version": ev.record_version,
        "definition_hash": ev.definition_hash,
        "transition": ev.transition,
        "from_state": ev.from_state,
        "to_state": ev.to_state,
        "changes": ev.changes,
        "reason": ev.reason,
        "prev_hash": ev.prev_hash,
    }


def compute_hash(ev: Any, key: Key,
                 payload: Callable[[Any], dict[str, Any]] = event_payload) -> str:
    """The event's hash under the current server key (``<key id>:<base64url>``)."""
    return keyed_hash(key, payload(ev))


def hash_ok(ev: Any, key: Key,
            payload: Callable[[Any], dict[str, Any]] = event_payload) -> bool:
    """Whether the event's stored hash verifies under the key it names (events written
    before a key rotation keep verifying)."""
    return keyed_ok(key, payload(ev), ev.hash)


def _plain(changes: dict[str, Any] | None) -> dict[str, Any]:
    """JSON-native values only (datetimes as ISO 8601 UTC), so the stored JSON and the
    hashed content are the same thing."""
    if not changes:
        return {}
    return json.loads(canonical.dumps(changes))


def record_event(
    session: Session,
    record: Record,
    *,
    at: datetime,
    actor: User,
    action: str,
    changes: dict[str, Any] | None = None,
    transition: str | None = None,
    from_state: str | None = None,
    to_state: str | None = None,
    reason: str | None = None,
) -> dict[str, Any]:
    """Append an event to ``record``'s chain. The caller holds the record row lock.

    The row is queued on the session and inserted (in order, in one statement) at the
    session's next flush or commit, in the same transaction as the change it records.
    """
    record.audit_seq += 1
    row = {
        "chain": record_chain(record.id),
        "seq": record.audit_seq,
        "at": at,
        "actor_id": actor.id,
        "actor_name": actor.full_name,
        "action": action,
        "record_id": record.id,
        "record_version": record.version,
        "definition_hash": record.definition_hash,
        "transition": transition,
        "from_state": from_state,
        "to_state": to_state,
        "changes": _plain(changes),
        "reason": attributed(session, reason),
        "prev_hash": record.audit_head or GENESIS,
    }
    row["hash"] = keyed_hash(session_key(session), row)
    record.audit_head = row["hash"]
    session.info.setdefault(_PENDING, []).append(row)
    return row


_PENDING = "qms_audit_pending"
# built once: every unit of work runs it (see workflow/engine/statements.py)
_INSERT_EVENTS = insert(AuditEvent.__table__)


def flush_pending(session: Session) -> None:
    """Insert the queued audit rows now: a write-back hook of the unit of work
    (workflow/db/uow.py), run before every flush and before commit."""
    rows = session.info.pop(_PENDING, None)
    if rows:
        connection(session).execute(_INSERT_EVENTS, rows)


def discard_pending(session: Session) -> None:
    """Forget the queued rows (the transaction rolled back)."""
    session.info.pop(_PENDING, None)


def system_event(
    session: Session,
    *,
    at: datetime,
    actor: User | None,
    action: str,
    changes: dict[str, Any] | None = None,
    reason: str | None = None,
    chain: str = SYSTEM_CHAIN,
) -> AuditEvent:
    """Append an event to a non-record chain (logins, grants, definitions...).

    The chain's head row (``audit_chains``) is sealed like a record row (workflow/db/seals.py,
    by the unit of work), so a cut tail with a rewound head is named by verify-audit."""
    head = session.execute(
        select(AuditChain).where(AuditChain.name == chain).with_for_update()
    ).scalar_one_or_none()
    if head is None:
        head = AuditChain(name=chain, seq=0, head="")
        session.add(head)
        # written now: units run without autoflush, and a second event of this unit must
        # find this head instead of adding another row for the same chain (which failed
        # with an IntegrityError on audit_chains on an empty database)
        session.flush()
    head.seq += 1
    ev = AuditEvent(
        chain=chain,
        seq=head.seq,
        at=at,
        actor_id=actor.id if actor else None,
        actor_name=actor.full_name if actor else "system",
        action=action,
        record_id=None,
        record_version=None,
        definition_hash=None,
        changes=_plain(changes),
        reason=attributed(session, reason),
        prev_hash=head.head or GENESIS,
    )
    ev.hash = compute_hash(ev, session_key(session))
    head.head = ev.hash
    session.add(ev)
    return ev


# --------------------------------------------------------------------------- verification


#: the kinds of problem verify-audit reports (``ChainProblem.kind``)
KINDS = ("chain", "record", "signature", "definition", "seal", "replay", "numbering",
         "protection")


@dataclass
class ChainProblem:
    """One problem verify-audit found: ``kind`` (see :data:`KINDS`; other checks may add
    their own), where (``chain``: a chain name or another place such as ``users`` or
    ``trigger audit_events_no_update``; ``seq`` and ``event_id`` for an event) and a message
    a person can act on."""

    chain: str
    seq: int | None
    event_id: int | None
    message: str
    kind: str = "chain"

    @property
    def where(self) -> str:
        where = f"{self.chain} event #{self.seq}" if self.seq is not None else self.chain
        ident = f" (row id {self.event_id})" if self.event_id is not None else ""
        return where + ident

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"

    def as_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "where": self.where, "message": self.message}


#: the public name of a verify-audit problem
Problem = ChainProblem


@dataclass
class VerifyReport:
    chains: int = 0
    events: int = 0
    signatures: int = 0
    problems: list[ChainProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_chain(chain: str, events: list[Any], head_seq: int, head_hash: str,
                 key: Key, payload: Callable[[Any], dict[str, Any]] = event_payload
                 ) -> Iterator[ChainProblem]:
    """Check one chain's events (ordered by seq) against its stored head. ``payload``:
    :func:`row_payload` for Core rows selected with :data:`EVENT_COLUMNS`."""
    prev = GENESIS
    expected_seq = 1
    for ev in events:
        if ev.seq != expected_seq:
            yield ChainProblem(chain, expected_seq, None,
                               f"event is missing (found #{ev.seq} where #{expected_seq} belongs)")
            return
        if ev.prev_hash != prev:
            yield ChainProblem(chain, ev.seq, ev.id,
                               "does not link to the previous event (inserted or reordered)")
            return
        if not hash_ok(ev, key, payload):
            yield ChainProblem(chain, ev.seq, ev.id,
                               "content does not match its hash (the row was altered)")
            return
        prev = ev.hash
        expected_seq += 1
    if expected_seq - 1 != head_seq or prev != (head_hash or GENESIS):
        yield ChainProblem(chain, expected_seq, None,
                           f"chain ends at #{expected_seq - 1} but its head says #{head_seq} "
                           "(events were removed, or the head was altered)")


#: positions in a row of :data:`EVENT_COLUMNS`
_SEQ, _PREV, _ID, _HASH = 1, 14, 15, 16


def verify_rows(chain: str, rows: list[Any], head_seq: int, head_hash: str, key: Key
                ) -> list[ChainProblem]:
    """:func:`verify_chain` for Core rows selected with :data:`EVENT_COLUMNS` (or
    :data:`EVENT_COLUMNS_RAW_AT`), ordered by seq: the same checks in the same order with
    the same problems, the hashed bytes written by :func:`payload_bytes`."""
    ring = as_ring(key)
    verify = ring.verify
    prev = GENESIS
    expected_seq = 1
    for ev in rows:
        if ev[_SEQ] != expected_seq:
            return [ChainProblem(chain, expected_seq, None,
                                 f"event is missing (found #{ev[_SEQ]} where #{expected_seq} "
                                 "belongs)")]
        if ev[_PREV] != prev:
            return [ChainProblem(chain, ev[_SEQ], ev[_ID],
                                 "does not link to the previous event (inserted or reordered)")]
        if not verify(payload_bytes(ev), ev[_HASH]):
            return [ChainProblem(chain, ev[_SEQ], ev[_ID],
                                 "content does not match its hash (the row was altered)")]
        prev = ev[_HASH]
        expected_seq += 1
    if expected_seq - 1 != head_seq or prev != (head_hash or GENESIS):
        return [ChainProblem(chain, expected_seq, None,
                             f"chain ends at #{expected_seq - 1} but its head says #{head_seq} "
                             "(events were removed, or the head was altered)")]
    return []
