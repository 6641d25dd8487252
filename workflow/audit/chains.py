"""verify-audit's record part: every record's chain, seal, signatures and replay, one range of
record ids at a time, with Core rows streamed in (id, seq) order.

A range is independent of every other (a record's chain lives on its own row), so
:func:`verify_range` is what the worker processes of :mod:`workflow.audit.integrity` run,
each on a connection of its own; in one process it runs on the caller's connection.

For each record it checks sequence, links and hashes (:func:`~workflow.audit.trail.verify_rows`),
then replays the events (created values, field changes, state transitions, migrations to
another definition version) and compares the result with the record row, so a record edited
behind the application's back is named. Every signature's MAC is recomputed (a signature
copied to another record fails) and its content hash is compared with the record's content
replayed to the moment of signing. Events of a record id that has no row (a deleted record)
are named too.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import groupby
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection, func, select

from workflow import canonical
from workflow.audit.trail import (
    EVENT_COLUMNS_RAW_AT,
    ChainProblem,
    record_chain,
    verify_rows,
)
from workflow.db.models import AuditEvent, Record, Signature
from workflow.db.seals import mac_ok, record_seal_ok
from workflow.keyring import Key, as_ring

#: records per range (a range's events are sorted by the database: keep them in memory-size)
RANGE = 2000
#: execution options of the large reads: a server-side cursor, rows fetched in batches
STREAM = {"stream_results": True, "yield_per": 5000}

_records = Record.__table__
_events = AuditEvent.__table__
_sigs = Signature.__table__
_EVENT_ORDER = (_events.c.record_id, _events.c.seq)
#: the record id of a row of :data:`EVENT_COLUMNS_RAW_AT`
_RECORD_ID = itemgetter(6)


@dataclass
class Counts:
    """What a part of the verification covered, and the problems it found."""

    chains: int = 0
    events: int = 0
    signatures: int = 0
    problems: list[ChainProblem] = field(default_factory=list)

    def add(self, other: Counts) -> None:
        self.chains += other.chains
        self.events += other.events
        self.signatures += other.signatures
        self.problems.extend(other.problems)


def ranges(conn: Connection, size: int | None = None) -> list[tuple[int, int]]:
    """Half-open record id ranges [lo, hi) of ``size`` (default :data:`RANGE`) records each,
    covering every record id from 1 and every event filed under a record id (also one whose
    record row is gone).

    The bounds are every ``size``-th existing record id, not multiples of ``size``: ids are
    not dense (a PostgreSQL sequence is not rolled back with the rows it numbered, a bulk
    load may start anywhere), and a range of ids with no records in it would still cost its
    three statements (hundreds of thousands of them on a database with sparse ids)."""
    size = size or RANGE
    hi_rec = conn.execute(select(func.max(_records.c.id))).scalar() or 0
    hi_ev = conn.execute(select(func.max(_events.c.record_id))).scalar() or 0
    top = max(hi_rec, hi_ev)
    if not top:
        return []
    numbered = select(_records.c.id, func.row_number().over(order_by=_records.c.id).label("n")
                      ).subquery()
    starts = conn.execute(select(numbered.c.id).where((numbered.c.n - 1) % size == 0)
                          .order_by(numbered.c.id)).scalars().all()
    bounds = [1, *starts[1:], top + 1]
    return list(zip(bounds, bounds[1:], strict=False))


def verify_range(conn: Connection, key: Key, lo: int, hi: int) -> Counts:
    """Verify the records with ids in [lo, hi) and every event filed under those ids."""
    key = as_ring(key)
    out = Counts()
    recs = conn.execute(select(_records).where(_records.c.id >= lo, _records.c.id < hi)
                        .order_by(_records.c.id)).all()
    sigs: dict[int, dict[int, Any]] = {}
    for s in conn.execute(select(_sigs).where(_sigs.c.record_id >= lo, _sigs.c.record_id < hi)):
        sigs.setdefault(s.record_id, {})[s.id] = s
    # streamed (a server-side cursor on PostgreSQL); the options go with this statement only:
    # Connection.execution_options would change the caller's connection
    events = conn.execute(
        select(*EVENT_COLUMNS_RAW_AT).where(_events.c.record_id >= lo, _events.c.record_id < hi)
        .order_by(*_EVENT_ORDER), execution_options=STREAM)
    by_record = _group(events)
    pending = next(by_record, None)
    for rec in recs:
        # events of record ids below this one have no record row: the record was deleted
        while pending is not None and pending[0] < rec.id:
            out.problems.append(_orphans(*pending))
            pending = next(by_record, None)
        evs: list[Any] = []
        if pending is not None and pending[0] == rec.id:
            evs = pending[1]
            pending = next(by_record, None)
        out.chains += 1
        out.events += len(evs)
        rec_sigs = sigs.pop(rec.id, {})
        out.signatures += len(rec_sigs)
        out.problems.extend(verify_record(rec, evs, rec_sigs, key))
    while pending is not None:
        out.problems.append(_orphans(*pending))
        pending = next(by_record, None)
    for rid, orphan in sorted(sigs.items()):
        out.problems.append(ChainProblem(
            record_chain(rid), None, None,
            f"{len(orphan)} signature(s) of record id {rid}, which has no record row: the "
            "record was deleted outside the application", kind="record"))
    return out


def _group(rows: Any) -> Iterator[tuple[int, list[Any]]]:
    # rows in (record_id, seq) order, grouped in C
    for record_id, bucket in groupby(rows, _RECORD_ID):
        yield record_id, list(bucket)


def _orphans(record_id: int, evs: list[Any]) -> ChainProblem:
    return ChainProblem(record_chain(record_id), None, None,
                        f"{len(evs)} audit event(s) of record id {record_id}, which has no "
                        "record row: the record was deleted outside the application",
                        kind="record")


def verify_record(rec: Any, evs: list[Any], sigs: dict[int, Any], key: Key
                  ) -> list[ChainProblem]:
    """One record: its chain (events in seq order), then its replay, seal and signatures."""
    chain = record_chain(rec.id)
    problems = verify_rows(chain, evs, rec.audit_seq, rec.audit_head, key)
    if not problems:
        problems = list(replay(rec, evs, sigs))
    if not record_seal_ok(key, rec):
        problems.append(ChainProblem(
            chain, None, None,
            f"{rec.number}: the record row does not match its seal: it was changed "
            "outside the application", kind="record"))
    for s in sigs.values():
        if not mac_ok(key, s, rec.number):
            problems.append(ChainProblem(
                chain, None, None,
                f"signature #{s.id} ({s.meaning!r} by {s.signer_name}) does not verify: "
                "it was altered or does not belong to this record", kind="signature"))
    return problems


def replay(rec: Any, events: list[Any], sigs: dict[int, Any]) -> Iterator[ChainProblem]:
    """Replay a record's (verified) events and compare the outcome with its row."""
    chain = record_chain(rec.id)
    data: dict[str, Any] = {}
    state: str | None = None
    rules: str | None = None  # the definition hash in force (changes only by "migrated")
    seen_sigs: set[int] = set()
    for ev in events:
        if ev.action == "create":
            rules = ev.definition_hash
        if ev.action in ("create", "update", "migrated"):
            if ev.action == "migrated":
                # a signed migration plan (workflow/change_control/migrate.py): the definition
                # hash and the state change, dropped fields leave ([old, None] under "fields")
                old_rules, new_rules = ev.changes.get("definition_hash") or [None, None]
                if ev.from_state != state or old_rules != rules:
                    yield ChainProblem(chain, ev.seq, ev.id,
                                       f"migrates from {ev.from_state!r} under {old_rules!r} "
                                       f"but the record was in {state!r} under {rules!r}",
                                       kind="record")
                    return
                state, rules = ev.to_state, new_rules
            changes = ev.changes.get("fields", {}) if ev.action == "migrated" else ev.changes
            for name, change in changes.items():
                old, new = change
                if data.get(name) != old:
                    yield ChainProblem(chain, ev.seq, ev.id,
                                       f"field {name!r} was {data.get(name)!r} before this event, "
                                       f"but the event says {old!r}", kind="record")
                    return
                if new is None:
                    data.pop(name, None)
                else:
                    data[name] = new
            if ev.action == "create":
                state = ev.to_state
        elif ev.action == "transition":
            if ev.from_state != state:
                yield ChainProblem(chain, ev.seq, ev.id,
                                   f"moves from {ev.from_state!r} but the record was in {state!r}",
                                   kind="record")
                return
            state = ev.to_state
        elif ev.action == "sign":
            info = ev.changes.get("signature", {})
            sig = sigs.get(info.get("id"))
            if sig is None:
                yield ChainProblem(chain, ev.seq, ev.id,
                                   f"signature #{info.get('id')} recorded here is missing",
                                   kind="signature")
                return
            seen_sigs.add(sig.id)
            expected = canonical.sha256(canonical.record_content(
                rec.number, rec.workflow_key, ev.definition_hash or rec.definition_hash, data))
            if sig.content_hash != expected or info.get("content_hash") != sig.content_hash:
                yield ChainProblem(chain, ev.seq, ev.id,
                                   f"signature #{sig.id} ({sig.meaning!r}) was given on content "
                                   "that differs from the record's history", kind="signature")
                return
    for sid in sorted(set(sigs) - seen_sigs):
        yield ChainProblem(chain, None, None,
                           f"signature #{sid} is not recorded in the audit trail",
                           kind="signature")
    if data != rec.data:
        changed = sorted(k for k in set(data) | set(rec.data) if data.get(k) != rec.data.get(k))
        yield ChainProblem(chain, None, None,
                           f"{rec.number}: record data differs from its audit trail "
                           f"(fields {', '.join(changed)}): edited outside the application",
                           kind="record")
    if state != rec.state:
        yield ChainProblem(chain, None, None,
                           f"{rec.number}: record is in state {rec.state!r} but its audit trail "
                           f"ends in {state!r}: edited outside the application", kind="record")
    if rules is not None and rules != rec.definition_hash:
        yield ChainProblem(chain, None, None,
                           f"{rec.number}: record runs under definition {rec.definition_hash!r} "
                           f"but its audit trail says {rules!r}: edited outside the application",
                           kind="record")
