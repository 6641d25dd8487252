"""``record_date_due``: a reminder per record when a date field of the record falls due (run
per record: ``for_each_record`` in the schedules file), once per record and period. The
shipped use: the periodic review of each computerised system of the inventory (EU GMP Annex
11 §11), due on the entry's ``next_periodic_review``, to its system owner."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from sqlalchemy.orm import Session

from workflow.engine.context import user_id
from workflow.errors import WorkflowError
from workflow.scheduling.context import JobContext
from workflow.spec.model import parse_duration


def record_date_due(ctx: JobContext) -> dict[str, Any]:
    """Remind the person a user field names (``params.notify_field``, else
    ``params.role``) when the record's ``params.date_field`` is within ``params.before``
    (default 30d) or past; once per record and period. Runs per record only."""
    rec = ctx.record
    if rec is None:
        raise WorkflowError("record_date_due runs per record: give its schedule "
                            "for_each_record")
    field = str(ctx.params["date_field"])
    raw = rec.data.get(field)
    if not raw:
        return {}
    due = date.fromisoformat(str(raw)[:10])
    before = parse_duration(str(ctx.params.get("before", "30d")))
    if due > (ctx.now + before).date():
        return {}
    who = rec.data.get(str(ctx.params.get("notify_field") or ""))
    spec = rec.definition.fields.get(field)
    label = spec.label if spec is not None and spec.label else field

    def work(session: Session) -> str:
        uid = user_id(session, str(who)) if who else None
        state = "overdue since" if due < ctx.now.date() else "due on"
        ctx.outbox(session, kind="generic", record_id=rec.id, user_id=uid,
                   role=None if uid else ctx.params.get("role"),
                   subject=f"{rec.number}: {label} {state} {due.isoformat()}",
                   body=f"{rec.title}: {label} {state} {due.isoformat()} ({ctx.reason}).")
        return rec.number

    done, number = ctx.once_for_record(work)
    return {"reminded": [number] if done else []}


def check_record_date_due(params: Mapping[str, Any]) -> list[tuple[tuple, str]]:
    out: list[tuple[tuple, str]] = []
    if not isinstance(params.get("date_field"), str):
        out.append((("date_field",), "date_field: the record's date field that falls due"))
    if "before" in params:
        try:
            parse_duration(str(params["before"]))
        except (ValueError, KeyError):
            out.append((("before",), f"before: not a duration {params['before']!r} (e.g. 30d)"))
    if not (params.get("notify_field") or params.get("role")):
        out.append(((), "give notify_field (a user field) or role to remind"))
    return out
