"""Refresher trainings (R-P11-10i-1, R-TRN-9): a new training assignment before the last
completed one on a document with a retraining interval expires. The intervals come from the
controlled documents (each effective version's retraining field, through the ``document``
capability); the training workflow and its fields from the definition that declares the
``training`` capability."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from workflow import rules
from workflow.db.models import Record, RecordLink
from workflow.errors import WorkflowError
from workflow.identity import users as identity
from workflow.queries import documents
from workflow.scheduling.context import JobContext
from workflow.spec.model import TrainingCapability, parse_duration


def training_workflow(ctx: JobContext, session: Session) -> tuple[str, TrainingCapability]:
    """The workflow whose records are trainings (the one declaring the ``training``
    capability; ``params.workflow`` chooses when several do)."""
    workflows = rules.training_workflows(ctx.engine.registry.known(session).values())
    chosen = ctx.params.get("workflow")
    if chosen:
        if chosen not in workflows:
            raise WorkflowError(f"{chosen} declares no training capability")
        return chosen, workflows[chosen]
    if len(workflows) != 1:
        raise WorkflowError("training refreshers need params.workflow: "
                            f"{len(workflows)} workflows declare the training capability")
    return next(iter(workflows.items()))


@dataclass(frozen=True)
class _Refresh:
    document: str
    interval: timedelta
    lead: timedelta
    version: str | None = None  # only trainings on this version count (the effective one)
    record_number: str | None = None  # the document version record
    record_id: int | None = None
    workflow: str | None = None


def _documents(ctx: JobContext, session: Session) -> list[_Refresh]:
    """What needs retraining: every controlled document's EFFECTIVE version that declares a
    retraining interval (the ``document`` capability's retraining field), and the documents
    ``params.documents`` lists (``{document, interval, lead}``: documents not under document
    control). ``params.lead`` (default 30d): how long before expiry the refresher is
    assigned."""
    lead = parse_duration(str(ctx.params.get("lead", "30d")))
    out = [_Refresh(str(v.number), timedelta(days=v.retraining_days), lead, str(v.version),
                    v.record_number, v.record_id, v.workflow)
           for v in documents.effective_documents(session, registry=ctx.engine.registry)
           if v.retraining_days]
    listed = {r.document for r in out}
    for doc in ctx.params.get("documents", []):
        if doc["document"] not in listed:
            out.append(_Refresh(doc["document"], parse_duration(str(doc["interval"])),
                                parse_duration(str(doc.get("lead", "30d")))))
    return out


def training_refreshers(ctx: JobContext) -> dict[str, Any]:
    """Open a new training assignment before a trainee's last completed training on a
    document with a retraining interval expires (R-P11-10i-1, R-TRN-9): the intervals come
    from the documents themselves (:func:`_documents`); once per trainee, document and
    expiry date."""
    created = []
    with ctx.engine.reader() as s:
        workflow, cap = training_workflow(ctx, s)
        refreshes = _documents(ctx, s)
        rows = s.execute(select(Record).where(Record.workflow_key == workflow)).scalars().all()
        fields = ctx.engine.registry.latest(s, workflow).definition.fields
    for doc in refreshes:
        last: dict[str, tuple[datetime, str]] = {}
        open_for: set[str] = set()
        for rec in rows:
            trainee = rec.data.get(cap.trainee)
            if rec.data.get(cap.document) != doc.document or not trainee:
                continue
            version = str(rec.data.get(cap.version, "")) if cap.version else ""
            if rec.closed_at is None:
                open_for.add(trainee)
            elif doc.version is not None and version != doc.version:
                continue
            elif rules.training_done(rec, ctx.now) and (
                    trainee not in last or rec.closed_at > last[trainee][0]):
                last[trainee] = (rec.closed_at, version)
        for trainee, (done_at, version) in sorted(last.items()):
            expires = done_at + doc.interval
            if trainee in open_for or ctx.now < expires - doc.lead:
                continue

            def work(session: Session, trainee: str = trainee, version: str = version,
                     expires: datetime = expires, doc: _Refresh = doc) -> str | None:
                user = identity.find_user(session, trainee)
                if user is None or not user.active:
                    return None
                due: date = max(expires.date(), ctx.now.date())
                data = {"title": f"Refresher training: {doc.document}",
                        cap.document: doc.document, cap.trainee: trainee}
                if cap.version:
                    data[cap.version] = version
                if cap.due:
                    data[cap.due] = due.isoformat()
                if doc.record_number and getattr(fields.get("document_record"), "workflow",
                                                 None) == doc.workflow:
                    data["document_record"] = doc.record_number
                if doc.record_number and "required_by" in fields:
                    data["required_by"] = f"retraining every {doc.interval.days} days"
                rec = ctx.start_record(session, workflow, data)
                if doc.record_id is not None:
                    # linked to the version it retrains on, like the matrix's assignments
                    session.add(RecordLink(source_id=rec.id, target_id=doc.record_id,
                                           kind="spawned_by", created_at=ctx.now,
                                           created_by_id=rec.created_by_id))
                return rec.number

            key = f"{doc.document}/{trainee}@{expires:%Y-%m-%d}"
            done, number = ctx.once("training:refresher", key, work)
            if done and number:
                created.append(number)
    return {"assigned": created}


def check_training(params: Mapping[str, Any]) -> list[tuple[tuple, str]]:
    docs = params.get("documents", [])
    if not isinstance(docs, list):
        return [((), "params.documents must list {document, interval, lead}")]
    out: list[tuple[tuple, str]] = []
    if "lead" in params:
        try:
            parse_duration(str(params["lead"]))
        except ValueError as exc:
            out.append((("lead",), f"lead: {exc}"))
    for i, d in enumerate(docs):
        if not isinstance(d, dict) or not d.get("document"):
            out.append((("documents", i), "each entry needs a document"))
            continue
        for k in ("interval", "lead"):
            if k in d or k == "interval":
                try:
                    parse_duration(str(d.get(k)))
                except ValueError as exc:
                    out.append((("documents", i, k), f"{k}: {exc}"))
    return out
