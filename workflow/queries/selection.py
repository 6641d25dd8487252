"""Records a schedule runs its job for (``for_each_record`` in the schedules file): the
records of a workflow, or of every workflow declaring a capability, in given states, for
which an optional expression over their fields holds. Read on a session passed in."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from workflow.db.models import Record
from workflow.errors import WorkflowError
from workflow.registry import Registry
from workflow.spec import expressions
from workflow.spec.model import Capabilities, WorkflowDefinition

#: the capabilities a selector may name (those the engine knows)
CAPABILITIES = tuple(f.name for f in dataclasses.fields(Capabilities))


@dataclass(frozen=True)
class RecordSelector:
    """Which records: ``workflow`` (a key) or ``capability`` (every workflow declaring it),
    in ``states`` (default: the capability's ``active_state`` when it has one), where
    ``when`` (an expression over the record's fields, ``today`` and ``now``) holds."""

    workflow: str | None = None
    capability: str | None = None
    states: tuple[str, ...] = ()
    when: str | None = None

    def describe(self) -> str:
        what = f"workflow {self.workflow}" if self.workflow else f"capability {self.capability}"
        states = f" in {', '.join(self.states)}" if self.states else ""
        cond = f" where {self.when}" if self.when else ""
        return f"each record of {what}{states}{cond}"


@dataclass(frozen=True)
class RecordItem:
    """One selected record, as a job sees it (a snapshot read before the job's unit)."""

    id: int
    number: str
    workflow: str
    state: str
    title: str
    data: Mapping[str, Any]
    definition: WorkflowDefinition


def definitions_for(registry: Registry, session: Session,
                    selector: RecordSelector) -> list[tuple[WorkflowDefinition, tuple[str, ...]]]:
    """The published definitions the selector names, each with the states selected."""
    known = registry.known(session)
    out = []
    for d in known.values():
        if selector.workflow is not None and d.key != selector.workflow:
            continue
        if selector.capability is not None:
            cap = getattr(d.capabilities, selector.capability, None)
            if cap is None:
                continue
            states = selector.states or ((cap.active_state,) if hasattr(cap, "active_state")
                                         else ())
        else:
            states = selector.states
        out.append((d, tuple(states)))
    return out


def select_records(session: Session, registry: Registry, selector: RecordSelector,
                   now: datetime) -> list[RecordItem]:
    """The open records the selector names, oldest first. A ``when`` that cannot be
    evaluated fails (closed): the schedule's run fails visibly instead of skipping records."""
    items: list[RecordItem] = []
    for d, states in definitions_for(registry, session, selector):
        q = select(Record).where(Record.workflow_key == d.key, Record.closed_at.is_(None))
        if states:
            q = q.where(Record.state.in_(states))
        for rec in session.execute(q.order_by(Record.id)).scalars():
            data = dict(rec.data or {})
            if selector.when and not _holds(selector.when, d, data, rec.number, now):
                continue
            items.append(RecordItem(rec.id, rec.number, d.key, rec.state, rec.title, data, d))
    return items


def _holds(text: str, d: WorkflowDefinition, data: Mapping[str, Any], number: str,
           now: datetime) -> bool:
    names: dict[str, Any] = {f: data.get(f) for f in d.fields}
    names.update(now=now.isoformat(), today=now.date().isoformat(), number=number)
    try:
        return bool(expressions.evaluate(text, names))
    except expressions.ExpressionError as exc:
        raise WorkflowError(f"for_each_record: {number}: {exc}") from None


def check_selector(raw: Any) -> tuple[RecordSelector | None, list[tuple[tuple, str]]]:
    """Parse ``for_each_record`` from the schedules file: the selector, or the problems."""
    problems: list[tuple[tuple, str]] = []
    if not isinstance(raw, dict):
        return None, [((), "for_each_record must be a mapping: {workflow: KEY} or "
                           "{capability: NAME}, optional states and when")]
    for k in sorted(set(raw) - {"workflow", "capability", "states", "when"}):
        problems.append(((k,), f"unknown key {k!r} (allowed: workflow, capability, states, "
                               "when)"))
    wf, cap = raw.get("workflow"), raw.get("capability")
    if (wf is None) == (cap is None):
        problems.append(((), "give exactly one of workflow: KEY and capability: NAME"))
    if cap is not None and cap not in CAPABILITIES:
        problems.append((("capability",), f"unknown capability {cap!r} (known: "
                                          f"{', '.join(CAPABILITIES)})"))
    if wf is not None and not isinstance(wf, str):
        problems.append((("workflow",), "workflow must be a workflow key"))
    states = raw.get("states", [])
    if not isinstance(states, list) or not all(isinstance(s, str) for s in states):
        problems.append((("states",), "states must be a list of state names"))
        states = []
    if wf is not None and not states:
        problems.append((("states",), "with workflow: name the states whose records the job "
                                      "runs for, e.g. states: [active]"))
    when = raw.get("when")
    if when is not None:
        try:
            expressions.names_in(str(when))
        except expressions.ExpressionError as exc:
            problems.append((("when",), f"when: {exc}"))
    if problems:
        return None, problems
    return RecordSelector(workflow=wf, capability=cap, states=tuple(states),
                          when=str(when) if when is not None else None), []


def numbers(items: Iterable[RecordItem]) -> list[str]:
    return [i.number for i in items]
