"""The periodic review of each published workflow definition (R-A11-11-1).

A definition's reviews fall due every ``interval`` (param, default 365d). The first one falls
between half an interval and one interval after the definition was first published, at a
point fixed by its key: workflows published the same day (an installation's first
``qms init``) are reviewed spread over the second half of their first year, not all at once,
and a definition published minutes ago is never due. A scheduler that was down opens only the
latest review that fell due (once: the claim is per definition and review number).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func as sqlfunc
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from workflow.audit import trail as audit
from workflow.db.models import OPEN_TASK, DefinitionVersion, Record, Task
from workflow.scheduling.context import JobContext
from workflow.spec.model import parse_duration

log = logging.getLogger(__name__)


def spread(key: str) -> float:
    """A fixed fraction in [0, 1) for ``key`` (where in the window its first review falls)."""
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) / 2 ** 32


def first_due(key: str, first_published: datetime, interval: timedelta) -> datetime:
    """When the first review of ``key`` falls due."""
    return first_published + interval * (0.5 + 0.5 * spread(key))


def definition_review(ctx: JobContext) -> dict[str, Any]:
    """Open the definition_review of each published workflow definition whose review has
    fallen due, the task going to the definition's process-owner role (R-A11-11-1)."""
    exclude = set(ctx.params.get("exclude", []))
    interval = parse_duration(str(ctx.params.get("interval", "365d")))
    due: dict[str, tuple[int, datetime]] = {}  # key -> (review number, due at)
    with ctx.engine.reader() as s:
        for key, first in s.execute(
                select(DefinitionVersion.key, sqlfunc.min(DefinitionVersion.published_at))
                .group_by(DefinitionVersion.key).order_by(DefinitionVersion.key)).all():
            start = first_due(key, first, interval)
            if key in exclude or ctx.now < start:
                continue
            cycle = int((ctx.now - start) / interval)
            due[key] = (cycle + 1, start + cycle * interval)
    opened: list[str] = []
    skipped: list[str] = []
    for key in due:
        number_of_review, due_at = due[key]
        label = f"{due_at:%Y-%m-%d}"

        def work(session: Session, key: str = key, label: str = label) -> str:
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
                         f"due {label}"[:200],
                "period": label, "definition": key, "definition_title": d.title,
                "version": compiled.version, "content_hash": row.content_hash if row else None,
                "published_at": row.published_at if row else None, "owner_role": owner,
                "records_total": int(total), "records_open": int(still_open)})
            if owner != "process_owner":
                task_id = session.execute(select(Task.id).where(
                    Task.record_id == rec.id, OPEN_TASK,
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
                       body=f"The review of the workflow definition {key} due {label} "
                            f"(version {compiled.version}): is it still fit for use?")
            return rec.number

        done, number = ctx.once(ctx.schedule.name, f"{key}#{number_of_review}", work)
        (opened if done else skipped).append(number or key)
    return {"opened": opened, "already open": skipped}


def check_definition_review(params: Mapping[str, Any]) -> list[tuple[tuple, str]]:
    exclude = params.get("exclude", [])
    out: list[tuple[tuple, str]] = []
    if not isinstance(exclude, list) or not all(isinstance(k, str) for k in exclude):
        out.append((("exclude",), "exclude must list definition keys"))
    if "interval" in params:
        try:
            if parse_duration(str(params["interval"])) < timedelta(days=1):
                out.append((("interval",), "interval must be at least 1d"))
        except ValueError as exc:
            out.append((("interval",), str(exc)))
    return out
