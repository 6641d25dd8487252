"""KPI specs, thresholds, periods and the cohort table (workflow/kpi, docs/kpis.md). No
database: the numbers themselves are tested on crafted data in tests/integration/test_kpi.py."""

from __future__ import annotations

from datetime import UTC, datetime

from workflow.kpi import SPECS, Period, load_thresholds, rate
from workflow.kpi.cohorts import COHORTS


def test_thresholds_are_configurable(tmp_path, monkeypatch):
    path = tmp_path / "t.yaml"
    path.write_text("capa.on_time: {better: higher, green: 0.5, amber: 0.2}\n")
    monkeypatch.setenv("QMS_KPI_THRESHOLDS", str(path))
    t = load_thresholds()
    assert rate(0.6, t["capa.on_time"]) == "green"
    assert rate(0.3, t["capa.on_time"]) == "amber"
    assert rate(0.1, t["capa.on_time"]) == "red"
    assert rate(3, t["sec.lockouts"]) == "amber"


def test_every_metric_has_exactly_one_cohort_function():
    assert sorted(COHORTS) == sorted(SPECS)


def test_period_of_months_is_half_open_in_utc():
    p = Period.months("2026-06", "2026-03")  # either order
    assert (p.start, p.end) == (datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 7, 1, tzinfo=UTC))
    assert p.month_keys() == ["2026-03", "2026-04", "2026-05", "2026-06"]
    assert p.label == "Mar 2026 – Jun 2026"
    dec = Period.last_months(2, now=datetime(2026, 1, 15, tzinfo=UTC))
    assert dec.month_keys() == ["2025-12", "2026-01"] and dec.label == "Dec 2025 – Jan 2026"
