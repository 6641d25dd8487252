"""Dry run of a definition draft: walk a throw-away record through it, then roll back
(issue 9; R-P11-10k-1). Nothing persists: not the version, the users, the record, its audit
events nor its notifications."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from workflow import clock, rules
from workflow.change_control import drafts
from workflow.db.models import Record, User
from workflow.engine.core import Engine
from workflow.errors import WorkflowError
from workflow.identity import enablement
from workflow.identity import users as identity
from workflow.registry import Registry
from workflow.signatures.mac import VouchedSignature, VouchingVerifier
from workflow.spec.lints import validate_text
from workflow.spec.model import FieldSpec, TrainingRequirement, WorkflowDefinition


@dataclass
class DryStep:
    n: int
    transition: str
    label: str
    actor_roles: tuple[str, ...]
    from_state: str
    to_state: str | None
    ok: bool
    message: str = ""
    signatures: int = 0
    created: tuple[str, ...] = ()
    tasks: tuple[str, ...] = ()


@dataclass
class DryRun:
    ok: bool
    steps: list[DryStep] = field(default_factory=list)
    final_state: str | None = None
    outcome: str | None = None
    message: str = ""


def dry_run_draft(engine: Engine, draft_id: int, actor: str,
                  path: Sequence[str] | None = None) -> DryRun:
    """Dry run of draft ``draft_id`` for ``actor``: only the draft editors (process owners)
    may, like editing (R-A11-10-1, R-SEC-31); anyone else gets
    :class:`~workflow.errors.NotAuthorized` and nothing runs."""
    with engine.reader() as s:
        drafts.require_editor(s, identity.get_user(s, actor))
        source = drafts.load_draft(s, draft_id).source
    return dry_run(engine, source, path=path)


def dry_run(engine: Engine, source: str, path: Sequence[str] | None = None,
            data: Mapping[str, Any] | None = None, max_steps: int = 40) -> DryRun:
    """Walk a throw-away record through ``source`` and roll everything back.

    The draft is published inside one outer transaction that is always rolled back; a
    private Engine on that connection starts a record and fires ``path`` (transition names)
    or, without one, the shortest way to a ``done`` final state. Each step is done by a
    fresh throw-away user holding the step's roles (so separation of duties is satisfied)
    and the training it requires, with sample values for the fields it requires (``data``
    overrides them); signature
    gates are signed by as many such users as the quorum needs. Nothing persists: not the
    version, the users, the record, its audit events nor its notifications."""
    data = dict(data or {})
    with engine.reader() as s:
        known = engine.registry.known(s)
    v = validate_text(source, known)
    if v.definition is None:
        return DryRun(False, message=f"The draft does not validate ({len(v.errors)} "
                      "problem(s)); fix them first.")
    d = v.definition
    result = DryRun(True)
    # every unit of the private engine is a SAVEPOINT in one outer transaction that the
    # sandbox always rolls back
    with engine.uow.sandbox() as sandbox:
        dry = Engine(sandbox, engine.signing_key, verifier=VouchingVerifier(),
                     registry=Registry(), system_name=engine.system_name,
                     actions=engine.actions, role_hooks=engine.role_hooks)
        counter = iter(range(1, 10_000))
        with dry.unit() as s:
            system = identity.system_user(s)
            dry.registry.publish(s, d, system, reason="dry run (rolled back)")

        def person(roles: Sequence[str], training: Sequence[TrainingRequirement] = ()) -> str:
            name = f"dryrun{next(counter)}"
            with dry.unit() as s:
                system = identity.system_user(s)
                u = identity.create_user(s, name, f"Dry run {name[6:]}", email="",
                                         actor=system, reason="dry run")
                for r in dict.fromkeys(r for r in roles if r not in ("initiator", "assignee")):
                    identity.grant_role(s, u, r, actor=system, reason="dry run")
                enablement.enable_for_system(s, u, reason="dry run (rolled back)")
                _trained(dry, s, u, training)
            return name

        initiator = person(d.start_roles)
        start_data = _sample(d, d.start_edits, d.start_requires, initiator, data)
        try:
            r = dry.start(d.key, initiator, start_data)
        except WorkflowError as exc:
            result.ok = False
            result.message = f"Starting a record failed: {exc}"
            return result
        number, state = r.number, r.state
        result.steps.append(DryStep(0, "(start)", "Create record", tuple(d.start_roles),
                                    "", state, True, f"{number} created",
                                    created=tuple(c for c in r.created if c != number),
                                    tasks=_owners(d, state)))
        plan = list(path) if path else None
        name: str | None
        n = 0
        while n < max_steps:
            if d.states[state].final:
                break
            if plan is not None:
                if not plan:
                    break
                name = plan.pop(0)
            else:
                name = _next_towards_done(d, state)
                if name is None:
                    result.ok = False
                    result.message = f"No transition leads from {state!r} to a done state."
                    break
            n += 1
            t = d.transitions.get(name)
            if t is None or state not in t.sources:
                result.ok = False
                result.steps.append(DryStep(n, name, t.label if t else name, (), state, None,
                                            False, f"{name!r} is not possible from {state!r}"))
                break
            roles = [x for x in t.roles if x not in ("initiator", "assignee")]
            sig_roles = list(t.signature.roles) if t.signature else []
            needed = t.signature.quorum if t.signature else 1
            values = _sample(d, t.edits, t.requires, initiator, data)
            step = DryStep(n, name, t.label, tuple(roles or t.roles), state, None, True)
            try:
                for k in range(needed):
                    gate = (*t.training, *d.states[state].training)
                    if not roles:  # initiator / assignee only
                        who = initiator
                        with dry.unit() as s:
                            _trained(dry, s, identity.get_user(s, who), gate)
                    elif t.signature and t.signature.one_per_role:
                        role = sig_roles[k % len(sig_roles)]
                        who = person([role] if role in roles else [roles[0], role], gate)
                    else:
                        who = person([*roles, *sig_roles], gate)
                    sig = VouchedSignature(who, method="dry-run") if t.signature else None
                    rr = dry.fire(number, name, who, values if k == 0 else {}, signature=sig,
                                  # a step with not_before is taken at once: early, so
                                  # with a reason where its definition allows that
                                  reason="dry run" if t.reason_required or t.not_before
                                  else None)
                    step.signatures += 1 if t.signature else 0
                    if rr.moved:
                        break
                state = rr.state
                step.to_state = state
                step.created = tuple(c for c in rr.created if c != number)
                step.tasks = _owners(d, state)
                step.message = f"{number} is now {d.states[state].label}"
            except WorkflowError as exc:
                step.ok = False
                step.message = str(exc)
                result.ok = False
                result.steps.append(step)
                break
            result.steps.append(step)
        result.final_state = state
        result.outcome = d.states[state].outcome
        if result.ok and not result.message:
            result.message = (f"The record reached {d.states[state].label}"
                              + (f" (outcome {result.outcome})." if result.outcome else "."))
        return result


def _trained(dry: Engine, s: Session, user: User,
             training: Sequence[TrainingRequirement]) -> None:
    """The throw-away user holds the training a step requires, as they hold its roles: a
    completed training record (on the version the gate asks for) written in the sandbox,
    rolled back with everything else."""
    if not training:
        return
    known = dry.registry.newest(s)
    workflows = rules.training_workflows(known.values())
    documents = rules.document_workflows(known.values())
    now = clock.now()
    for req in training:
        for key, cap in list(workflows.items())[:1]:
            found = rules.check_training(s, workflows, documents, user.username, req.document,
                                         req.version, now)
            if found.current:
                continue
            data = {cap.trainee: user.username, cap.document: req.document}
            if cap.version:
                data[cap.version] = found.version or "1"
            compiled = dry.registry.latest(s, key)
            s.execute(insert(Record).values(
                number=f"DRYRUN-{user.username}-{req.document}"[:40], workflow_key=key,
                definition_id=compiled.id, definition_hash=compiled.definition.content_hash,
                title="dry run training", state="dry_run", state_visit=1, data=data,
                version=1, created_by_id=user.id, created_at=now, updated_at=now,
                closed_at=now, outcome=rules.DONE, audit_seq=0, audit_head="", seal=""))


def _owners(d: WorkflowDefinition, state: str) -> tuple[str, ...]:
    s = d.states[state]
    out = [d.roles.get(o, o) for o in s.owners]
    if s.assignee_field:
        out.append(f"assignee ({s.assignee_field})")
    return tuple(out)


def _next_towards_done(d: WorkflowDefinition, state: str) -> str | None:
    """The first transition on a shortest path from ``state`` to a done final state."""
    first: dict[str, str | None] = {state: None}
    todo = deque([state])
    while todo:
        cur = todo.popleft()
        s = d.states[cur]
        if s.final and s.outcome == "done":
            return first[cur]
        for t in d.transitions_from(cur):
            if t.dest not in first:
                first[t.dest] = first[cur] or t.name
                todo.append(t.dest)
    ts = d.transitions_from(state)
    return ts[0].name if ts else None


def _sample(d: WorkflowDefinition, edits: Sequence[str], requires: Sequence[str], user: str,
            overrides: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in edits:
        if name in overrides:
            out[name] = overrides[name]
        elif name in requires:
            value = _sample_value(d.fields[name], user)
            if value is not None:
                out[name] = value
    return out


def _sample_value(spec: FieldSpec, user: str) -> Any:
    today = clock.now().date()
    t = spec.type
    if t == "string":
        return f"Dry run {spec.label}"[: spec.max_length or 200]
    if t == "text":
        return f"Dry run: {spec.label}"
    if t == "integer":
        return int(spec.min) if spec.min is not None else 1
    if t == "decimal":
        return str(spec.min) if spec.min is not None else "1"
    if t == "boolean":
        return True
    if t == "date":
        return today.isoformat()
    if t == "datetime":
        return clock.now().isoformat()
    if t == "choice":
        return spec.choices[0] if spec.choices else None
    if t == "user":
        return user
    if t == "list":
        if spec.item is not None:
            item = _sample_value(spec.item, user)
            return [item] if item is not None else []
        obj = {f.name: _sample_value(f, user) for f in spec.fields}
        return [{k: x for k, x in obj.items() if x is not None}]
    return None  # references need a real record: give them in ``data``
