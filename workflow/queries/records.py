"""The record page as a read model: what a person may see of one record, read in the
caller's session (one read transaction per web request, issue #12).

The web record page, the API's record endpoints and the true copy (workflow/queries/copies.py)
all read a record's audit events, signatures and links through these functions, so what
they show cannot diverge.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import bindparam, func, or_, select
from sqlalchemy.orm import Session, aliased

from workflow import blobs, rules
from workflow.db.models import (
    OPEN_TASK,
    AuditEvent,
    DefinitionVersion,
    DueDateExtension,
    Record,
    RecordLink,
    Signature,
    Task,
    User,
)
from workflow.db.records import get as records_get
from workflow.engine import content
from workflow.engine.access import Option
from workflow.engine.core import Engine
from workflow.queries.directories import people_names
from workflow.registry import Registry
from workflow.spec.fields import users_in
from workflow.spec.model import TransitionSpec, WorkflowDefinition


@dataclass(frozen=True)
class RecordPage:
    """Everything the record page shows, read in one session."""

    record: Record
    definition: WorkflowDefinition
    definition_version: int
    creator: User | None
    #: the audit trail, oldest first
    events: list[AuditEvent]
    #: audit event id -> the actor's username (None for an event without an actor row)
    actor_usernames: dict[int, str | None]
    signatures: list[Signature]
    #: (link, the record at its other end), in the order the links were made
    links: list[tuple[RecordLink, Record]]
    #: open tasks with the assignee's printed name
    tasks: list[tuple[Task, str | None]]
    #: transitions the viewer may fire now
    available: list[TransitionSpec]
    #: printed names of the usernames the record's user fields hold
    people: dict[str, str]
    #: ids of signatures whose covered content changed since (R-P11-70-2)
    superseded: frozenset[int] = frozenset()
    #: the viewer's steps from this state, each with the rule refusing it now, if any
    options: list[Option] = field(default_factory=list)
    #: per step that waits for linked records: (what it waits for, the record, satisfied)
    waiting: dict[str, list[tuple[Any, Any, bool]]] = field(default_factory=dict)
    #: SHA-256 -> why, for attached files whose stored bytes are missing or changed
    damaged: dict[str, str] = field(default_factory=dict)
    #: field -> the audit entries (seq) that changed it after its first entry (R-A11-8-1)
    changed: dict[str, list[int]] = field(default_factory=dict)
    #: the record's due-date extension requests, oldest first
    extensions: list[ExtensionRow] = field(default_factory=list)
    #: why the viewer may not request an extension now (None: they may)
    extension_refused: str | None = None
    #: per waiting request id: why the viewer may not decide it (None: they may)
    extension_decide: dict[int, str | None] = field(default_factory=dict)


@dataclass(frozen=True)
class ExtensionRow:
    """A due-date extension request as the record page, the API and the CLI show it."""

    id: int
    status: str
    requested_by: str
    requested_at: Any
    old_due: Any
    new_due: Any
    reason: str
    decided_by: str | None
    decided_at: Any
    decision_reason: str | None
    signature_id: int | None


# built once: building the two aliases and the statement on each record page cost ~5 ms of
# CPU (measured at 1M records, 20 requests profiled), a fifth of the page
_ASKER, _DECIDER = aliased(User), aliased(User)
_EXTENSIONS = (select(DueDateExtension, _ASKER.full_name, _DECIDER.full_name)
               .join(_ASKER, _ASKER.id == DueDateExtension.requested_by_id)
               .outerjoin(_DECIDER, _DECIDER.id == DueDateExtension.decided_by_id)
               .where(DueDateExtension.record_id == bindparam("rid"))
               .order_by(DueDateExtension.id))


def extensions(session: Session, rec: Record) -> list[ExtensionRow]:
    """The record's due-date extension requests with who asked and who decided, oldest
    first."""
    rows = session.execute(_EXTENSIONS, {"rid": rec.id}).all()
    return [ExtensionRow(e.id, e.status.value,
                         who, e.requested_at, e.old_due, e.new_due, e.reason, by, e.decided_at,
                         e.decision_reason, e.signature_id) for e, who, by in rows]


def audit_events(session: Session, rec: Record) -> list[tuple[AuditEvent, str | None]]:
    """The record's audit trail, oldest first, each event with its actor's username."""
    return [(ev, username) for ev, username in session.execute(
        select(AuditEvent, User.username).outerjoin(User, User.id == AuditEvent.actor_id)
        .where(AuditEvent.record_id == rec.id).order_by(AuditEvent.seq))]


def changed_after_entry(events: list[Any]) -> dict[str, list[int]]:
    """Field -> the audit entries (``seq``) that changed or cleared a value already entered
    (Annex 11 §8, R-A11-8-1): what a printout flags. Entering a value where there was none
    and adding list rows are first entries, not changes."""
    out: dict[str, list[int]] = {}
    for ev in events:
        if ev.action not in ("create", "update") or not isinstance(ev.changes, dict):
            continue
        for f, ch in ev.changes.items():
            if isinstance(ch, list) and len(ch) == 2 and content.is_change(ch[0], ch[1]):
                out.setdefault(f, []).append(ev.seq)
    return out


def signatures(session: Session, rec: Record) -> list[Signature]:
    """The record's signatures, in the order they were given."""
    return list(session.execute(select(Signature).where(Signature.record_id == rec.id)
                                .order_by(Signature.id)).scalars())


