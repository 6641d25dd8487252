"""Moving running records to a new definition version under a signed migration plan
(R-WF-10). Call it through workflow/change_control/plans.py, which validates the plan and
builds the moves."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from workflow.audit import trail as audit
from workflow.db import records
from workflow.db.models import OPEN_TASK, Record, Task, TaskStatus, TimerStatus, User
from workflow.engine import signing, states
from workflow.engine import statements as st
from workflow.engine.context import as_actor
from workflow.engine.core import Engine
from workflow.errors import (
    CredentialsRejected,
    NotAuthorized,
    SignatureRejected,
    StaleRecord,
    WorkflowError,
)
from workflow.identity import enablement
from workflow.identity import users as identity
from workflow.spec.machine import Compiled

log = logging.getLogger(__name__)


def migrate_records(
    engine: Engine,
    moves: list[Mapping[str, Any]],
    *,
    to: Compiled,
    actor: str | User,
    signature: Any,
    meaning: str,
    roles: tuple[str, ...],
    plan: Mapping[str, Any],
    reason: str,
) -> list[tuple[str, str | None]]:
    """Move running records to definition version ``to``.

    Each move is ``{"record": id, "version": the record version validated, "state":
    target state, "drop_fields": [...]}``. The credentials are verified ONCE for the
    whole plan (a TOTP code is single-use); the signer must be ``actor`` and hold one of
    ``roles``. Then each record migrates in its own transaction (its lock stays short; a
    record that changed since validation is skipped, never half-moved): a signature row
    (meaning ``meaning``) bound to the record's content as it was, its open tasks and
    pending timers cancelled, ``drop_fields`` removed, the definition id/hash and the
    state set as a new state visit (quorum signatures given under the old rules do not
    count toward the new version's gate), a "migrated" audit event with both hashes, the
    plan and the signature, then the new state's tasks (an unchanged state keeps its
    tasks' assignee and due date) and its start_timer timers (an unchanged state keeps
    its timer's time). No other on-enter action runs: the record did not arrive by a
    step, so notifications, linked records, due fields and grant revocations must not
    repeat. Returns (number, None) per migrated record, (number, error) per skipped one.
    """
    try:
        with engine.unit() as session:
            user = as_actor(session, actor)
            signer = engine.verifier.verify(session, signature, user)
            if signer.user.id != user.id:
                raise SignatureRejected("The signer must be the person migrating the records.")
            enablement.require_enabled(session, user)  # 21 CFR 11.100(b), 11.10(j)
            eligible = [r for r in roles if r in identity.roles_of(session, user)]
            if not eligible:
                raise NotAuthorized(f"Signing {meaning!r} needs one of these roles: "
                                    f"{', '.join(roles)}.", required_roles=roles)
            user_id, method, role = user.id, signer.method, eligible[0]
    except CredentialsRejected as exc:
        engine.signature_failed(exc)
        raise
    out: list[tuple[str, str | None]] = []
    for move in moves:
        number = str(move["record"])
        try:
            with engine.unit() as session:
                signer_user = session.get(User, user_id)
                assert signer_user is not None
                rec = records.lock(session, move["record"])
                number = rec.number
                _migrate_one(engine, session, rec, move, to, signer_user, method, role,
                             meaning, plan, reason)
            out.append((number, None))
        except WorkflowError as exc:
            log.warning("migration of %s skipped: %s", number, exc)
            out.append((number, str(exc)))
    return out


def _migrate_one(engine: Engine, session: Session, rec: Record, move: Mapping[str, Any],
                 to: Compiled, user: User, method: str, role: str, meaning: str,
                 plan: Mapping[str, Any], reason: str) -> None:
    d = to.definition
    ctx = engine.context(session)
    if rec.version != move["version"]:
        raise StaleRecord(rec.number, move["version"], rec.version)
    if rec.workflow_key != d.key or rec.closed_at is not None:
        raise WorkflowError(f"{rec.number} is not a running {d.key} record")
    old = engine.registry.by_hash(session, rec.definition_hash)
    state = d.states[move["state"]]
    src = rec.state
    rec.version += 1
    rec.updated_at = ctx.now
    sig_id = signing.store(ctx, rec, user, transition="migrate", meaning=meaning, role=role,
                           method=method, data=rec.data)
    before = {t.role: t for t in session.execute(
        select(st.tasks.role, st.tasks.assignee_id, st.tasks.due_at).where(
            st.tasks.record_id == rec.id, OPEN_TASK))}
    session.execute(update(Task.__table__).where(
        st.tasks.record_id == rec.id, OPEN_TASK).values(
        status=TaskStatus.CANCELLED, closed_at=ctx.now, closed_by_id=user.id,
        closed_by_transition="migrate"))
    timers = dict(session.execute(select(st.timers.transition, st.timers.fire_at).where(
        st.timers.record_id == rec.id, st.timers.status == TimerStatus.PENDING,
        st.timers.state_visit == rec.state_visit)).all())
    session.execute(st.CANCEL_TIMERS, {"rid": rec.id})
    dropped = {f: [rec.data[f], None] for f in move.get("drop_fields", ()) if f in rec.data}
    if dropped:
        rec.data = {k: v for k, v in rec.data.items() if k not in dropped}
    old_hash = rec.definition_hash
    rec.definition_id, rec.definition_hash = to.id, d.content_hash
    rec.state = state.name
    rec.state_visit += 1
    audit.record_event(
        session, rec, at=ctx.now, actor=user, action="migrated",
        transition="migrate", from_state=src, to_state=state.name, reason=reason,
        changes={"definition_hash": [old_hash, d.content_hash],
                 "definition_version": [old.version, to.version],
                 "plan": dict(plan), "signature_id": sig_id, "fields": dropped})
    same = state.name == src
    states.open_tasks(ctx, rec, state, keep=before if same else {})
    for action in state.on_enter:
        if action.kind == "start_timer":
            keep = timers.get(action.params["transition"]) if same else None
            states.start_timer(ctx, rec, action.params, keep=keep)
