"""What people read of controlled documents: the documents list (one row per document
number, with its version in force) and the Read view of the effective version (its files,
metadata and approvals). Read-only; the caller passes its read session. Visibility is the
one rule (workflow/rules.py): a person sees the documents whose workflow they hold a role of.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from workflow import rules
from workflow.blobs import is_file_value
from workflow.db.models import DefinitionVersion, Record, Signature, User
from workflow.engine.core import Engine
from workflow.errors import RecordNotFound
from workflow.queries import documents
from workflow.queries import records as record_queries
from workflow.queries.documents import DocumentVersion
from workflow.registry import Registry
from workflow.spec.fields import choice_label
from workflow.spec.model import WorkflowDefinition

#: what a printout of a controlled document says (the Read view's print stylesheet and the
#: PDF true copy of a document version)
UNCONTROLLED = documents.UNCONTROLLED


def watermark(version: int | str) -> str:
    """The Read view's watermark."""
    return f"Controlled copy, effective version {version}"


@dataclass(frozen=True)
class DocumentRow:
    """One controlled document in the list: its newest version and the one in force."""

    number: str
    title: str
    doc_type: str | None
    effective: DocumentVersion | None
    latest: DocumentVersion

    @property
    def next_review(self) -> date | None:
        return self.effective.next_review if self.effective else None


def document_index(session: Session, registry: Registry, user: User, roles: set[str]
                   ) -> list[DocumentRow]:
    """Every controlled document ``user`` may see, by number."""
    defs = documents.document_definitions(session, registry)
    if not defs:
        return []
    published = [registry.by_hash(session, h).definition
                 for h in session.execute(select(DefinitionVersion.content_hash)).scalars()]
    q = select(Record).where(Record.workflow_key.in_(sorted(defs)),
                             rules.visible_clause(user, roles, published)).order_by(Record.id)
    by_number: dict[str, list[DocumentVersion]] = {}
    for rec in session.execute(q).scalars():
        d = defs[rec.workflow_key]
        if rec.definition_hash != d.content_hash:
            d = registry.by_hash(session, rec.definition_hash).definition
        if d.capabilities.document is None:
            continue
        v = documents.as_version(rec, d)
        by_number.setdefault(v.number, []).append(v)
    out = []
    for number in sorted(by_number):
        versions = sorted(by_number[number], key=lambda v: (v.version, v.record_id))
        effective = next((v for v in reversed(versions) if v.in_force), None)
        shown = effective or versions[-1]
        out.append(DocumentRow(number, shown.title, shown.doc_type, effective, versions[-1]))
    return out


@dataclass(frozen=True)
class ReadView:
    """The effective version of a document as the Read view shows it."""

    version: DocumentVersion
    record: Record
    definition: WorkflowDefinition
    #: (field label, file value) of each file the version holds
    files: list[tuple[str, dict[str, Any]]]
    #: (label, shown value) of the version's metadata
    metadata: list[tuple[str, Any]]
    #: the valid approval and review signatures
    signatures: list[Signature]
    versions: list[DocumentVersion]
    #: SHA-256 -> why, for files whose stored bytes no longer match
    damaged: dict[str, str]

    @property
    def watermark(self) -> str:
        return watermark(self.version.version)


def read_view(session: Session, engine: Engine, number: str, viewer: str) -> ReadView:
    """The Read view of document ``number``'s effective version as ``viewer`` may see it.

    Raises:
        RecordNotFound: no version of ``number`` is in force, or ``viewer`` may not see it.
    """
    v = documents.effective_version(session, number, registry=engine.registry)
    if v is None:
        raise RecordNotFound(number)
    rec, d = record_queries.visible_record(session, engine, v.record_number, viewer)
    people = record_queries.field_people(session, d, rec)
    files = [(spec.label, rec.data[spec.name]) for spec in d.fields.values()
             if spec.type == "file" and is_file_value(rec.data.get(spec.name))]
    cap = d.capabilities.document
    assert cap is not None
    shown = [cap.number, cap.title, cap.version, cap.type, "owner", cap.effective_date,
             cap.next_review, cap.retraining_days, "change_summary"]
    metadata = []
    for name in dict.fromkeys(n for n in shown if n):
        spec = d.fields.get(name)
        value = rec.data.get(name)
        if spec is None or value in (None, ""):
            continue
        if spec.type == "user":
            value = people.get(value, value)
        elif spec.type == "choice":
            value = str(value).upper() if len(str(value)) <= 3 else choice_label(value)
        metadata.append((spec.label, value))
    superseded = record_queries.superseded(session, rec)
    sigs = [s for s in record_queries.signatures(session, rec) if s.id not in superseded]
    return ReadView(version=v, record=rec, definition=d, files=files, metadata=metadata,
                    signatures=sigs,
                    versions=documents.document_versions(session, number,
                                                         registry=engine.registry),
                    damaged=record_queries.damaged_files(rec))
