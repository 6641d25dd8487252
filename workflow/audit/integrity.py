"""``qms verify-audit``: recompute every audit chain and signature, and replay each record.

For each record chain it checks sequence, links and hashes (see :mod:`workflow.audit`),
then replays the events (created values, field changes, state transitions, migrations to
another definition version) and compares the result with the record row, so a record edited
behind the application's back is named.
Every signature's MAC is recomputed (a signature copied to another record fails) and its
content hash is compared with the record's content replayed to the moment of signing.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import String, cast, literal, select
from sqlalchemy.orm import Session

from workflow import canonical, clock
from workflow.audit.trail import ChainProblem, VerifyReport, record_chain, verify_chain
from workflow.db.models import AuditChain, AuditEvent, JobRun, Record, Signature
from workflow.audit import trail as audit
from workflow.db.seals import mac_ok, record_seal, seal_unsealed
from workflow.db.uow import Units

BATCH = 500
#: the JobRun.job name under which integrity verification results are stored
VERIFY_JOB = "verify_audit"


def verify(session: Session, key: bytes) -> VerifyReport:
    report = VerifyReport()
    # record chains, a batch of records at a time (memory stays flat)
    last_id = 0
    while True:
        records = session.execute(
            select(Record).where(Record.id > last_id).order_by(Record.id).limit(BATCH)
        ).scalars().all()
        if not records:
            break
        ids = [r.id for r in records]
        events: dict[int, list[AuditEvent]] = defaultdict(list)
        for ev in session.execute(
            select(AuditEvent).where(AuditEvent.chain.in_([record_chain(i) for i in ids]))
            .order_by(AuditEvent.chain, AuditEvent.seq)
        ).scalars():
            events[ev.record_id or -1].append(ev)
        sigs: dict[int, list[Signature]] = defaultdict(list)
        for s in session.execute(select(Signature).where(Signature.record_id.in_(ids))).scalars():
            sigs[s.record_id].append(s)
        for rec in records:
            report.chains += 1
            evs = events.get(rec.id, [])
            report.events += len(evs)
            chain = record_chain(rec.id)
            problems = list(verify_chain(chain, evs, rec.audit_seq, rec.audit_head, key))
            if not problems:
                problems = list(_replay(rec, evs, {s.id: s for s in sigs.get(rec.id, [])}, key))
            if rec.seal != record_seal(key, rec):
                problems.append(ChainProblem(
                    chain, None, None,
                    f"{rec.number}: the record row does not match its seal: it was changed "
                    "outside the application"))
            for s in sigs.get(rec.id, []):
                report.signatures += 1
                if not mac_ok(key, s, rec.number):
                    problems.append(ChainProblem(
                        chain, None, None,
                        f"signature #{s.id} ({s.meaning!r} by {s.signer_name}) does not verify: "
                        "it was altered or does not belong to this record"))
            report.problems.extend(problems)
        last_id = ids[-1]
        session.expunge_all()
    # non-record chains (system events: users, grants, definitions...)
    for head in session.execute(select(AuditChain).order_by(AuditChain.name)).scalars():
        evs = list(session.execute(
            select(AuditEvent).where(AuditEvent.chain == head.name).order_by(AuditEvent.seq)
        ).scalars())
        report.chains += 1
        report.events += len(evs)
        report.problems.extend(verify_chain(head.name, evs, head.seq, head.head, key))
    # an event filed under one record but chained under another (or none) would be shown
    # in that record's trail without ever being verified
    misfiled = session.execute(
        select(AuditEvent.id, AuditEvent.chain, AuditEvent.record_id).where(
            AuditEvent.record_id.is_not(None),
            AuditEvent.chain != literal("record:") + cast(AuditEvent.record_id, String))
        .limit(1)
    ).first()
    if misfiled:
        report.problems.append(ChainProblem(
            misfiled.chain, None, misfiled.id,
            f"event belongs to record id {misfiled.record_id} but is filed in another chain "
            "(inserted outside the application)"))
    stray = session.execute(
        select(AuditEvent.chain).where(
            AuditEvent.record_id.is_(None),
            AuditEvent.chain.not_in(select(AuditChain.name)))
        .limit(1)
    ).scalar_one_or_none()
    if stray:
        report.problems.append(ChainProblem(stray, None, None, "events of an unknown chain"))
    return report


def _replay(rec: Record, events: list[AuditEvent], sigs: dict[int, Signature], key: bytes
            ) -> Iterator[ChainProblem]:
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
                # a signed migration plan (workflow/migration_plans.py): the definition hash
                # and the state change, dropped fields leave ([old, None] under "fields")
                old_rules, new_rules = ev.changes.get("definition_hash") or [None, None]
                if ev.from_state != state or old_rules != rules:
                    yield ChainProblem(chain, ev.seq, ev.id,
                                       f"migrates from {ev.from_state!r} under {old_rules!r} "
                                       f"but the record was in {state!r} under {rules!r}")
                    return
                state, rules = ev.to_state, new_rules
            changes = ev.changes.get("fields", {}) if ev.action == "migrated" else ev.changes
            for name, change in changes.items():
                old, new = change
                if data.get(name) != old:
                    yield ChainProblem(chain, ev.seq, ev.id,
                                       f"field {name!r} was {data.get(name)!r} before this event, "
                                       f"but the event says {old!r}")
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
                                   f"moves from {ev.from_state!r} but the record was in {state!r}")
                return
            state = ev.to_state
        elif ev.action == "sign":
            info = ev.changes.get("signature", {})
            sig = sigs.get(info.get("id"))
            if sig is None:
                yield ChainProblem(chain, ev.seq, ev.id,
                                   f"signature #{info.get('id')} recorded here is missing")
                return
            seen_sigs.add(sig.id)
            expected = canonical.sha256(canonical.record_content(
                rec.number, rec.workflow_key, ev.definition_hash or rec.definition_hash, data))
            if sig.content_hash != expected or info.get("content_hash") != sig.content_hash:
                yield ChainProblem(chain, ev.seq, ev.id,
                                   f"signature #{sig.id} ({sig.meaning!r}) was given on content "
                                   "that differs from the record's history")
                return
    for sid in sorted(set(sigs) - seen_sigs):
        yield ChainProblem(chain, None, None,
                           f"signature #{sid} is not recorded in the audit trail")
    if data != rec.data:
        changed = sorted(k for k in set(data) | set(rec.data) if data.get(k) != rec.data.get(k))
        yield ChainProblem(chain, None, None,
                           f"{rec.number}: record data differs from its audit trail "
                           f"(fields {', '.join(changed)}): edited outside the application")
    if state != rec.state:
        yield ChainProblem(chain, None, None,
                           f"{rec.number}: record is in state {rec.state!r} but its audit trail "
                           f"ends in {state!r}: edited outside the application")
    if rules is not None and rules != rec.definition_hash:
        yield ChainProblem(chain, None, None,
                           f"{rec.number}: record runs under definition {rec.definition_hash!r} "
                           f"but its audit trail says {rules!r}: edited outside the application")


def store_verification(session: Session, report: VerifyReport, started: datetime,
                       runner: str) -> JobRun:
    """Keep a verification result (``integrity.verify``) for the dashboard. The caller's unit
    commits it."""
    now = clock.now()
    # each run is its own "period": the time plus a nonce (two runs can share a clock tick)
    run = JobRun(job=VERIFY_JOB,
                 period_key=f"{now.isoformat(timespec='microseconds')}#{uuid.uuid4().hex[:8]}",
                 started_at=started, finished_at=now, status="done" if report.ok else "failed",
                 result={"ok": report.ok, "chains": report.chains, "events": report.events,
                         "signatures": report.signatures, "problems": len(report.problems),
                         "first_problem": str(report.problems[0]) if report.problems else None},
                 runner=runner)
    session.add(run)
    session.flush()
    return run


#: who may run verify-audit from the dashboard (``qms verify-audit`` is the operator's)
VERIFY_ROLES = ("qa", "admin")


def verify_and_store(engine: Units, runner: str) -> VerifyReport:
    """Verify every chain in a read transaction (writers are not held up meanwhile), then
    keep the result for the dashboard's data-integrity tile in a unit of its own
    (``qms verify-audit`` and the dashboard's verify button)."""
    started = clock.now()
    with engine.reader() as session:
        report = verify(session, engine.signing_key)
    with engine.unit() as session:
        store_verification(session, report, started, runner)
    return report


def seal_existing(engine: Units, runner: str) -> dict[str, list[str]]:
    """Seal the security rows written before seals existed (after upgrading to migration
    0008), in one unit; what was sealed is recorded on the system chain (``rows_sealed``),
    so verify-audit and an inspector can see when each row got its seal. Idempotent."""
    with engine.unit() as session:
        done = seal_unsealed(session)
        if done:
            audit.system_event(session, at=clock.now(), actor=None, action="rows_sealed",
                               changes={"by": runner, "rows": done},
                               reason="rows written before the security seals existed")
    return done
