"""The schedules file as validated configuration (every problem as file:line: message) and
the period keys; no database. Moved from tests/integration/test_scheduling.py,
test_periodic_reviews.py and test_kpi_report.py."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from workflow.scheduling.jobs import default_jobs
from workflow.scheduling.schedules import (
    ScheduleError,
    load_schedules,
    load_schedules_text,
    period_key,
)

JOBS = default_jobs()


def test_shipped_schedules_file_is_valid():
    """R-A11-12-3: the shipped schedules load; each names a known job."""
    schedules = load_schedules(jobs=JOBS)
    assert {"access_review_quarterly", "sla_sweep", "timers", "notifications"} <= set(schedules)
    assert all(s.job in JOBS for s in schedules.values())


def test_shipped_schedules_include_the_periodic_reviews():
    """R-A11-9-2: the shipped schedules open audit-trail and definition reviews and remind
    of expiring passwords."""
    jobs = {s.job: s for s in load_schedules(jobs=JOBS).values()}
    assert jobs["audit_trail_review"].period == "month"
    assert jobs["definition_review"].period == "day"  # due per definition (R-OPS-17)
    assert jobs["definition_review"].params == {"interval": "365d"}
    assert jobs["password_expiry_reminders"].params == {"days": 14}


def test_shipped_schedule_includes_the_monthly_report():
    s = load_schedules(jobs=JOBS)["kpi_report_monthly"]
    assert (s.job, s.period, s.params["role"]) == ("kpi_report", "month", "qa")


def test_schedule_errors_name_file_and_line():
    """Every problem of a schedules file is reported as file:line: message."""
    text = """schedules:
  reviews:
    job: access_review
    cron: "0 6 1 1,4,7,10 *"
    period: fortnight
    params: {systems: []}
  sweep:
    job: nonsense
    cron: "61 * * * *"
    period: hour
  timers:
    job: access_review
    every: minute
"""
    with pytest.raises(ScheduleError) as exc:
        load_schedules_text(text, "s.yaml", jobs=JOBS)
    got = {str(p) for p in exc.value.problems}
    assert "s.yaml:5: period must be one of: minute, hour, day, week, month, quarter, half_year, year " \
           "(the job runs once per period)" in got
    assert any(p.startswith("s.yaml:6: params.systems must list") for p in got)
    assert any(p.startswith("s.yaml:8: unknown job 'nonsense'") for p in got)
    assert any(p.startswith("s.yaml:9: invalid cron expression '61 * * * *'") for p in got)
    assert any(p.startswith("s.yaml:13: job 'access_review' must run once per period") for p in got)


@pytest.mark.parametrize("period, at, key", [
    ("quarter", datetime(2026, 3, 2, 9, tzinfo=UTC), "2026-Q1"),
    ("quarter", datetime(2026, 10, 1, 6, tzinfo=UTC), "2026-Q4"),
    ("month", datetime(2026, 3, 2, 9, tzinfo=UTC), "2026-03"),
    ("week", datetime(2026, 3, 2, 9, tzinfo=UTC), "2026-W10"),
    ("day", datetime(2026, 3, 2, 9, tzinfo=UTC), "2026-03-02"),
    ("hour", datetime(2026, 3, 2, 9, 59, tzinfo=UTC), "2026-03-02T09"),
])
def test_period_keys(period, at, key):
    assert period_key(period, at) == key


def test_shipped_schedules_name_no_person_and_no_invented_system():
    """R-OPS-18: the shipped file names no user (the demo's sam) and no system but this one;
    the access review covers this system (QMS_SYSTEM_NAME) by default."""
    from workflow.scheduling.schedules import schedules_file

    text = schedules_file().read_text(encoding="utf-8")
    body = "\n".join(line.split("#", 1)[0] for line in text.splitlines())  # not the comments
    for word in ("sam", "LIMS", "owner:", "SOP-"):
        assert word not in body, word
    review = load_schedules(jobs=JOBS)["access_review_quarterly"]
    assert "systems" not in review.params
