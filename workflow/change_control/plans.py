"""Migration plans: move running records from one published definition version to a later
one (issue 9 item 4, R-WF-10).

A plan is a small YAML file (format and rules in docs/definitions.md, "Migrating running
records")::

    id: MIG-CAPA-2026-01            # named in every migrated record's audit event
    workflow: capa
    from_version: 1
    to_version: 2
    mapping: {open: open, investigation: investigation, ...}   # old state -> new state
    filter: {states: [...], numbers: [...]}                     # optional
    drop_fields: [legacy_note]                                  # optional
    allow_upstream: false                                       # optional, needs a reason
    upstream_reason: ""

The rule the tool enforces: **a migration never puts a record where the new version's normal
execution could not have brought it.** :func:`validate` refuses a plan (every problem listed
at once) when

* a state that selected running records are in is left unmapped, or the mapping names a
  state the old version does not have, or a final one (closed records are never migrated);
* a target state does not exist in the new version, is final, or cannot be reached from the
  new version's initial state;
* a target is *upstream*: not the same-named state and not reachable in the new version from
  the new version's state of the source's name (a source state the new version no longer
  has counts as upstream, since nothing shows the target is not earlier). Upstream moves need
  ``allow_upstream: true`` with an ``upstream_reason``;
* per record: a forward move (source -> a later target) would skip a signed step, a step
  whose required fields the record lacks, or a step whose guard is false for the record's
  data (a migration never stands in for a signature or a check);
* per record: the new version could not have brought a record with this data to the target
  (its start-required fields, and a path from the initial state whose steps' required fields
  the record has);
* per record: the record holds data in a field the new version does not declare and the
  plan does not list it under ``drop_fields`` (dropped values are kept in the "migrated"
  audit event as old values), or a kept value is not valid for the new version's field;
  ``drop_fields`` may name only fields the new version does not declare.

:func:`dry_run` shows what would happen and changes nothing. :func:`execute` re-validates,
verifies the signer's credentials once (meaning "Migration approved"; roles qa or the
definition's process owner role) and migrates each record in its own transaction through
:meth:`workflow.engine.Engine.migrate_records` (a signature row per record, bound to that
record's content, and a "migrated" audit event with both definition hashes, the plan and the
reason). No Flask here: the CLI (and later the editor) call these functions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session

from workflow import canonical, clock
from workflow.audit import trail as audit
from workflow.db.models import DefinitionVersion, Record, Task, TaskStatus, Timer, TimerStatus, User
from workflow.engine.core import Engine
from workflow.errors import ReasonRequired, SignatureRequired, WorkflowError
from workflow.identity import users as identity
from workflow.spec import expressions
from workflow.spec.checks import reachable
from workflow.spec.fields import FieldValueError, coerce, is_empty
from workflow.spec.machine import Compiled
from workflow.spec.model import WorkflowDefinition

MEANING = "Migration approved"
_KEYS = {"id", "workflow", "from_version", "to_version", "mapping", "filter", "drop_fields",
         "allow_upstream", "upstream_reason", "description"}


class PlanInvalid(WorkflowError):
    """The plan file is malformed or the plan is refused; ``problems`` lists every reason."""

    code = "migration_refused"

    def __init__(self, problems: list[str], what: str = "the migration plan is refused"):
        self.problems = problems
        super().__init__(f"{what}:\n" + "\n".join(f"  - {p}" for p in problems))


@dataclass(frozen=True)
class MigrationPlan:
    id: str
    workflow: str
    from_version: int
    to_version: int
    mapping: Mapping[str, str]
    states: tuple[str, ...] = ()
    numbers: tuple[str, ...] = ()
    drop_fields: tuple[str, ...] = ()
    allow_upstream: bool = False
    upstream_reason: str = ""
    description: str = ""
    sha256: str = ""  # of the plan's canonical JSON form, named in the audit events

    def ref(self) -> dict[str, Any]:
        """How audit events name the plan."""
        return {"id": self.id, "sha256": self.sha256}


def load_plan(path: str | Path) -> MigrationPlan:
    return parse_plan(Path(path).read_text(encoding="utf-8"), origin=str(path))


def parse_plan(text: str | Mapping[str, Any], origin: str = "<plan>") -> MigrationPlan:
    """Read a plan from YAML text (or an already parsed mapping); raises PlanInvalid."""
    try:
        doc = yaml.safe_load(text) if isinstance(text, str) else dict(text)
    except yaml.YAMLError as exc:
        raise PlanInvalid([f"{origin}: not YAML: {exc}"], "the plan cannot be read") from None
    if not isinstance(doc, dict):
        raise PlanInvalid([f"{origin}: the plan must be a mapping"], "the plan cannot be read")
    p: list[str] = []
    for k in sorted(set(doc) - _KEYS):
        p.append(f"unknown key {k!r} (allowed: {', '.join(sorted(_KEYS))})")
    for k in ("id", "workflow", "from_version", "to_version", "mapping"):
        if k not in doc:
            p.append(f"{k!r} is required")
    for k in ("id", "workflow"):
        if k in doc and (not isinstance(doc[k], str) or not doc[k].strip()):
            p.append(f"{k!r} must be a non-empty text")
    for k in ("from_version", "to_version"):
        if k in doc and (not isinstance(doc[k], int) or isinstance(doc[k], bool) or doc[k] < 1):
            p.append(f"{k!r} must be a version number (1, 2, ...)")
    mapping = doc.get("mapping")
    if "mapping" in doc and (not isinstance(mapping, dict) or not mapping or not all(
            isinstance(a, str) and isinstance(b, str) for a, b in mapping.items())):
        p.append("'mapping' must map old state names to new state names")
    flt = doc.get("filter") or {}
    if not isinstance(flt, dict) or set(flt) - {"states", "numbers"}:
        p.append("'filter' may only have 'states' and 'numbers' (lists)")
        flt = {}
    lists = {"drop_fields": doc.get("drop_fields") or [], **{k: flt.get(k) or [] for k in
                                                             ("states", "numbers")}}
    for k, v in lists.items():
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            p.append(f"{k!r} must be a list of names")
    if not isinstance(doc.get("allow_upstream", False), bool):
        p.append("'allow_upstream' must be true or false")
    if p:
        raise PlanInvalid(p, f"{origin}: the plan cannot be read")
    return MigrationPlan(
        id=doc["id"].strip(), workflow=doc["workflow"].strip(),
        from_version=doc["from_version"], to_version=doc["to_version"],
        mapping=dict(mapping), states=tuple(lists["states"]),
        numbers=tuple(n.strip().upper() for n in lists["numbers"]),
        drop_fields=tuple(lists["drop_fields"]),
        allow_upstream=doc.get("allow_upstream", False),
        upstream_reason=str(doc.get("upstream_reason") or "").strip(),
        description=str(doc.get("description") or ""),
        sha256=canonical.sha256(doc))


# --------------------------------------------------------------------------- analysis


@dataclass
class RecordMove:
    """One record in a dry run: where it is, where it goes, what changes."""

    record_id: int
    number: str
    title: str
    version: int
    from_state: str
    to_state: str
    tasks_closing: list[str] = field(default_factory=list)
    tasks_opening: list[str] = field(default_factory=list)
    timers_cancelled: list[str] = field(default_factory=list)
    timers_armed: list[str] = field(default_factory=list)
    drop_fields: list[str] = field(default_factory=list)


@dataclass
class Preview:
    plan: MigrationPlan
    from_hash: str = ""
    to_hash: str = ""
    moves: list[RecordMove] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def lines(self) -> list[str]:
        p = self.plan
        out = [f"plan {p.id} (sha256 {p.sha256[:12]}): {p.workflow} v{p.from_version} "
               f"({self.from_hash[:12]}) -> v{p.to_version} ({self.to_hash[:12]}): "
               f"{len(self.moves)} running record(s)"]
        for m in self.moves:
            out.append(f"  {m.number}  {m.from_state} -> {m.to_state}")
            for label, items in (("tasks closing", m.tasks_closing),
                                 ("tasks opening", m.tasks_opening),
                                 ("timers cancelled", m.timers_cancelled),
                                 ("timers armed", m.timers_armed),
                                 ("fields dropped", m.drop_fields)):
                if items:
                    out.append(f"      {label}: {'; '.join(items)}")
        for problem in self.problems:
            out.append(f"refused: {problem}")
        return out


def _version(session: Session, engine: Engine, key: str, version: int) -> Compiled | None:
    h = session.execute(select(DefinitionVersion.content_hash).where(
        DefinitionVersion.key == key, DefinitionVersion.version == version)).scalar_one_or_none()
    return engine.registry.by_hash(session, h) if h else None


def _edges(d: WorkflowDefinition) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {s: set() for s in d.states}
    for t in d.transitions.values():
        for s in t.sources:
            edges[s].add(t.dest)
    return edges


def _blocked(t: Any, data: Mapping[str, Any], names: Mapping[str, Any] | None) -> str | None:
    """Why the step ``t`` could not have been taken with ``data`` (None: it could). With
    ``names`` (a forward move) its signature gate and guards count too."""
    if names is not None and t.signature is not None:
        return f"{t.name!r} needs a signature ({t.signature.meaning!r})"
    missing = [f for f in t.requires if is_empty(data.get(f))]
    if missing:
        return f"{t.name!r} requires {', '.join(missing)}"
    if names is not None:
        for g in t.guards:
            try:
                ok = expressions.evaluate(g.when, names)
            except expressions.ExpressionError:
                ok = False  # fail closed, like the engine
            if not ok:
                return f"{t.name!r} has a guard that fails ({g.message})"
    return None


def _path(d: WorkflowDefinition, start: str, target: str, data: Mapping[str, Any],
          names: Mapping[str, Any] | None) -> tuple[bool, list[str]]:
    """Can normal execution take a record with ``data`` from ``start`` to ``target``?
    Returns (yes, the reasons of the blocked steps on the way when not)."""
    seen, todo, why = {start}, [start], []
    while todo:
        s = todo.pop()
        for t in d.transitions_from(s):
            reason = _blocked(t, data, names)
            if reason:
                why.append(reason)
            elif t.dest not in seen:
                seen.add(t.dest)
                todo.append(t.dest)
    return target in seen, sorted(set(why))


def _analyse(session: Session, engine: Engine, plan: MigrationPlan) -> Preview:
    pv = Preview(plan)
    problems = pv.problems
    old = _version(session, engine, plan.workflow, plan.from_version)
    new = _version(session, engine, plan.workflow, plan.to_version)
    for v, c in ((plan.from_version, old), (plan.to_version, new)):
        if c is None:
            problems.append(f"{plan.workflow} has no published version {v}")
    if old is None or new is None:
        return pv
    if plan.to_version <= plan.from_version:
        problems.append(f"to_version ({plan.to_version}) must be later than from_version "
                        f"({plan.from_version})")
    od, nd = old.definition, new.definition
    pv.from_hash, pv.to_hash = od.content_hash, nd.content_hash
    edges = _edges(nd)
    from_start = reachable(nd.initial_state, edges)
    vn = f"version {plan.to_version}"
    upstream: list[str] = []
    for src, dest in plan.mapping.items():
        if src not in od.states:
            problems.append(f"mapping: {src!r} is not a state of version {plan.from_version}")
            continue
        if od.states[src].final:
            problems.append(f"mapping: {src!r} is a final state; closed records are never "
                            "migrated")
            continue
        if dest not in nd.states:
            problems.append(f"mapping: {src} -> {dest}: {vn} has no state {dest!r} "
                            f"(its states: {', '.join(nd.states)})")
            continue
        if nd.states[dest].final:
            problems.append(f"mapping: {src} -> {dest}: {dest!r} is a final state of {vn}; a "
                            "running record reaches it only by a step")
            continue
        if dest not in from_start:
            problems.append(f"mapping: {src} -> {dest}: {dest!r} cannot be reached from "
                            f"{vn}'s initial state")
            continue
        if dest != src and (src not in nd.states or dest not in reachable(src, edges)):
            upstream.append(src)
            if not plan.allow_upstream:
                why = (f"{vn} has no state {src!r}, so nothing shows {dest!r} is not earlier"
                       if src not in nd.states else
                       f"{dest!r} is not reachable from {src!r} in {vn} (it is earlier)")
                problems.append(f"mapping: {src} -> {dest}: upstream move: {why}; set "
                                "allow_upstream: true with an upstream_reason to allow it")
    if plan.allow_upstream and not plan.upstream_reason:
        problems.append("allow_upstream: true needs an upstream_reason")
    for f in plan.drop_fields:
        if f in nd.fields:
            problems.append(f"drop_fields: {f!r} is a field of {vn}; only data the new version "
                            "does not declare may be dropped")
    for s in plan.states:
        if s not in od.states:
            problems.append(f"filter: {s!r} is not a state of version {plan.from_version}")

    q = select(Record).where(Record.workflow_key == plan.workflow,
                             Record.definition_hash == od.content_hash,
                             Record.closed_at.is_(None)).order_by(Record.id)
    if plan.states:
        q = q.where(Record.state.in_(plan.states))
    if plan.numbers:
        q = q.where(Record.number.in_(plan.numbers))
    records = session.execute(q).scalars().all()
    missing = sorted(set(plan.numbers) - {r.number for r in records})
    if missing:
        problems.append(f"filter: not running {plan.workflow} records on version "
                        f"{plan.from_version}: {', '.join(missing)}")
    unmapped: dict[str, list[str]] = {}
    undeclared: dict[str, list[str]] = {}
    usernames = dict(session.execute(select(User.id, User.username)).all())
    for rec in records:
        dest = plan.mapping.get(rec.state)
        if dest is None:
            unmapped.setdefault(rec.state, []).append(rec.number)
            continue
        if dest not in nd.states:
            continue  # reported for the mapping
        data = {k: v for k, v in rec.data.items() if k not in plan.drop_fields}
        for f in sorted(data):
            if f not in nd.fields:
                undeclared.setdefault(f, []).append(rec.number)
                continue
            try:
                ok = coerce(nd.fields[f], data[f]) == data[f]
                detail = "it would change when stored"
            except FieldValueError as exc:
                ok, detail = False, str(exc)
            if not ok:
                problems.append(f"{rec.number}: field {f!r} holds {data[f]!r}, not valid in "
                                f"{vn} ({detail})")
        lacking = [f for f in nd.start_requires if is_empty(data.get(f))]
        if lacking:
            problems.append(f"{rec.number}: {vn} could not have started it: it lacks "
                            f"{', '.join(lacking)}")
        ok, why = _path(nd, nd.initial_state, dest, data, None)
        if not ok:
            problems.append(f"{rec.number}: {vn} could not have brought it to {dest!r} with "
                            f"its data: {'; '.join(why)}")
        if dest != rec.state and rec.state in nd.states and rec.state not in upstream:
            names = {f: data.get(f) for f in nd.fields}
            names.update(now=clock.now().isoformat(), today=clock.now().date().isoformat(),
                         number=rec.number, actor=None, item=None, user=None,
                         initiator=usernames.get(rec.created_by_id))
            ok, why = _path(nd, rec.state, dest, data, names)
            if not ok:
                problems.append(f"{rec.number}: moving it from {rec.state!r} to {dest!r} would "
                                f"skip a step it has not done: {'; '.join(why)}")
        pv.moves.append(_describe(session, nd, rec, dest, usernames))
    for s, numbers in sorted(unmapped.items()):
        problems.append(f"{len(numbers)} running record(s) are in {s!r}, which the mapping "
                        f"leaves unmapped ({', '.join(numbers[:5])}"
                        f"{', ...' if len(numbers) > 5 else ''})")
    for f, numbers in sorted(undeclared.items()):
        problems.append(f"field {f!r} holds data in {', '.join(numbers[:5])}"
                        f"{', ...' if len(numbers) > 5 else ''} but {vn} does not declare it: "
                        "list it under drop_fields (the values are kept in the audit event) "
                        "or declare it in the new version")
    return pv


def _describe(session: Session, nd: WorkflowDefinition, rec: Record, dest: str,
              usernames: Mapping[int, str]) -> RecordMove:
    m = RecordMove(rec.id, rec.number, rec.title, rec.version, rec.state, dest,
                   drop_fields=[f for f in rec.data if f not in nd.fields])
    for t in session.execute(select(Task).where(Task.record_id == rec.id,
                                                Task.status == TaskStatus.OPEN)).scalars():
        who = usernames.get(t.assignee_id) if t.assignee_id else None
        m.tasks_closing.append(f"{t.state} for {t.role or 'initiator'}"
                               + (f" (assigned to {who})" if who else ""))
    for t in session.execute(select(Timer).where(Timer.record_id == rec.id,
                                                 Timer.status == TimerStatus.PENDING)).scalars():
        m.timers_cancelled.append(f"{t.transition} at {t.fire_at:%Y-%m-%d %H:%M}")
    state = nd.states[dest]
    for owner in state.owners or ((None,) if state.assignee_field else ()):
        who = rec.data.get(state.assignee_field) if state.assignee_field else None
        m.tasks_opening.append(f"{dest} for {owner or 'assignee'}"
                               + (f" (assigned to {who})" if who and owner != "initiator" else ""))
    m.timers_armed = [a.params["transition"] for a in state.on_enter if a.kind == "start_timer"]
    return m


# --------------------------------------------------------------------------- public API


def validate(engine: Engine, plan: MigrationPlan) -> list[str]:
    """Every reason the plan is refused against the records as they are now ([] = valid)."""
    return dry_run(engine, plan).problems


def dry_run(engine: Engine, plan: MigrationPlan) -> Preview:
    """What the plan would do (records, state moves, tasks and timers), and its problems.
    Reads only: nothing changes."""
    with engine.reader() as session:
        return _analyse(session, engine, plan)


def signer_roles(d: WorkflowDefinition) -> tuple[str, ...]:
    """Who may sign a migration: QA, or the definition's process owner role."""
    return tuple(dict.fromkeys(r for r in ("qa", d.process_owner) if r))


