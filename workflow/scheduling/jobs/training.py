"""Refresher trainings (R-P11-10i-1): a new training assignment before the last completed one
on a document with a retraining interval expires. The training workflow and its fields come
from the definition that declares the ``training`` capability."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from workflow import rules
from workflow.db.models import Record
from workflow.errors import WorkflowError
from workflow.identity import users as identity
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


def training_refreshers(ctx: JobContext) -> dict[str, Any]:
    """Open a new training_assignment before a trainee's last completed training on a
    document with a retraining interval expires (R-P11-10i-1): params.documents lists
    ``{document, interval, lead}``; once per trainee, document and expiry date."""
    created = []
    with ctx.engine.reader() as s:
        workflow, cap = training_workflow(ctx, s)
        rows = s.execute(select(Record).where(Record.workflow_key == workflow)).scalars().all()
    for doc in ctx.params.get("documents", []):
        interval = parse_duration(str(doc["interval"]))
        lead = parse_duration(str(doc.get("lead", "30d")))
        last: dict[str, tuple[datetime, str]] = {}
        open_for: set[str] = set()
        for rec in rows:
            trainee = rec.data.get(cap.trainee)
            if rec.data.get(cap.document) != doc["document"] or not trainee:
                continue
            if rec.closed_at is None:
                open_for.add(trainee)
            elif rules.training_done(rec, ctx.now) and (
                    trainee not in last or rec.closed_at > last[trainee][0]):
                last[trainee] = (rec.closed_at,
                                 str(rec.data.get(cap.version, "")) if cap.version else "")
        for trainee, (done_at, version) in sorted(last.items()):
            expires = done_at + interval
            if trainee in open_for or ctx.now < expires - lead:
                continue

            def work(session: Session, trainee: str = trainee, version: str = version,
                     expires: datetime = expires, document: str = doc["document"]) -> str | None:
                user = identity.find_user(session, trainee)
                if user is None or not user.active:
                    return None
                due: date = max(expires.date(), ctx.now.date())
                data = {"title": f"Refresher training: {document}", cap.document: document,
                        cap.trainee: trainee}
                if cap.version:
                    data[cap.version] = version
                if cap.due:
                    data[cap.due] = due.isoformat()
                rec = ctx.start_record(session, workflow, data)
                return rec.number

            key = f"{doc['document']}/{trainee}@{expires:%Y-%m-%d}"
            done, number = ctx.once("training:refresher", key, work)
            if done and number:
                created.append(number)
    return {"assigned": created}


def check_training(params: Mapping[str, Any]) -> list[tuple[tuple, str]]:
    docs = params.get("documents")
    if not isinstance(docs, list):
        return [((), "params.documents must list {document, interval, lead}")]
    out: list[tuple[tuple, str]] = []
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
