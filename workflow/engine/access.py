"""Who may see a record and who may take a step: visibility, roles, separation of duties
and the training gate. Every entry point checks through these functions."""

from __future__ import annotations

from sqlalchemy.orm import Session

from workflow import rules
from workflow.db.models import Record, User
from workflow.engine import statements as st
from workflow.engine.context import Ctx
from workflow.errors import (
    NotAuthorized,
    RecordNotFound,
    SegregationOfDuties,
    TrainingRequired,
    UntrustedGrant,
)
from workflow.identity import users as identity
from workflow.spec.model import TransitionSpec, WorkflowDefinition


def check_visible(ctx: Ctx, rec: Record, user: User, ref: int | str) -> None:
    """A record the user may not see is reported as not found (no probing by id)."""
    d = ctx.registry.by_hash(ctx.session, rec.definition_hash).definition
    if not rules.can_see(ctx.session, d, rec, user, ctx.roles(user)):
        raise RecordNotFound(ref)


def authorise(session: Session, d: WorkflowDefinition, rec: Record, t: TransitionSpec,
              user: User, roles: set[str]) -> None:
    """The user may take step ``t`` on ``rec``: active, holds one of its roles (or is the
    initiator / the assignee where the step allows them), and separation of duties holds."""
    if not user.active:
        raise NotAuthorized(f"{user.username} is deactivated.")
    allowed = roles & set(t.roles)
    if not allowed and "initiator" in t.roles and user.id == rec.created_by_id:
        allowed = {"initiator"}
    if not allowed and "assignee" in t.roles and is_assignee(session, rec, user):
        allowed = {"assignee"}
    if not allowed and not user.is_system:
        forged = identity.untrusted_roles(session, user) & set(t.roles)
        if forged:
            # the role is held only through a grant changed outside the application
            raise UntrustedGrant(user.username, tuple(sorted(forged)))
        names = ", ".join(role_label(d, r) for r in t.roles)
        raise NotAuthorized(
            f"{t.label} on {rec.number} needs one of these roles: {names}.",
            required_roles=t.roles)
    separation(session, rec, t, user)


def is_assignee(session: Session, rec: Record, user: User) -> bool:
    return session.execute(st.HAS_OPEN_TASK, {"rid": rec.id, "uid": user.id}).first() is not None


def separation(session: Session, rec: Record, t: TransitionSpec, user: User) -> None:
    """The step's separation-of-duties rules (not the initiator, not who did step X)."""
    sep = t.separation
    if sep.not_initiator and user.id == rec.created_by_id:
        raise SegregationOfDuties(
            f"{t.label}: the person who initiated {rec.number} may not also do this step.",
            rule="not_initiator")
    if sep.not_actor_of:
        did = session.execute(st.DID_STEP, {"rid": rec.id, "uid": user.id,
                                            "transitions": list(sep.not_actor_of)}
                              ).scalar_one_or_none()
        if did:
            raise SegregationOfDuties(
                f"{t.label}: you performed {did!r} on {rec.number}, so someone else must "
                "do this step.", rule=f"not_actor_of:{did}")


def training_gate(ctx: Ctx, d: WorkflowDefinition, rec: Record, t: TransitionSpec,
                  user: User) -> None:
    """Part 11 §11.10(i): refuse, naming the training, when the actor has no completed
    training record (of a workflow declaring the ``training`` capability) for a document
    (version) the step or the state requires."""
    required = t.training + d.states[rec.state].training
    if not required:
        return
    workflows = rules.training_workflows(ctx.registry.known(ctx.session).values())
    missing = [str(req) for req in required
               if not rules.trained_on(ctx.session, workflows, user.username, req.document,
                                       req.version, ctx.now)]
    if missing:
        raise TrainingRequired(user.username, missing)


def available(session: Session, d: WorkflowDefinition, rec: Record, user: User,
              roles: set[str]) -> list[TransitionSpec]:
    """The steps from the record's state the user may take (by role and separation of
    duties; guards and signatures are checked when firing)."""
    out = []
    for t in d.transitions_from(rec.state):
        try:
            authorise(session, d, rec, t, user, roles)
        except NotAuthorized:
            continue
        out.append(t)
    return out


def role_label(d: WorkflowDefinition, role: str) -> str:
    return {"initiator": "the record's initiator",
            "assignee": "the person the task is assigned to"}.get(role, d.roles.get(role, role))
