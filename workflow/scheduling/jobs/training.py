"""Refresher trainings (R-P11-10i-1): a new training_assignment before the last completed one
on a document with a retraining interval expires."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from workflow.db.models import Record
from workflow.identity import users as identity
from workflow.scheduling.context import JobContext
from workflow.spec.model import parse_duration

#: the workflow whose records are trainings (data: trainee, document, document_version)
TRAINING_WORKFLOW = "training_assignment"


# rule: moves to workflow/rules.py ("training completed"; the engine's training gate and the
# KPI training cohorts repeat it as SQL)
def training_completed(closed_at: datetime | None, outcome: str | None) -> bool:
    """A training_assignment record counts as completed training once it is closed with the
    outcome ``done``."""
    return closed_at is not None and outcome == "done"


def training_refreshers(ctx: JobContext) -> dict[str, Any]:
    """Open a new training_assignment before a trainee's last completed training on a
    document with a retraining interval expires (R-P11-10i-1): params.documents lists
    ``{document, interval, lead}``; once per trainee, document and expiry date."""
    created = []
    with ctx.engine.reader() as s:
        rows = s.execute(select(Record.data, Record.closed_at, Record.outcome).where(
            Record.workflow_key == TRAINING_WORKFLOW)).all()
    for doc in ctx.params.get("documents", []):
        interval = parse_duration(str(doc["interval"]))
        lead = parse_duration(str(doc.get("lead", "30d")))
        last: dict[str, tuple[datetime, str]] = {}
        open_for: set[str] = set()
        for data, closed_at, outcome in rows:
            if data.get("document") != doc["document"] or not data.get("trainee"):
                continue
            if closed_at is None:
                open_for.add(data["trainee"])
            elif training_completed(closed_at, outcome) and (
                    data["trainee"] not in last or closed_at > last[data["trainee"]][0]):
                last[data["trainee"]] = (closed_at, str(data.get("document_version", "")))
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
                rec = ctx.start_record(session, TRAINING_WORKFLOW, {
                    "title": f"Refresher training: {document}", "document": document,
                    "document_version": version, "trainee": trainee,
                    "due_date": due.isoformat()})
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
