"""Open one record of a workflow per period (e.g. the half-yearly management review), for
the period just ended: its first and last day go into the record's two period fields, and the
definition's on-enter actions (e.g. ``snapshot``) do the rest in the same unit."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session

from workflow.errors import WorkflowError
from workflow.scheduling.context import JobContext
from workflow.scheduling.schedules import period_key, period_start

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


def periodic_record(ctx: JobContext) -> dict[str, Any]:
    """Open one record of params.workflow per period, covering the period before it."""
    if ctx.schedule.period is None:
        raise WorkflowError("periodic_record needs a cron and a period")
    period = ctx.schedule.period
    p = ctx.params
    fields = list(p.get("period_fields", ["period_from", "period_to"]))
    end = period_start(period, ctx.now)
    start = period_start(period, end - timedelta(microseconds=1))
    covered = period_key(period, start)
    title = str(p.get("title", "{period}")).replace("{period}", covered)[:200]

    def work(session: Session) -> str:
        rec = ctx.start_record(session, str(p["workflow"]), {
            "title": title, fields[0]: start.date(),
            fields[1]: (end - timedelta(days=1)).date()})
        return rec.number

    done, number = ctx.once_for_period("record", work)
    return {"opened": [number] if done else [], "covers": covered}


def check_periodic_record(params: Mapping[str, Any]) -> list[tuple[tuple, str]]:
    problems: list[tuple[tuple, str]] = []
    if not _NAME.match(str(params.get("workflow", ""))):
        problems.append((("workflow",), "workflow must name a workflow, e.g. management_review"))
    fields = params.get("period_fields", ["period_from", "period_to"])
    if not (isinstance(fields, list) and len(fields) == 2 and all(_NAME.match(str(f))
                                                                  for f in fields)):
        problems.append((("period_fields",), "period_fields must be two date field names"))
    return problems
