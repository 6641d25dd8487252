"""Who may see a record and who may take a step: visibility, roles, separation of duties,
a claim held by someone else, signatures already given, the training gate, and the step's
own timing and linked-record gates (``gates``). Every entry point checks through
:func:`check_step`, and the record page offers steps through :func:`options`, which asks
the same function: a step is offered only when the engine would accept it (R-WF-11)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from workflow import rules
from workflow.db import records
from workflow.db.models import Record, User
from workflow.engine import gates, inputs
from workflow.engine import statements as st
from workflow.engine.context import Ctx
from workflow.errors import (
    ClaimHeld,
    NotAuthorized,
    RecordNotFound,
    SegregationOfDuties,
    TrainingRequired,
    UntrustedGrant,
    WorkflowError,
)
from workflow.identity import users as identity
from workflow.spec import expressions
from workflow.spec.fields import users_in
from workflow.spec.model import Guard, TransitionSpec, WorkflowDefinition

#: the record's create, update, transition and sign events, oldest first, read at most once
#: per step (``functools.cache`` over :func:`workflow.engine.content.history`)
History = Callable[[], list[Any]]


@dataclass(frozen=True)
class Option:
    """A step from the record's state as offered to one person: ``refused`` is the message
    of the rule that would refuse it now (None: the engine would accept it, subject to the
    step's input, guards and signature); ``rule`` names that rule (the error's code);
    ``note``: what taking it now implies (e.g. a reason for taking it early)."""

    transition: TransitionSpec
    refused: str | None = None
    rule: str | None = None
    note: str | None = None

    @property
    def offered(self) -> bool:
        return self.refused is None


def check_step(ctx: Ctx, d: WorkflowDefinition, rec: Record, t: TransitionSpec,
               user: User, events: History | None = None) -> None:
    """Every rule about who may take step ``t`` on ``rec`` now, in order: active and holding
    an allowed role; separation of duties; not already signed by this person in this visit;
    a task held by someone else; the training gate; not before it opens (``early: refuse``);
    the linked records it waits for. Raises the refusing rule's error; the engine calls it
    on every step and :func:`options` on every step it offers. ``events``: the record's
    trail as the step reads it (engine/content.py), shared with the separation check."""
    if not user.is_system:
        roles = ctx.roles(user)
        authorise(ctx.session, d, rec, t, user, roles, events)
        already_signed(ctx.session, rec, t, user)
        claim_holds(ctx.session, d, rec, t, user, roles)
        training_gate(ctx, d, rec, t, user)
    gates.check_open(ctx, d, rec, t)
    gates.check_waits(ctx, d, rec, t)


def options(ctx: Ctx, d: WorkflowDefinition, rec: Record, user: User) -> list[Option]:
    """The steps from the record's state that are the user's (they hold a role that may do
    them), each with the rule that would refuse it now, if any. Steps of other roles are not
    listed."""
    out = []
    for t in d.transitions_from(rec.state):
        if not user.active or not (user.is_system or
                                   allowed_roles(ctx.session, rec, t, user, ctx.roles(user))):
            continue
        try:
            check_step(ctx, d, rec, t, user)
            if t.signature is not None and t.signature.roles_when and not user.is_system:
                signer_role(ctx, d, rec, t, user)
        except WorkflowError as exc:
            out.append(Option(t, exc.message, exc.code))
            continue
        opens = gates.opens_at(ctx, d, rec, t)
        out.append(Option(t, note=None if opens is None else
                          f"Opens on {gates.when(opens)}; taking it now needs a reason and is "
                          "flagged as taken early."))
    return out


def signer_role(ctx: Ctx, d: WorkflowDefinition, rec: Record, t: TransitionSpec,
                user: User) -> None:
    """A step whose signature needs a role only when a condition holds (``roles_when``) is
    offered to a person holding a role it needs on the record as it stands: a QA-only person
    is not offered an incident review that needs QA only with GxP data, when there is none.
    (The signature gate itself decides on the values being signed.)"""
    assert t.signature is not None
    gate = t.signature.required(inputs.names(ctx, d, rec, rec.data, user))
    if not ctx.roles(user) & set(gate.roles):
        names = ", ".join(role_label(d, r) for r in gate.roles)
        raise NotAuthorized(f"{t.label} on {rec.number} is signed by {names} here.",
                            required_roles=gate.roles)


def check_visible(ctx: Ctx, rec: Record, user: User, ref: int | str) -> None:
    """A record the user may not see is reported as not found (no probing by id)."""
    d = ctx.registry.by_hash(ctx.session, rec.definition_hash).definition
    if not rules.can_see(ctx.session, d, rec, user, ctx.roles(user)):
        raise RecordNotFound(ref)


def authorise(session: Session, d: WorkflowDefinition, rec: Record, t: TransitionSpec,
              user: User, roles: set[str], events: History | None = None) -> None:
    """The user may take step ``t`` on ``rec``: active, holds one of its roles (or is the
    initiator / the assignee where the step allows them), and separation of duties holds."""
    if not user.active:
        raise NotAuthorized(f"{user.username} is deactivated.")
    allowed = allowed_roles(session, rec, t, user, roles)
    if not allowed and not user.is_system:
        forged = identity.untrusted_roles(session, user) & set(t.roles)
        if forged:
            # the role is held only through a grant changed outside the application
            raise UntrustedGrant(user.username, tuple(sorted(forged)))
        names = ", ".join(role_label(d, r) for r in t.roles)
        raise NotAuthorized(
            f"{t.label} on {rec.number} needs one of these roles: {names}.",
            required_roles=t.roles)
    separation(session, rec, t, user, d, events)


def allowed_roles(session: Session, rec: Record, t: TransitionSpec, user: User,
                  roles: set[str]) -> set[str]:
    """The roles (or pseudo-roles) through which ``user`` may do ``t`` on ``rec``."""
    allowed = roles & set(t.roles)
    if not allowed and "initiator" in t.roles and user.id == rec.created_by_id:
        allowed = {"initiator"}
    if not allowed and "assignee" in t.roles and is_assignee(session, rec, user):
        allowed = {"assignee"}
    return allowed


def already_signed(session: Session, rec: Record, t: TransitionSpec, user: User) -> None:
    """A person gives one signature of a quorum: a step they signed in this visit of the
    state is not theirs to sign again."""
    if t.signature is None or t.signature.quorum < 2:
        return
    earlier = session.execute(st.EARLIER_SIGNATURES, {
        "rid": rec.id, "transition": t.name, "visit": rec.state_visit}).all()
    if any(s == user.id for s, _ in earlier):
        raise SegregationOfDuties(
            f"You have already signed {t.label!r} on {rec.number}; another person must give "
            "the next signature (rule: distinct signers).", rule="distinct_signers")


def claim_holds(session: Session, d: WorkflowDefinition, rec: Record, t: TransitionSpec,
                user: User, roles: set[str]) -> None:
    """A claimed task is completed only by its holder: when every open task of the record's
    state for the roles through which the user would act was claimed by (or delegated to)
    someone else, the step is theirs until they release or delegate it (R-WF-12). A signature
    quorum that one role gives several times (quorum > 1 without one_per_role) is shared."""
    acting = roles & set(t.roles)
    if d.states[rec.state].assignee_field:
        return  # the definition assigns this state's task to a person; not a claim
    if not acting or (t.signature is not None and t.signature.quorum > 1
                      and not t.signature.one_per_role):
        return
    read = records.open_tasks_read(session, rec)  # read with the record's lock, if it was
    rows = read if read is not None else session.execute(st.OPEN_TASK_HOLDERS, {"rid": rec.id})
    tasks = [row for row in rows if row.role in acting]
    if not tasks or any(row.assignee_id in (None, user.id) for row in tasks):
        return
    held = tasks[0]
    raise ClaimHeld(
        f"{t.label} on {rec.number}: the task is held by {held.full_name} "
        f"({held.username}); only they can complete it until they release or delegate it "
        "(rule: a claim holds).", holder=str(held.username), task_id=held.id)


def is_assignee(session: Session, rec: Record, user: User) -> bool:
    return session.execute(st.HAS_OPEN_TASK, {"rid": rec.id, "uid": user.id}).first() is not None


def separation(session: Session, rec: Record, t: TransitionSpec, user: User,
               d: WorkflowDefinition | None = None, events: History | None = None) -> None:
    """The step's separation-of-duties rules (not the initiator, not who did step X, not
    a person named in field Y), for signed and unsigned steps alike (R-WF-13). Each refusal
    names its rule."""
    sep = t.separation
    if sep.not_initiator and user.id == rec.created_by_id:
        raise SegregationOfDuties(
            f"{t.label}: the person who initiated {rec.number} may not also do this step "
            "(separation of duties: not the initiator).", rule="not_initiator")
    if sep.not_actor_of:
        if events is not None:
            # the step reads the record's trail anyway: the same events, no second query
            did = next((ev.transition for ev in events() if ev.actor_id == user.id
                        and ev.action in ("transition", "sign")
                        and ev.transition in sep.not_actor_of), None)
        else:
            did = session.execute(st.DID_STEP, {"rid": rec.id, "uid": user.id,
                                                "transitions": list(sep.not_actor_of)}
                                  ).scalar_one_or_none()
        if did:
            label = d.transitions[did].label if d is not None and did in d.transitions else did
            raise SegregationOfDuties(
                f"{t.label}: you performed {did!r} ({label}) on {rec.number}, so someone else "
                f"must do this step (separation of duties: not whoever did {label!r}).",
                rule=f"not_actor_of:{did}")
    if d is not None:
        named_in(d, rec.number, t, rec.data, user)
        # people a field names that the step itself may change are checked as it leaves
        # them (engine/lifecycle.py)
        not_in_area(session, d, rec.number, t, rec.data, user, skip=t.edits)


def named_in(d: WorkflowDefinition, number: str, t: TransitionSpec, data: Mapping[str, Any],
             user: User) -> None:
    """``separation: not_named_in``: the people a user field (or a list's user sub-field)
    names may not do the step."""
    for ref in t.separation.not_named_in:
        name, _, sub = ref.partition(".")
        spec = d.fields[name]
        value = data.get(name)
        if sub:
            people = {str(row.get(sub)) for row in value or [] if isinstance(row, dict)
                      and row.get(sub)}
            what = f"{spec.label} ({next((f.label for f in spec.fields if f.name == sub), sub)})"
        else:
            people = set(users_in(spec, value))
            what = spec.label
        if user.username in people:
            raise SegregationOfDuties(
                f"{t.label}: you are named as {what} on {number}, so someone else must do "
                f"this step (separation of duties: not the {what.lower()}).",
                rule=f"not_named_in:{ref}")


def _area(value: Any) -> str:
    return " ".join(str(value or "").split()).casefold()


def not_in_area(session: Session, d: WorkflowDefinition, number: str, t: TransitionSpec,
                data: Mapping[str, Any], user: User, skip: tuple[str, ...] = ()) -> None:
    """``separation: not_in_area``: neither the actor nor a person the rule's user fields
    name (but those in ``skip``) belongs to the area (department) the rule's field holds."""
    rule = t.separation.not_in_area
    if rule is None or user.is_system:
        return
    area = _area(data.get(rule.field))
    if not area:
        return
    what = d.fields[rule.field].label
    shown = str(data.get(rule.field)).strip()
    if _area(user.department) == area:
        raise SegregationOfDuties(
            f"{t.label}: you belong to {shown}, the {what.lower()} of {number}, so you may not "
            f"do this step (separation of duties: no one audits or approves their own area).",
            rule=f"not_in_area:{rule.field}")
    for ref in rule.named_in:
        name, _, sub = ref.partition(".")
        if name in skip:
            continue
        spec = d.fields[name]
        value = data.get(name)
        people = ({str(row.get(sub)) for row in value or [] if isinstance(row, dict)
                   and row.get(sub)} if sub else set(users_in(spec, value)))
        for person in sorted(people):
            other = identity.find_user(session, person)
            if other is not None and _area(other.department) == area:
                raise SegregationOfDuties(
                    f"{t.label}: {other.full_name} ({other.username}), named as {spec.label} "
                    f"on {number}, belongs to {shown}, the {what.lower()}; name someone from "
                    "another area (separation of duties: no one audits or approves their own "
                    "area).", rule=f"not_in_area:{rule.field}")


def training_gate(ctx: Ctx, d: WorkflowDefinition, rec: Record, t: TransitionSpec,
                  user: User) -> None:
    """Part 11 §11.10(i): refuse, naming the document and version, when the actor has no
    current training (a completed record of a workflow declaring the ``training``
    capability) on a document the step or the state requires: on the version the step names,
    else on the controlled document's effective version, not expired by its retraining
    interval (a document no workflow controls: any completed training on it)."""
    required = t.training + d.states[rec.state].training
    if not required:
        return
    known = ctx.registry.newest(ctx.session).values()
    workflows = rules.training_workflows(known)
    documents = rules.document_workflows(known)
    missing = []
    for req in required:
        # a controlled document: training on the version in force counts, and only until
        # its retraining interval expires; a version the step names counts as named
        found = rules.check_training(ctx.session, workflows, documents, user.username,
                                     req.document, req.version, ctx.now)
        if found.current:
            continue
        label = f"{req.document} version {found.version}" if found.version else req.document
        eff = found.effective
        if eff is not None and eff.version == found.version:
            label += " (the effective version"
            if found.expired:
                label += (f"; the last training expired: retraining every "
                          f"{eff.retraining_days} days")
            label += ")"
        missing.append(label)
    if missing:
        raise TrainingRequired(user.username, missing)


def available(ctx: Ctx, d: WorkflowDefinition, rec: Record, user: User
              ) -> list[TransitionSpec]:
    """The steps from the record's state the engine would let the user take now (every rule
    of :func:`check_step`; input, guards and signatures are checked when firing)."""
    return [o.transition for o in options(ctx, d, rec, user) if o.offered]


def role_label(d: WorkflowDefinition, role: str) -> str:
    return {"initiator": "the record's initiator",
            "assignee": "the person the task is assigned to"}.get(role, d.roles.get(role, role))


def could_take_task(ctx: Ctx, d: WorkflowDefinition, rec: Record, task_role: str | None,
                    user: User) -> str | None:
    """Whether ``user`` could take over a task of ``rec``'s state (the delegate list, and
    the delegate command, ask this): None when they could, else why not. They must be active,
    hold the task's role (when it is a role's task), and at least one step from the state must
    be theirs once they hold it: one of its roles (the assignee pseudo-role counts: they
    would be the assignee), separation of duties, not signed it already, the training gate,
    and the step's guards about who acts (those naming ``actor``, e.g. "actor != trainee"),
    evaluated on the record as it is (guards on values the step itself enters are checked
    when it is taken)."""
    if not user.active or user.is_system:
        return f"{user.full_name} cannot take tasks (deactivated or a system account)."
    roles = ctx.roles(user)
    if task_role and task_role not in roles:
        return f"{user.full_name} does not hold the role {role_label(d, task_role)}."
    why = f"{user.full_name} may take none of the steps of this task."
    for t in d.transitions_from(rec.state):
        acting = roles & set(t.roles)
        if not acting and "assignee" in t.roles:
            acting = {"assignee"}
        if not acting and "initiator" in t.roles and user.id == rec.created_by_id:
            acting = {"initiator"}
        if not acting:
            continue
        try:
            separation(ctx.session, rec, t, user, d)
            already_signed(ctx.session, rec, t, user)
            training_gate(ctx, d, rec, t, user)
            about_actor = tuple(g for g in t.guards if _ACTOR.search(g.when))
            if about_actor:
                mine = inputs.names(ctx, d, rec, rec.data, user)
                nobody = {**mine, "actor": None}
                for g in about_actor:
                    # a guard that fails whoever acts fails on values the step itself
                    # enters (e.g. "every row not about you decided"): checked when taken
                    if _holds(g, mine) or not _holds(g, nobody):
                        continue
                    inputs.check_guards(t.label, (g,), mine)
        except WorkflowError as exc:
            why = f"{user.full_name}: {exc.message}"
            continue
        return None
    return why


_ACTOR = re.compile(r"\bactor\b")


def _holds(guard: Guard, values: Mapping[str, Any]) -> bool:
    try:
        return bool(expressions.evaluate(guard.when, values))
    except expressions.ExpressionError:
        return False
