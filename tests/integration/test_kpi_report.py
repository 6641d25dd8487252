"""The monthly KPI report job (workflow/scheduling/jobs/kpi_report.py): last month's KPI table
queued to the quality leaders through the outbox, exactly once per month, also after a
scheduler was down. Time travels with workflow.clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from workflow import clock
from workflow.db.models import JobRun, OutboxMessage
from workflow.scheduling.jobs import default_jobs
from workflow.scheduling.schedules import load_schedules_text
from workflow.scheduling.service import run_due

JOBS = default_jobs()

MONTHLY = """
schedules:
  kpi_report_monthly:
    job: kpi_report
    cron: "0 6 1 * *"
    period: month
    params: {role: qa}
"""


def reports(engine) -> list[OutboxMessage]:
    with engine.reader() as s:
        rows = s.execute(select(OutboxMessage).where(OutboxMessage.kind == "kpi_report")
                         .order_by(OutboxMessage.id)).scalars().all()
        for r in rows:
            s.expunge(r)
    return rows


def test_monthly_kpi_report_goes_to_qa_once_per_month(engine, people):
    """R-A11-12-3: on the 1st the previous month's KPI table is queued once to the role qa;
    later ticks of the same month add nothing; the next month adds one more."""
    schedules = load_schedules_text(MONTHLY, jobs=JOBS)
    for t in ("A", "B"):
        engine.start("capa", people["emp"], {"title": t, "description": "d"})
    clock.set(datetime(2026, 4, 1, 6, 0, tzinfo=UTC))
    [line] = run_due(engine, schedules, jobs=JOBS)
    assert line.startswith("kpi_report_monthly [2026-04]") and "2026-03" in line
    [msg] = reports(engine)
    assert msg.recipient_role == "qa" and msg.status == "pending"
    assert msg.subject == "Quality KPI report Mar 2026"
    assert "Open CAPAs" in msg.body and "Training compliance" in msg.body
    open_line = next(line for line in msg.body.splitlines() if line.startswith("Open CAPAs"))
    assert open_line.split()[2] == "2"
    for _ in range(3):
        clock.advance(timedelta(hours=7))
        assert run_due(engine, schedules, jobs=JOBS) == []
    assert len(reports(engine)) == 1
    with engine.reader() as s:
        run = s.execute(select(JobRun).where(JobRun.job == "kpi_report_monthly",
                                             JobRun.period_key == "2026-04")).scalar_one()
        assert run.result["month"] == "2026-03" and "<table>" in run.result["html"]
    clock.set(datetime(2026, 5, 1, 6, 30, tzinfo=UTC))
    run_due(engine, schedules, jobs=JOBS)
    assert [m.subject for m in reports(engine)] == ["Quality KPI report Mar 2026",
                                                    "Quality KPI report Apr 2026"]


def test_a_scheduler_down_for_months_sends_one_report(engine, people):
    """After a scheduler was down from March to mid-July, one report (June) is sent, not
    one per missed month."""
    schedules = load_schedules_text(MONTHLY, jobs=JOBS)
    clock.set(datetime(2026, 7, 15, 12, 0, tzinfo=UTC))
    run_due(engine, schedules, jobs=JOBS)
    run_due(engine, schedules, jobs=JOBS)
    assert [m.subject for m in reports(engine)] == ["Quality KPI report Jun 2026"]
