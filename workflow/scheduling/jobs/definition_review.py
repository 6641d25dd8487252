"""The periodic review of each published workflow definition (R-A11-11-1)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from sqlalchemy import func as sqlfunc
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from workflow.audit import trail as audit
from workflow.db.models import DefinitionVersion, Record, Task, TaskStatus
from workflow.scheduling.context import JobContext

log = logging.getLogger(__name__)


def definition_review(ctx: JobContext) -> dict[str, Any]:
    """Open one definition_review per published workflow definition and period, the task
    going to the definition's process-owner role (R-A11-11-1)."""
    exclude = set(ctx.params.get("exclude", []))
    with ctx.engine.reader() as s:
        keys = [k for k in s.execute(select(DefinitionVersion.key).distinct()
                                     .order_by(DefinitionVersion.key)).scalars()
                if k not in exclude]
    opened: list[str] = []
    skipped: list[str] = []
    for key in keys:
        def work(session: Session, key: str = key) -> str:
            compiled = ctx.engine.registry.latest(session, key)
            d = compiled.definition
            row = session.get(DefinitionVersion, compiled.id)
            total, still_open = session.execute(
                select(sqlfunc.count(Record.id),
                       sqlfunc.count(Record.id).filter(Record.closed_at.is_(None)))
                .where(Record.workflow_key == key)).one()
            review = ctx.engine.registry.latest(session, "definition_review").definition
            owner = d.process_owner if d.process_owner in review.roles else "process_owner"
            if d.process_owner and owner != d.process_owner:
                log.warning("definition_review: %s's process owner %r is not a role of the "
                            "definition_review workflow; the review goes to process_owner",
                            key, d.process_owner)
            rec = ctx.start_record(session, "definition_review", {
                "title": f"Periodic review of {d.title} ({key} v{compiled.version}) "
                         f"{ctx.period}"[:200],
                "period": ctx.period[:20], "definition": key, "definition_title": d.title,
                "version": compiled.version, "content_hash": row.content_hash if row else None,
                "published_at": row.published_at if row else None, "owner_role": owner,
                "records_total": int(total), "records_open": int(still_open)})
            if owner != "process_owner":
                task_id = session.execute(select(Task.id).where(
                    Task.record_id == rec.id, Task.status == TaskStatus.OPEN,
                    Task.role == "process_owner")).scalars().first()
                if task_id is not None:
                    session.execute(update(Task).where(Task.id == task_id).values(role=owner))
                    audit.record_event(session, rec, at=ctx.now, actor=ctx.system(session),
                                       action="task_assigned",
                                       changes={"task": {"task": task_id,
                                                         "role": ["process_owner", owner]}},
                                       reason=ctx.reason)
            ctx.outbox(session, kind="review_opened", record_id=rec.id, role=owner,
                       subject=f"{rec.number}: periodic review of {d.title} to perform",
                       body=f"The {ctx.period} review of the workflow definition {key} "
                            f"(version {compiled.version}): is it still fit for use?")
            return rec.number

        done, number = ctx.once_for_period(key, work)
        (opened if done else skipped).append(number or key)
    return {"opened": opened, "already open": skipped}


def check_definition_review(params: Mapping[str, Any]) -> list[tuple[tuple, str]]:
    exclude = params.get("exclude", [])
    if not isinstance(exclude, list) or not all(isinstance(k, str) for k in exclude):
        return [(("exclude",), "exclude must list definition keys")]
    return []
