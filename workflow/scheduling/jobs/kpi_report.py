"""The monthly KPI report (docs/kpis.md): last month's KPI table to the quality leaders."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session

from workflow.kpi import Kpi, Period, add_months, month_start, render_report
from workflow.scheduling.context import JobContext


def kpi_report(ctx: JobContext) -> dict[str, Any]:
    """Render the previous month's KPI table and queue it to the quality leaders, once per
    month (the period's claim row is written with the message; docs/kpis.md)."""
    end = month_start(ctx.now)
    period = Period(add_months(end, -1), end)
    role = str(ctx.params.get("role", "qa"))

    def work(session: Session) -> dict[str, Any]:
        k = Kpi(session, ctx.engine.registry, ctx.system(session).username, period,
                as_of=min(ctx.now, period.end))
        text, html = render_report(k)
        ctx.outbox(session, kind="kpi_report", role=role,
                   subject=f"Quality KPI report {period.label}", body=text)
        return {"month": period.start.strftime("%Y-%m"), "to": role, "html": html}

    done, result = ctx.once(ctx.schedule.name, ctx.period, work)
    return {"month": result["month"], "to": role} if done else {}


def check_kpi_report(params: Mapping[str, Any]) -> list[tuple[tuple, str]]:
    if "role" in params and not re.match(r"^[a-z][a-z0-9_]{0,39}$", str(params["role"])):
        return [(("role",), "role must be a role name, e.g. qa")]
    return []
