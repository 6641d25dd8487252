"""The gates a step declares about time and linked records, not about the person:

- ``not_before`` (R-WF-14): the earliest time a step may be taken, the start of the day a
  date field holds (UTC) or a duration after the record entered the step's state. Before
  then it is refused (``early: refuse``, NotYetOpen) or taken only with a reason and flagged
  ``taken_early`` on the record (``early: reason``).
- ``waits_for`` (R-WF-15): linked records (all, of a workflow, by a link kind) must be
  closed, with a given outcome when named, before the step; LinkedRecordsOpen lists the
  ones still open. The record that spawned this one is never waited for.

``access.check_step`` calls these for every step, so the record page offers what the engine
accepts; ``waiting`` is what the record page and the signing dialog show.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any

from sqlalchemy import and_, or_, select

from workflow.db.models import AuditEvent, Record, RecordLink
from workflow.engine.context import Ctx
from workflow.errors import LinkedRecordsOpen, NotYetOpen
from workflow.spec.model import TransitionSpec, WaitsFor, WorkflowDefinition

#: the link kind a spawned record points at its parent with (``create_record``'s default)
PARENT_LINK = "spawned_by"


def when(moment: datetime) -> str:
    """How an opening time is written in messages: ``2026-05-31 00:00 UTC``."""
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def entered_at(ctx: Ctx, rec: Record) -> datetime:
    """When the record entered its current state (its latest move into it)."""
    at = ctx.session.execute(
        select(AuditEvent.at).where(AuditEvent.record_id == rec.id,
                                    AuditEvent.to_state == rec.state)
        .order_by(AuditEvent.seq.desc()).limit(1)).scalar_one_or_none()
    return at if at is not None else rec.created_at


def opens_at(ctx: Ctx, d: WorkflowDefinition, rec: Record, t: TransitionSpec
             ) -> datetime | None:
    """When step ``t`` opens, if that is still ahead of the unit's time; else None. A
    ``field`` that is empty does not hold the step back (the field's own ``requires``
    does)."""
    nb = t.not_before
    if nb is None:
        return None
    if nb.field is not None:
        value = rec.data.get(nb.field)
        if not value:
            return None
        opens = _moment(str(value))
    else:
        assert nb.after is not None  # the checks require field or after
        opens = entered_at(ctx, rec) + nb.after
    return opens if ctx.now < opens else None


def _moment(value: str) -> datetime:
    if "T" in value:
        moment = datetime.fromisoformat(value)
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return datetime.combine(date.fromisoformat(value), time(0), tzinfo=UTC)


def check_open(ctx: Ctx, d: WorkflowDefinition, rec: Record, t: TransitionSpec) -> None:
    """``early: refuse``: refuse the step before it opens, saying when it opens."""
    opens = opens_at(ctx, d, rec, t)
    if opens is None or t.not_before is None or t.not_before.early != "refuse":
        return
    since = (f"{d.fields[t.not_before.field].label} is {rec.data.get(t.not_before.field)}"
             if t.not_before.field else "a set time after entering "
             f"{d.states[rec.state].label!r}")
    raise NotYetOpen(
        f"{t.label} on {rec.number} is not open yet: it opens on {when(opens)} ({since}; "
        "rule: not before it is due).", transition=t.name, opens_at=opens.isoformat())


@dataclass(frozen=True)
class Waiting:
    """A linked record a step waits for, as the record page and signing dialog show it."""

    number: str
    title: str
    workflow: str
    state: str
    closed: bool
    outcome: str | None
    kind: str

    @property
    def ready(self) -> bool:
        return self.closed


def waiting(ctx: Ctx, rec: Record, t: TransitionSpec) -> list[tuple[WaitsFor, Waiting, bool]]:
    """Every linked record each ``waits_for`` of ``t`` covers, with whether it satisfies it
    (closed, with the outcome named)."""
    if not t.waits_for:
        return []
    rows = _linked(ctx, rec.id)
    out = []
    for w in t.waits_for:
        seen: set[int] = set()
        pool = rows
        if w.via:  # two hops: the records linked to this one's linked records of w.via
            pool = [(kind, other) for mid_kind, mid in rows
                    if mid.workflow_key == w.via and (not w.link or mid_kind == w.link)
                    for kind, other in _linked(ctx, mid.id) if other.id != rec.id]
        for kind, other in pool:
            if (w.workflow and other.workflow_key != w.workflow) or (w.link and kind != w.link):
                continue
            if other.id in seen:
                continue  # linked twice (spawned by this record and referring to it): once
            seen.add(other.id)
            if w.states:  # in one of the states named (e.g. effective), closed or not
                ok = other.state in w.states
            else:
                ok = other.closed_at is not None and \
                    (w.outcome is None or other.outcome == w.outcome)
            out.append((w, Waiting(other.number, other.title, other.workflow_key, other.state,
                                   other.closed_at is not None, other.outcome, kind), ok))
    return out


def _linked(ctx: Ctx, record_id: int) -> list[Any]:
    """(link kind, record) of the records linked to ``record_id`` either way, except the
    record that spawned it (its parent is not waited for)."""
    return list(ctx.session.execute(
        select(RecordLink.kind, Record).join(
            Record, or_(and_(RecordLink.source_id == record_id,
                             Record.id == RecordLink.target_id),
                        and_(RecordLink.target_id == record_id,
                             Record.id == RecordLink.source_id)))
        .where(or_(RecordLink.source_id == record_id, RecordLink.target_id == record_id),
               ~and_(RecordLink.source_id == record_id, RecordLink.kind == PARENT_LINK))
        .order_by(RecordLink.id)).all())


def check_waits(ctx: Ctx, d: WorkflowDefinition, rec: Record, t: TransitionSpec) -> None:
    """Refuse the step while a linked record it waits for is open (or closed with another
    outcome), listing them."""
    pending = [x for _, x, ok in waiting(ctx, rec, t) if not ok]
    if not pending:
        return
    need = "; ".join(str(w) for w in t.waits_for)
    listed = ", ".join(f"{x.number} ({'closed: ' + str(x.outcome) if x.closed else x.state})"
                       for x in dict((x.number, x) for x in pending).values())
    raise LinkedRecordsOpen(
        f"{t.label} on {rec.number} waits for {need}; still open: {listed} (rule: parents wait "
        "for their children).", transition=t.name,
        open_records=list(dict.fromkeys(x.number for x in pending)))
