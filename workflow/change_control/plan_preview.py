"""What a migration plan would do, and every reason it is refused (R-WF-10).

The rules are listed in :mod:`workflow.change_control.plans`; :func:`analyse` applies them to
the published versions and the running records as they are now, and changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from workflow import clock
from workflow.change_control.plan_file import MigrationPlan
from workflow.db.models import (
    OPEN_TASK,
    DefinitionVersion,
    Record,
    Task,
    Timer,
    TimerStatus,
    User,
)
from workflow.engine.core import Engine
from workflow.spec import expressions
from workflow.spec.checks import reachable
from workflow.spec.fields import FieldValueError, coerce, is_empty
from workflow.spec.machine import Compiled
from workflow.spec.model import TransitionSpec, WorkflowDefinition


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


def version_of(session: Session, engine: Engine, key: str, version: int) -> Compiled | None:
    """Version ``version`` of workflow ``key``, compiled (None: not published)."""
    h = session.execute(select(DefinitionVersion.content_hash).where(
        DefinitionVersion.key == key, DefinitionVersion.version == version)).scalar_one_or_none()
    return engine.registry.by_hash(session, h) if h else None


def _edges(d: WorkflowDefinition) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {s: set() for s in d.states}
    for t in d.transitions.values():
        for s in t.sources:
            edges[s].add(t.dest)
    return edges


def _blocked(t: TransitionSpec, data: Mapping[str, Any], names: Mapping[str, Any] | None) -> str | None:
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


def analyse(session: Session, engine: Engine, plan: MigrationPlan) -> Preview:
    """Every reason ``plan`` is refused against the records as they are now, and what it
    would do to each selected record (reads only)."""
    pv = Preview(plan)
    problems = pv.problems
    old = version_of(session, engine, plan.workflow, plan.from_version)
    new = version_of(session, engine, plan.workflow, plan.to_version)
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
    dest: str | None  # a mapping's target; below, a record's (None: unmapped)
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
                because = (f"{vn} has no state {src!r}, so nothing shows {dest!r} is not earlier"
                       if src not in nd.states else
                       f"{dest!r} is not reachable from {src!r} in {vn} (it is earlier)")
                problems.append(f"mapping: {src} -> {dest}: upstream move: {because}; set "
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
                                                OPEN_TASK)).scalars():
        who = usernames.get(t.assignee_id) if t.assignee_id else None
        m.tasks_closing.append(f"{t.state} for {t.role or 'initiator'}"
                               + (f" (assigned to {who})" if who else ""))
    for timer in session.execute(select(Timer).where(
            Timer.record_id == rec.id, Timer.status == TimerStatus.PENDING)).scalars():
        m.timers_cancelled.append(f"{timer.transition} at {timer.fire_at:%Y-%m-%d %H:%M}")
    state = nd.states[dest]
    for owner in state.owners or ((None,) if state.assignee_field else ()):
        who = rec.data.get(state.assignee_field) if state.assignee_field else None
        m.tasks_opening.append(f"{dest} for {owner or 'assignee'}"
                               + (f" (assigned to {who})" if who and owner != "initiator" else ""))
    m.timers_armed = [a.params["transition"] for a in state.on_enter if a.kind == "start_timer"]
    return m