@dataclass
class Outcome:
    plan: MigrationPlan
    migrated: list[str]
    skipped: list[tuple[str, str]]


def execute(engine: Engine, plan: MigrationPlan, actor: str | User, signature: Any,
            reason: str) -> Outcome:
    """Validate, then migrate every selected record (one transaction each), signed once
    with meaning "Migration approved" by QA or the process owner role.

    Raises PlanInvalid (nothing migrated), ReasonRequired, SignatureRequired, and the
    signature errors of the engine's verifier (CredentialsRejected, NotAuthorized...).
    A record that changed after validation is skipped and listed in ``Outcome.skipped``;
    running the plan again picks it up (records already migrated are no longer on the old
    version, so a plan is safe to re-run).
    """
    if not (reason or "").strip():
        raise ReasonRequired(f"migrate records with plan {plan.id}")
    pv = dry_run(engine, plan)
    if pv.problems:
        raise PlanInvalid(pv.problems)
    if not pv.moves:
        raise PlanInvalid([f"no running {plan.workflow} record on version {plan.from_version} "
                           "matches the plan"])
    if signature is None:
        raise SignatureRequired("migrate", MEANING)
    with engine.reader() as session:
        new = _version(session, engine, plan.workflow, plan.to_version)
    assert new is not None  # checked by the dry run
    moves = [{"record": m.record_id, "version": m.version, "state": m.to_state,
              "drop_fields": list(plan.drop_fields)} for m in pv.moves]
    results = engine.migrate_records(moves, to=new, actor=actor, signature=signature,
                                     meaning=MEANING, roles=signer_roles(new.definition),
                                     plan=plan.ref(), reason=reason)
    out = Outcome(plan, [n for n, e in results if e is None],
                  [(n, e) for n, e in results if e is not None])
    with engine.unit() as session:
        user = identity.get_user(session, actor.username if isinstance(actor, User) else actor)
        audit.system_event(session, at=clock.now(), actor=user, action="records_migrated",
                           changes={"plan": plan.ref(), "workflow": plan.workflow,
                                    "definition_hash": [pv.from_hash, pv.to_hash],
                                    "definition_version": [plan.from_version, plan.to_version],
                                    "migrated": out.migrated,
                                    "skipped": [n for n, _ in out.skipped]},
                           reason=reason)
    return out
