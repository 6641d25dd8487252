"""Reconciliation of the training matrix (session functions, inside the caller's unit of
work): the (person, document number) pairs the active curricula and the people's role
grants require, against the training records there are.

- a document version becomes approved (the ``assign_training`` action on entering the state
  that declares it): everyone who needs the document gets an assignment on THAT version, due
  before its effective date (or within the curriculum's days, if sooner);
- a curriculum becomes active (the same action on the curriculum): every holder of its role
  gets an assignment on the effective version of each document they lack;
- a person gains a role (the role hook, in the unit that writes the grant): the role's
  curricula, likewise;
- a person loses a role: their open assignments the matrix made for documents no other role
  of theirs requires are cancelled - through the workflow's own cancelling step, as the system
  user, with a reason naming the revocation (audited like any step).

Assignments are records of the workflow declaring the ``training`` capability, created as the
system user, linked to the document version record (``spawned_by``, via the training
workflow's reference field to it) and naming the curriculum that required them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from workflow import rules
from workflow.db import records
from workflow.db.models import Record, RoleGrant, User
from workflow.engine import lifecycle
from workflow.engine.context import Ctx
from workflow.identity import users as identity
from workflow.queries import documents
from workflow.spec.model import TrainingCapability
from workflow.training import curricula as cur

#: the training workflow's field naming the document version record (a reference) and the
#: one naming what required the training; the shipped training_assignment declares both
DOCUMENT_RECORD = "document_record"
REQUIRED_BY = "required_by"


@dataclass(frozen=True)
class Target:
    """A document version to be trained on."""

    record_id: int
    record_number: str
    number: str
    version: str
    effective_date: date | None
    workflow: str = ""


def training_workflow(ctx: Ctx) -> tuple[str, TrainingCapability] | None:
    """The workflow assignments are created in: the one declaring the ``training``
    capability that has a reference field to document versions (the first, by key)."""
    known = ctx.registry.newest(ctx.session)
    for key, cap in sorted(rules.training_workflows(known.values()).items()):
        if DOCUMENT_RECORD in known[key].fields:
            return key, cap
    return None


def holders(session: Session, role: str, at: Any) -> list[str]:
    """Usernames of the active people holding ``role`` now (the active-grant rule)."""
    q = (select(User.username).join(RoleGrant, RoleGrant.user_id == User.id)
         .where(RoleGrant.role == role, rules.active_grant_clause(at), User.active.is_(True),
                User.is_system.is_(False)).distinct())
    return sorted(session.execute(q).scalars())


def targets_of(ctx: Ctx, number: str) -> list[Target]:
    """The versions of document ``number`` to train a newcomer on: the effective one, and
    one approved but not yet effective (open, with an effective date set, newer)."""
    versions = documents.document_versions(ctx.session, number, registry=ctx.registry)
    eff = [v for v in versions if v.in_force]
    floor = max((v.version for v in eff), default=0)
    d = ctx.registry.newest(ctx.session)
    coming = [v for v in versions if not v.in_force and v.effective_date is not None
              and v.version > floor and v.workflow in d
              and not d[v.workflow].states[v.state].final]
    return [Target(v.record_id, v.record_number, v.number, str(v.version), v.effective_date,
                   v.workflow) for v in (eff[-1:] + coming[-1:])]


def _existing(session: Session, workflow: str, cap: TrainingCapability, number: str,
              version: str) -> dict[str, bool]:
    """Trainees with an open or completed training on the version: trainee -> open."""
    q = select(Record.data, Record.closed_at, Record.outcome).where(
        Record.workflow_key == workflow, rules.document_of(cap) == number)
    if cap.version:
        q = q.where(Record.data[cap.version].as_string() == version)
    out: dict[str, bool] = {}
    for data, closed_at, outcome in session.execute(q):
        trainee = str(data.get(cap.trainee) or "")
        if closed_at is None:
            out[trainee] = True
        elif outcome == rules.DONE:
            out.setdefault(trainee, False)
    return out


def due_date(today: date, req: cur.Required, effective: date | None) -> date:
    """Within the curriculum's days; before the effective date when that comes first (never
    before today)."""
    due = today + timedelta(days=req.due_days)
    if effective is not None and effective > today:
        due = min(due, effective - timedelta(days=1))
    return max(due, today)


def _create(ctx: Ctx, workflow: str, cap: TrainingCapability, target: Target,
            trainee: str, req: cur.Required, why: str) -> str:
    compiled = ctx.registry.latest(ctx.session, workflow)
    kind = req.kind
    data: dict[str, Any] = {
        "title": f"Training: {target.number} version {target.version}",
        cap.document: target.number, cap.trainee: trainee,
        REQUIRED_BY: f"{req.curriculum} (role {req.role})",
    }
    fields = compiled.definition.fields
    ref = fields.get(DOCUMENT_RECORD)
    if ref is not None and ref.workflow == target.workflow:
        data[DOCUMENT_RECORD] = target.record_number
    if cap.version:
        data[cap.version] = target.version
    if cap.due:
        data[cap.due] = due_date(ctx.now.date(), req, target.effective_date).isoformat()
    if "method" in fields:
        data["method"] = "read_and_understood" if kind == "assessment" else kind
    if "assessment_required" in fields:
        data["assessment_required"] = kind == "assessment"
    parent = records.get(ctx.session, target.record_id)
    rec = ctx.spawn(ctx, compiled, identity.system_user(ctx.session), data, parent=parent,
                    link="spawned_by", reason=why)
    return rec.number


def assign(ctx: Ctx, target: Target, needs: dict[str, cur.Required], why: str) -> list[str]:
    """Create assignments on ``target`` for the people in ``needs`` (username -> the
    requirement) who have neither an open nor a completed training on that version."""
    found = training_workflow(ctx)
    if found is None or not needs:
        return []
    workflow, cap = found
    have = _existing(ctx.session, workflow, cap, target.number, target.version)
    created = []
    for trainee in sorted(needs):
        if trainee in have:
            continue
        created.append(_create(ctx, workflow, cap, target, trainee, needs[trainee], why))
    return created


def needing(session: Session, curricula: list[cur.Curriculum], number: str, at: Any
            ) -> dict[str, cur.Required]:
    """Who needs document ``number`` now (holders of a role whose active curriculum lists
    it), with the requirement that applies to them."""
    out: dict[str, list[cur.Required]] = {}
    for c in curricula:
        for it in c.items:
            if it.document == number:
                for u in holders(session, c.role, at):
                    out.setdefault(u, []).append(it)
    return {u: cur.merge(items)[number] for u, items in out.items()}


def for_version(ctx: Ctx, target: Target, why: str, *, due_days: int | None = None
                ) -> list[str]:
    """A version became approved (or effective): assign it to everyone who needs it
    (``due_days``: instead of the curricula's days)."""
    curricula = cur.active(ctx.session, ctx.registry)
    needs = needing(ctx.session, curricula, target.number, ctx.now)
    if due_days:
        needs = {u: cur.Required(r.document, r.kind, due_days, r.curriculum, r.role)
                 for u, r in needs.items()}
    return assign(ctx, target, needs, why)


def for_curriculum(ctx: Ctx, curriculum: cur.Curriculum, why: str) -> list[str]:
    """A curriculum became active: its role's holders get what they lack."""
    people = holders(ctx.session, curriculum.role, ctx.now)
    created = []
    for number, req in cur.merge(curriculum.items).items():
        for target in targets_of(ctx, number):
            created += assign(ctx, target, {u: req for u in people}, why)
    return created


def for_person(ctx: Ctx, username: str, role: str, why: str) -> list[str]:
    """``username`` gained ``role``: the role's curricula, on the effective versions."""
    created = []
    reqs = cur.required_for(cur.active(ctx.session, ctx.registry, role), [role])
    for number, req in reqs.items():
        for target in targets_of(ctx, number):
            created += assign(ctx, target, {username: req}, why)
    return created


def cancel_unrequired(ctx: Ctx, username: str, why: str) -> list[str]:
    """Cancel ``username``'s open assignments made by the matrix (they name what required
    them) for documents none of their roles requires any longer."""
    found = training_workflow(ctx)
    if found is None:
        return []
    workflow, cap = found
    user = identity.find_user(ctx.session, username)
    roles = identity.roles_of(ctx.session, user, ctx.now) if user is not None else set()
    still = cur.required_for(cur.active(ctx.session, ctx.registry), roles)
    q = select(Record.id).where(
        Record.workflow_key == workflow, Record.closed_at.is_(None),
        rules.trainee_of(cap) == username,
        Record.data[REQUIRED_BY].as_string() != "").order_by(Record.id)
    system = identity.system_user(ctx.session)
    cancelled = []
    for rid in ctx.session.execute(q).scalars():
        rec = records.lock(ctx.session, rid)
        number = str(rec.data.get(cap.document) or "")
        if number in still or not rec.data.get(REQUIRED_BY):
            continue
        step = _cancelling_step(ctx, rec)
        if step is None:
            continue
        lifecycle.fire(ctx, rec, step, system, {}, None,
                       f"{why}; {number} is no longer required of {username}",
                       system_actor=True)
        cancelled.append(rec.number)
    return cancelled


def _cancelling_step(ctx: Ctx, rec: Record) -> str | None:
    """The step from the record's state into a final state that voids it (outcome other
    than done), preferring one called ``cancel``."""
    d = ctx.registry.by_hash(ctx.session, rec.definition_hash).definition
    steps = []
    for t in d.transitions_from(rec.state):
        dest = d.states.get(t.dest)
        if dest is not None and dest.final and dest.outcome != rules.DONE:
            steps.append(t.name)
    return "cancel" if "cancel" in steps else (steps[0] if steps else None)
