"""Training curricula: records of the workflows that declare the ``curriculum`` capability
(shipped: definitions/curriculum.yaml), read as what each role must be trained on.

A curriculum counts while its record is in the capability's ``active_state``. Several active
curricula for one role add up (the role needs the union); a document named twice is required
in its most demanding kind and shortest time."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from workflow.db.models import Record
from workflow.errors import ValidationFailed
from workflow.identity import grants
from workflow.queries import documents
from workflow.registry import Registry
from workflow.spec.model import CurriculumCapability, WorkflowDefinition

#: the training kinds, least to most demanding
KINDS = ("read_and_understood", "on_the_job", "classroom", "assessment")
KIND_LABELS = {"read_and_understood": "Read and understood", "classroom": "Classroom",
               "on_the_job": "On the job", "assessment": "Assessment"}
#: days to complete when a curriculum says nothing
DEFAULT_DUE_DAYS = 30


@dataclass(frozen=True)
class Required:
    """One document a curriculum requires: its number, the kind of training, the days to
    complete it, and the curriculum (record number) and role that require it."""

    document: str
    kind: str
    due_days: int
    curriculum: str
    role: str


@dataclass(frozen=True)
class Curriculum:
    record_id: int
    number: str
    title: str
    role: str
    items: tuple[Required, ...]


def curriculum_workflows(definitions: Iterable[WorkflowDefinition]
                         ) -> dict[str, CurriculumCapability]:
    """The workflows whose records are curricula, by key (newest versions' capability)."""
    return {d.key: d.capabilities.curriculum for d in definitions
            if d.capabilities.curriculum is not None}


def items_of(cap: CurriculumCapability, number: str, data: Mapping[str, Any]
             ) -> tuple[Required, ...]:
    """The documents a curriculum record's data requires."""
    role = str(data.get(cap.role) or "").strip()
    try:
        days = int(data.get(cap.due_days) or DEFAULT_DUE_DAYS) if cap.due_days \
            else DEFAULT_DUE_DAYS
    except (TypeError, ValueError):
        days = DEFAULT_DUE_DAYS
    out = []
    for row in data.get(cap.items) or []:
        if not isinstance(row, Mapping):
            continue
        doc = str(row.get(cap.document) or "").strip()
        if doc:
            kind = str(row.get(cap.kind) or "read_and_understood") if cap.kind \
                else "read_and_understood"
            out.append(Required(doc, kind, days, number, role))
    return tuple(out)


def active(session: Session, registry: Registry, role: str | None = None) -> list[Curriculum]:
    """The active curricula (of ``role``, or all), oldest first."""
    caps = curriculum_workflows(registry.newest(session).values())
    if not caps:
        return []
    q = select(Record).where(or_(*(
        (Record.workflow_key == key) & (Record.state == cap.active_state)
        for key, cap in caps.items())))
    out = []
    for rec in session.execute(q.order_by(Record.id)).scalars():
        cap = caps[rec.workflow_key]
        r = str(rec.data.get(cap.role) or "").strip()
        if role is not None and r != role:
            continue
        out.append(Curriculum(rec.id, rec.number, rec.title, r,
                              items_of(cap, rec.number, rec.data)))
    return out


def merge(items: Iterable[Required]) -> dict[str, Required]:
    """One requirement per document: the most demanding kind, the shortest time."""
    out: dict[str, Required] = {}
    for it in items:
        have = out.get(it.document)
        if have is None:
            out[it.document] = it
            continue
        kind = max(have.kind, it.kind, key=lambda k: KINDS.index(k) if k in KINDS else 0)
        out[it.document] = Required(it.document, kind, min(have.due_days, it.due_days),
                                    have.curriculum, have.role)
    return out


def required_for(curricula: Iterable[Curriculum], roles: Iterable[str]) -> dict[str, Required]:
    """What a person holding ``roles`` must be trained on, by document number."""
    held = set(roles)
    return merge(it for c in curricula if c.role in held for it in c.items)


def check(session: Session, registry: Registry, cap: CurriculumCapability,
          data: Mapping[str, Any]) -> None:
    """A curriculum names a role that can be granted and documents that exist (some version
    of each is a controlled document); each document once. Raises ValidationFailed naming
    every problem (the step is refused, nothing written)."""
    problems: dict[str, str] = {}
    role = str(data.get(cap.role) or "").strip()
    declared = grants.catalogue(session).declared
    if role and role not in declared:
        problems[cap.role] = (f"{role!r} is not a role any published workflow definition or "
                              f"the settings declare; declared roles: {', '.join(sorted(declared))}")
    rows = [r for r in data.get(cap.items) or [] if isinstance(r, Mapping)]
    numbers = [str(r.get(cap.document) or "").strip() for r in rows]
    unknown = [n for n in dict.fromkeys(numbers) if n and not documents.document_versions(
        session, n, registry=registry)]
    twice = sorted({n for n in numbers if n and numbers.count(n) > 1})
    empty = numbers.count("")
    msgs = []
    if unknown:
        msgs.append(f"{', '.join(unknown)}: no controlled document has this number (check the "
                    "number on the document list)")
    if twice:
        msgs.append(f"{', '.join(twice)} listed more than once")
    if empty:
        msgs.append(f"{empty} row(s) without a document number")
    if msgs:
        problems[cap.items] = "; ".join(msgs)
    if problems:
        raise ValidationFailed(problems)
