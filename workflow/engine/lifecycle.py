"""Creating a record and taking a step: the body of ``Engine.start`` and ``Engine.fire``,
run inside the caller's unit with the record row locked."""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy.orm import Session

from workflow.audit import trail as audit
from workflow.db import records
from workflow.db.models import Record, User
from workflow.engine import access, content, gates, inputs, signing, states
from workflow.engine import statements as st
from workflow.engine.context import Ctx
from workflow.errors import (
    ReasonRequired,
    SignatureRequired,
    TransitionNotAvailable,
    ValidationFailed,
)
from workflow.spec.fields import coerce, is_empty
from workflow.spec.machine import Compiled


def next_number(session: Session, prefix: str, year: int) -> str:
    """Gap-free per prefix and year: the counter row is bumped in this transaction, so
    concurrent creators queue on its lock and a rollback returns the number."""
    key = {"p": prefix, "y": year}
    session.execute(st.COUNTER_ROW[session.get_bind().dialect.name], key)
    value = session.execute(st.BUMP_COUNTER, key).scalar_one()
    return f"{prefix}-{year}-{value:04d}"


def create(ctx: Ctx, compiled: Compiled, user: User, data: dict[str, Any], *,
           reason: str | None = None, parent: Record | None = None,
           link: str = "spawned_by") -> Record:
    """A new record in the definition's initial state (the caller checked start roles)."""
    session = ctx.session
    d = compiled.definition
    clean = inputs.clean(session, d, {}, data, allowed=d.start_edits, what="starting")
    for f in d.fields.values():
        if f.name not in clean and f.default is not None:
            clean[f.name] = coerce(f, f.default)
    missing = [f for f in d.start_requires if is_empty(clean.get(f))]
    if missing:
        raise ValidationFailed({f: "is required" for f in missing})
    if d.start_guards:
        names: dict[str, Any] = {f: clean.get(f) for f in d.fields}
        names.update(now=ctx.now.isoformat(), today=ctx.now.date().isoformat(),
                     number=None, actor=user.username, initiator=user.username,
                     actor_roles=tuple(sorted(ctx.roles(user))),
                     item=None, user=None)
        inputs.check_guards("start", d.start_guards, names)
    now = ctx.now
    initial = d.initial_state
    row = dict(
        number=next_number(session, d.prefix, now.year),
        workflow_key=d.key,
        definition_id=compiled.id,
        definition_hash=d.content_hash,
        title=str(clean.get("title", ""))[:300],
        state=initial,
        state_visit=1,
        data=clean,
        version=1,
        created_by_id=user.id,
        created_at=now,
        updated_at=now,
        closed_at=None,
        outcome=None,
        due_original=now + d.due_in if d.due_in else None,
        due_current=now + d.due_in if d.due_in else None,
        audit_seq=0,
        audit_head="",
        seal="",  # sealed when written back at the end of the unit
    )
    # inserted with Core and kept out of the session; later changes (audit head, state...)
    # are written back at commit like a locked record's
    rec = Record(id=st.inserted_id(session.execute(st.INSERT_RECORD, row)), **row)
    records.track(session, rec)
    ctx.created.append(rec.number)
    changes: dict[str, Any] = {k: [None, v] for k, v in clean.items()}
    audit.record_event(session, rec, at=now, actor=user, action="create",
                       changes=changes, to_state=initial, reason=reason)
    if parent is not None:
        inputs.link(ctx, rec, parent, link, user)
    inputs.link_references(ctx, d, rec, {}, clean, user)
    states.enter_state(ctx, compiled, rec, user)
    return rec


