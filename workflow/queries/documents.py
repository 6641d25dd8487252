"""Controlled documents as the rest of the system reads them: the versions of a document
number and the one in force, from the records of every workflow that declares the
``document`` capability (one record per version; definitions/controlled_document.yaml ships
one). The engine never names that workflow: the capability says which fields hold the
number, version, title, type, effective date and retraining interval, and which state is
the version in force.

Used by the training matrix (who must train on what), the training gate (currency), change
control and the Read view. No Flask here; the caller passes its session.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from workflow.db.models import DefinitionVersion, Record
from workflow.registry import Registry
from workflow.spec.model import DocumentCapability, WorkflowDefinition

#: what a printout or PDF copy of a controlled document version says
UNCONTROLLED = "Uncontrolled when printed"


@dataclass(frozen=True)
class DocumentVersion:
    """One version of a controlled document (one record)."""

    record_id: int
    number: str
    version: int
    title: str
    doc_type: str | None
    state: str
    effective_date: date | None
    retraining_days: int | None
    #: the record's own number (DOC-2026-0001), its workflow, the state's label
    record_number: str = ""
    workflow: str = ""
    state_label: str = ""
    #: this version is the one in force (it is in the capability's effective state)
    in_force: bool = False
    #: the next periodic review date, when the capability names the field
    next_review: date | None = None


def document_definitions(session: Session, registry: Registry | None = None
                         ) -> dict[str, WorkflowDefinition]:
    """The newest published version of each workflow that declares the ``document``
    capability, by key."""
    registry = registry or Registry()
    rows = session.execute(select(DefinitionVersion.key, DefinitionVersion.content_hash)
                           .order_by(DefinitionVersion.key, DefinitionVersion.version)).all()
    latest: dict[str, str] = {}
    for key, content_hash in rows:
        latest[key] = content_hash
    out = {}
    for key, content_hash in latest.items():
        d = registry.by_hash(session, content_hash).definition
        if d.capabilities.document is not None:
            out[key] = d
    return out


def _date(raw: Any) -> date | None:
    if not raw:
        return None
    try:
        return date.fromisoformat(str(raw)[:10])
    except ValueError:
        return None


def _int(raw: Any) -> int | None:
    try:
        return int(raw) if raw not in (None, "") else None
    except (TypeError, ValueError):
        return None


def as_version(rec: Record, d: WorkflowDefinition) -> DocumentVersion:
    """The record as a document version, read through its definition's capability."""
    cap = d.capabilities.document
    assert cap is not None
    data = rec.data or {}

    def field(name: str | None) -> Any:
        return data.get(name) if name else None

    state = d.states.get(rec.state)
    return DocumentVersion(
        record_id=rec.id, number=str(field(cap.number) or ""),
        version=_int(field(cap.version)) or 0, title=str(field(cap.title) or rec.title),
        doc_type=field(cap.type), state=rec.state, effective_date=_date(field(cap.effective_date)),
        retraining_days=_int(field(cap.retraining_days)), record_number=rec.number,
        workflow=rec.workflow_key, state_label=state.label if state else rec.state,
        in_force=rec.state == cap.effective_state, next_review=_date(field(cap.next_review)))


def _records(session: Session, registry: Registry, defs: dict[str, WorkflowDefinition],
             number: str | None, effective_only: bool) -> list[tuple[Record, WorkflowDefinition]]:
    conds = []
    for key, d in defs.items():
        cap: DocumentCapability = d.capabilities.document  # type: ignore[assignment]
        cond = [Record.workflow_key == key]
        if number is not None:
            cond.append(Record.data[cap.number].as_string() == number)
        if effective_only:
            cond.append(Record.state == cap.effective_state)
        conds.append(cond)
    if not conds:
        return []
    q = select(Record).where(or_(*(and_(*c) for c in conds))).order_by(Record.id)
    out = []
    for rec in session.execute(q).scalars():
        d = defs[rec.workflow_key]
        if rec.definition_hash != d.content_hash:
            d = registry.by_hash(session, rec.definition_hash).definition
        if d.capabilities.document is not None:
            out.append((rec, d))
    return out


def document_versions(session: Session, number: str, *, registry: Registry | None = None
                      ) -> list[DocumentVersion]:
    """Every version of document ``number`` (any state), lowest version first."""
    registry = registry or Registry()
    defs = document_definitions(session, registry)
    rows = [as_version(rec, d) for rec, d in _records(session, registry, defs, number.strip(), False)]
    return sorted(rows, key=lambda v: (v.version, v.record_id))


def effective_version(session: Session, number: str, *, registry: Registry | None = None
                      ) -> DocumentVersion | None:
    """The version of document ``number`` in force now (in the capability's effective
    state), or None. The engine's exclusivity control keeps it to one; should the data hold
    two anyway, the highest version is returned."""
    registry = registry or Registry()
    defs = document_definitions(session, registry)
    rows = [as_version(rec, d) for rec, d in _records(session, registry, defs, number.strip(), True)]
    return max(rows, key=lambda v: (v.version, v.record_id)) if rows else None


def effective_documents(session: Session, *, registry: Registry | None = None
                        ) -> list[DocumentVersion]:
    """The version in force of every controlled document, by number."""
    registry = registry or Registry()
    defs = document_definitions(session, registry)
    rows = [as_version(rec, d) for rec, d in _records(session, registry, defs, None, True)]
    best: dict[str, DocumentVersion] = {}
    for v in rows:
        if v.number not in best or v.version > best[v.number].version:
            best[v.number] = v
    return [best[n] for n in sorted(best)]
