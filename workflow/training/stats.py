"""Training-matrix figures beside the matrix (Part 11 §11.10(i), ISO 27001 A.6.3): overdue
trainings, documents effective without complete training, documents past their periodic
review, and the average time from approval to effective - each with the rows behind it
(the drill-down). Read on the caller's session; documents through the ``document``
capability (workflow/queries/documents.py), never a workflow's name."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from workflow import clock
from workflow.db.models import AuditEvent, Record
from workflow.queries import documents as docs
from workflow.registry import Registry
from workflow.training import matrix as tm


@dataclass(frozen=True)
class Figures:
    #: (username, document, assignment, due) of every overdue training the matrix shows
    overdue: list[tuple[str, str, str | None, str]]
    #: (document, effective version, people not current) for documents in force whose
    #: required people are not all trained on that version
    incomplete: list[tuple[str, str, int]]
    #: (document, version, next review date) of effective versions past their review
    review_overdue: list[tuple[str, str, str]]
    #: average days from entering the state before effective (approved) to effective,
    #: and how many versions it is over
    approval_to_effective_days: float | None
    approval_to_effective_n: int


def approval_to_effective(session: Session, registry: Registry) -> tuple[float | None, int]:
    """Average days a document version spent between approval (the state it became
    effective from) and becoming effective, over every version that became effective."""
    defs = docs.document_definitions(session, registry)
    spans = []
    for key, d in defs.items():
        cap = d.capabilities.document
        if cap is None:
            continue
        ids = select(Record.id).where(Record.workflow_key == key)
        rows = session.execute(
            select(AuditEvent.record_id, AuditEvent.at, AuditEvent.from_state,
                   AuditEvent.to_state)
            .where(AuditEvent.record_id.in_(ids), AuditEvent.action == "transition")
            .order_by(AuditEvent.record_id, AuditEvent.seq)).all()
        entered: dict[tuple[int, str], datetime] = {}
        for rid, at, src, dest in rows:
            if rid is None or not dest:
                continue
            if dest == cap.effective_state and src and (rid, src) in entered:
                spans.append((at - entered[(rid, src)]).total_seconds() / 86400)
            entered[(rid, dest)] = at
    if not spans:
        return None, 0
    return round(sum(spans) / len(spans), 1), len(spans)


def figures(session: Session, registry: Registry, m: tm.Matrix) -> Figures:
    today = clock.now().date()
    overdue = [(p.username, n, c.assignment, c.due.isoformat() if c.due else "")
               for p in m.people for n, c in p.cells.items() if c.status == "overdue"]
    incomplete = []
    for col in m.columns:
        if col.version is None:
            continue
        behind = sum(1 for p in m.people
                     if p.cells[col.number].status not in ("current", "not_required"))
        if behind:
            incomplete.append((col.number, col.version, behind))
    review = [(v.number, str(v.version), v.next_review.isoformat())
              for v in docs.effective_documents(session, registry=registry)
              if v.next_review is not None and v.next_review < today]
    avg, n = approval_to_effective(session, registry)
    return Figures(overdue, incomplete, review, avg, n)