def fire(ctx: Ctx, rec: Record, name: str, user: User, data: dict[str, Any],
         signature: Any, reason: str | None, *, system_actor: bool = False
         ) -> tuple[bool, int, int | None]:
    """Take step ``name`` on the locked ``rec``. Returns (moved, signatures still needed,
    signature id)."""
    session = ctx.session
    compiled = ctx.registry.by_hash(session, rec.definition_hash)
    d = compiled.definition
    t = d.transitions.get(name)
    dest = compiled.dest(name, rec.state) if t is not None else None
    if t is None:
        known = ", ".join(sorted(d.transitions))
        raise TransitionNotAvailable(
            rec.number, name, rec.state, [],
            message=f"{d.title} has no step called {name!r} (its steps: {known}).")
    if dest is None:
        avail = [x.name for x in access.available(ctx, d, rec, user)]
        raise TransitionNotAvailable(rec.number, name, rec.state, avail)
    # the record's trail, read at most once for the separation and content checks
    # (engine/content.py)
    record_events = functools.cache(lambda: content.history(session, rec))
    if not system_actor:
        access.check_step(ctx, d, rec, t, user, record_events)
    else:
        gates.check_open(ctx, d, rec, t)
        gates.check_waits(ctx, d, rec, t)
    early = gates.opens_at(ctx, d, rec, t)
    old_data = rec.data
    new_data = inputs.clean(session, d, old_data, data, allowed=t.edits,
                            what=f"doing {t.label!r}", own_number=rec.number,
                            actor=user if user.id in ctx.read_active else None)
    missing = [f for f in t.requires if is_empty(new_data.get(f))]
    if missing:
        raise ValidationFailed({f: f"is required to {t.label.lower()}" for f in missing})
    if t.reason_required and not (reason or "").strip():
        raise ReasonRequired(f"{t.label.lower()} {rec.number}")
    # signed content is locked; populations, required values, reasons (engine/content.py)
    content.check_fixed(session, d, rec, t, user, old_data, new_data, record_events)
    if t.separation.not_named_in and not system_actor:
        access.named_in(d, rec.number, t, new_data, user)  # also as this step leaves them
    if t.separation.not_in_area is not None and not system_actor:
        access.not_in_area(session, d, rec.number, t, new_data, user)  # as the step leaves them
    if t.guards:
        inputs.check_guards(t.name, t.guards, inputs.names(ctx, d, rec, new_data, user))
    if early is not None and not (reason or "").strip():
        # not_before with early: reason (early: refuse was refused by check_step)
        raise ReasonRequired(f"{t.label.lower()} {rec.number} before it opens on "
                             f"{gates.when(early)} (it is flagged as taken early)")
    content.check(session, d, rec, t, user, old_data, new_data, reason, record_events)

    changes = {k: [old_data.get(k), new_data.get(k)] for k in
               sorted(set(old_data) | set(new_data)) if old_data.get(k) != new_data.get(k)}
    rec.version += 1
    rec.updated_at = ctx.now
    if changes:
        rec.data = new_data
        if "title" in changes:
            rec.title = str(new_data.get("title") or "")[:300]
        audit.record_event(session, rec, at=ctx.now, actor=user, action="update",
                           changes=changes, transition=name, reason=reason)
        inputs.link_references(ctx, d, rec, old_data, new_data, user)

    sig_id = None
    if t.signature is not None:
        if signature is None:
            raise SignatureRequired(name, t.signature.meaning)
        # the signer must be the actor, whose separation of duties authorise() checked
        # above (the system actor skips that, so its signature is checked here)
        gate = t.signature if not t.signature.roles_when else signing.required(
            t.signature, inputs.names(ctx, d, rec, new_data, user))
        sig_id, have = signing.sign(ctx, rec, user, signature, transition=name,
                                    meaning=gate.meaning, roles=gate.roles,
                                    data=new_data, quorum=gate,
                                    separation=t if system_actor else None,
                                    covers=t if t.locks else None)
        if have < gate.quorum:
            # the record stays put until the quorum is met
            return False, gate.quorum - have, sig_id
    src = rec.state
    states.leave_state(ctx, compiled, rec, user, name)
    rec.state = dest
    rec.state_visit += 1
    flags: dict[str, Any] = {"signature_id": sig_id} if sig_id else {}
    if early is not None:
        flags["taken_early"] = {"opens_at": early.isoformat()}
    audit.record_event(session, rec, at=ctx.now, actor=user, action="transition",
                       transition=name, from_state=src, to_state=dest, reason=reason,
                       changes=flags or None)
    states.enter_state(ctx, compiled, rec, user)
    return True, 0, sig_id