def damaged_files(rec: Record) -> dict[str, str]:
    """SHA-256 -> why, for each file ``rec`` holds whose stored bytes are missing or no
    longer match (workflow/blobs.py; read and hashed again on each call)."""
    if not any(blobs.files_in(v) for v in rec.data.values()):
        return {}
    return blobs.broken(blobs.store(), rec.data)


def superseded(session: Session, rec: Record) -> frozenset[int]:
    """Ids of ``rec``'s signatures whose covered content changed since (R-P11-70-2),
    including a signed attachment whose stored file no longer matches."""
    return content.superseded([ev for ev, _ in audit_events(session, rec)], rec.data,
                              frozenset(damaged_files(rec)))


def links(session: Session, rec: Record) -> list[tuple[RecordLink, Record]]:
    """(link, the record at its other end) for links from and to ``rec``, oldest first."""
    return [(link, other) for link, other in session.execute(
        select(RecordLink, Record).join(
            Record, or_(Record.id == RecordLink.target_id, Record.id == RecordLink.source_id))
        .where(or_(RecordLink.source_id == rec.id, RecordLink.target_id == rec.id),
               Record.id != rec.id).order_by(RecordLink.id))]


def open_tasks(session: Session, rec: Record) -> list[tuple[Task, str | None]]:
    """The record's open tasks with the assignee's printed name."""
    return [(task, name) for task, name in session.execute(
        select(Task, User.full_name).outerjoin(User, User.id == Task.assignee_id)
        .where(Task.record_id == rec.id, OPEN_TASK).order_by(Task.id))]


def field_people(session: Session, d: WorkflowDefinition, rec: Record) -> dict[str, str]:
    """Printed names for the usernames the record's user fields hold."""
    names: set[str] = set()
    for spec in d.fields.values():
        names.update(users_in(spec, rec.data.get(spec.name)))
    return people_names(session, names)


def visible_record(session: Session, engine: Engine, number: str, viewer: str
                   ) -> tuple[Record, WorkflowDefinition]:
    """The record and its definition; RecordNotFound when ``viewer`` may not see it (the
    engine decides, R-P11-10d-2: no probing)."""
    rec = engine.get(number, viewer=viewer, session=session)
    return rec, engine.definition_of(rec, session=session)


def record_page(session: Session, engine: Engine, number: str, viewer: str) -> RecordPage:
    """The record page of ``number`` as ``viewer`` sees it (RecordNotFound when not
    visible). Reads only; ``session`` is the caller's read session."""
    rec, d = visible_record(session, engine, number, viewer)
    compiled = engine.registry.by_hash(session, rec.definition_hash)
    trail = audit_events(session, rec)
    damaged = damaged_files(rec)
    options = engine.step_options(rec.number, viewer, session=session)
    may_request, decide = engine.extension_options(rec, viewer, session=session)
    return RecordPage(
        record=rec, definition=d, definition_version=compiled.version,
        creator=session.get(User, rec.created_by_id),
        events=[ev for ev, _ in trail], actor_usernames={ev.id: u for ev, u in trail},
        signatures=signatures(session, rec), links=links(session, rec),
        tasks=open_tasks(session, rec),
        available=[o.transition for o in options if o.offered],
        people=field_people(session, d, rec),
        superseded=content.superseded([ev for ev, _ in trail], rec.data,
                                      frozenset(damaged)), options=options,
        damaged=damaged,
        changed=changed_after_entry([ev for ev, _ in trail]),
        waiting={t.name: engine.waiting_for(rec, t, session=session)
                 for t in d.transitions_from(rec.state) if t.waits_for},
        extensions=extensions(session, rec),
        extension_refused=may_request, extension_decide=decide)


@dataclass(frozen=True)
class RecordView:
    """A record as the API shows it (no trail, signatures or step options): the row, its
    definition version's number, its creator and its links."""

    record: Record
    definition_version: int
    creator: User | None
    links: list[tuple[RecordLink, Record]]


def record_view(session: Session, engine: Engine, number: str, viewer: str | None
                ) -> RecordView:
    """The API's view of ``number`` in three or four statements (record, creator, links; the
    viewer's row and grants come from the request's cache). ``viewer`` None: the caller has
    just changed the record as the person whose request this is (its unit checked that they
    may see it), so it is not checked again."""
    rec = (engine.get(number, viewer=viewer, session=session) if viewer is not None
           else records_get(session, number))
    return RecordView(rec, engine.registry.by_hash(session, rec.definition_hash).version,
                      session.get(User, rec.created_by_id), links(session, rec))


def visible_records(session: Session, registry: Registry, user: User, roles: set[str], *,
                    workflow: str | None = None, state: str | None = None,
                    text: str | None = None, before_id: int | None = None,
                    limit: int = 50) -> list[Record]:
    """Records ``user`` may see (rules.visible_clause, the SQL twin of the engine's check),
    newest first; up to ``limit`` + 1 rows, so the caller can tell whether a next page
    exists."""
    published = [registry.by_hash(session, h).definition
                 for h in session.execute(select(DefinitionVersion.content_hash)).scalars()]
    q = select(Record).where(rules.visible_clause(user, roles, published))
    if workflow:
        q = q.where(Record.workflow_key == workflow)
    if state:
        q = q.where(Record.state == state)
    if text:
        text = text.strip().lower()
        q = q.where(or_(func.lower(Record.number).contains(text, autoescape=True),
                        func.lower(Record.title).contains(text, autoescape=True)))
    if before_id is not None:
        q = q.where(Record.id < before_id)
    return list(session.execute(q.order_by(Record.id.desc()).limit(limit + 1)).scalars())
