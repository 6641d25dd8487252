"""KPIs declared in definitions (deviation.yaml kpis:, docs/kpis.md "Declared KPIs") on the
crafted deviation set of test_kpi.py, every figure worked out by hand:

- d1 created T0 (2 Mar 09:00), triaged minor T0+1, investigation submitted and closed T0+5;
- d2 created T0, triaged major T0+3, closed T0+10 (raises a CAPA);
- d3 created 31 Mar 23:30, d4 1 Apr 00:30, both still reported (untriaged);
- due date (due_current) = created + 30 d; now and as of: T0+60 = 1 May 09:00.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from tests.conftest import T0
from tests.integration.test_kpi import SPRING, at, deviation_set, kpi, org  # noqa: F401 - fixtures
from workflow.kpi import Period, snapshot

DECLARED = ["deviation.open", "deviation.by_classification", "deviation.critical_share",
            "deviation.overdue", "deviation.triaged_in_time", "deviation.investigation_days",
            "deviation.on_time"]


def test_declared_deviation_kpis_known_answers(engine, deviation_set):  # noqa: F811
    """R-KPI-1, R-KPI-3: each generic kind on known data."""
    s = deviation_set
    k = kpi(engine, "quinn")
    m = k.metrics(DECLARED)
    # open at 1 May: d3 and d4
    assert m["deviation.open"].value == 2
    assert [r.number for r in k.drill("deviation.open")] == [s["d3"], s["d4"]]
    # created in March-June: 4; by classification (current value; untriaged = (none))
    assert m["deviation.by_classification"].value == 4
    assert m["deviation.by_classification"].groups == {"minor": 1, "major": 1, "critical": 0,
                                                       "(none)": 2}
    assert [r.number for r in k.drill("deviation.by_classification", group="(none)")] == \
        [s["d3"], s["d4"]]
    assert [r.number for r in k.drill("deviation.by_classification", group="major")] == \
        [s["d2"]]
    # of those that reached investigation (d1, d2), none critical: 0 of 2, green (<= 5 %)
    cs = m["deviation.critical_share"]
    assert (cs.numerator, cs.denominator, cs.value, cs.status) == (0, 2, 0.0, "green")
    # open d3 (due 30 Apr 23:30) and d4 (due 1 May 00:30) are both past due at 09:00
    od = m["deviation.overdue"]
    assert (od.value, od.numerator, od.denominator, od.status) == (2, 2, 2, "red")
    # triage milestone: d1 1 d, d2 3 d; within 2 d: d1 only -> 50 %, red (< 75 %)
    tr = m["deviation.triaged_in_time"]
    assert (tr.numerator, tr.denominator, tr.value, tr.status) == (1, 2, 0.5, "red")
    assert [r.number for r in k.drill("deviation.triaged_in_time", "num")] == [s["d1"]]
    # investigation milestone: d1 T0+1 -> T0+5 = 4 d, d2 T0+3 -> T0+10 = 7 d; mean 5.5
    inv = m["deviation.investigation_days"]
    assert (inv.denominator, inv.value, inv.status) == (2, pytest.approx(5.5), "green")
    # major/critical due in the period (d2, due 1 Apr) closed on time (T0+10)
    ot = m["deviation.on_time"]
    assert (ot.numerator, ot.denominator, ot.value) == (1, 1, 1.0)
    assert [r.number for r in k.drill("deviation.on_time")] == [s["d2"]]


def test_declared_kpis_as_of_in_the_past_reproduce(engine, deviation_set):  # noqa: F811
    """R-KPI-3: as of T0+4 (6 Mar 09:00) the declared KPIs are what they were then: d1 and
    d2 open, both triaged (1 d, 3 d), no investigation finished yet."""
    k = kpi(engine, "quinn", as_of=datetime(2026, 3, 6, 9, tzinfo=UTC))
    m = k.metrics(DECLARED)
    assert m["deviation.open"].value == 2
    assert m["deviation.by_classification"].value == 2
    assert (m["deviation.triaged_in_time"].numerator,
            m["deviation.triaged_in_time"].denominator) == (1, 2)
    assert m["deviation.investigation_days"].value is None
    assert m["deviation.investigation_days"].note == "nothing in the period"
    assert (m["deviation.overdue"].numerator, m["deviation.overdue"].denominator) == (0, 2)
    assert m["deviation.on_time"].denominator == 0 and m["deviation.on_time"].value is None


def test_declared_kpis_count_only_what_the_viewer_sees(engine, deviation_set):  # noqa: F811
    """R-KPI-3, R-KPI-4: someone without a deviation role sees no section and counts 0."""
    otto = kpi(engine, "otto")
    assert otto.declared_sections() == []
    assert otto.metric("deviation.open").value == 0
    quinn = kpi(engine, "quinn")
    sections = {wf: keys for wf, _, keys in quinn.declared_sections()}
    assert sections["deviation"] == DECLARED


def test_declared_thresholds_are_overridable(engine, deviation_set, tmp_path):  # noqa: F811
    """R-KPI-4: QMS_KPI_THRESHOLDS wins over the declaration's threshold:."""
    from workflow.kpi import load_thresholds
    path = tmp_path / "t.yaml"
    path.write_text("deviation.triaged_in_time: {better: higher, green: 0.5, amber: 0.3}\n")
    k = kpi(engine, "quinn", thresholds=load_thresholds(path))
    assert k.metric("deviation.triaged_in_time").status == "green"
    assert k.threshold("deviation.triaged_in_time") == {"better": "higher", "green": 0.5,
                                                         "amber": 0.3}
    assert kpi(engine, "quinn").metric("deviation.triaged_in_time").status == "red"


def test_snapshot_freezes_every_metric_with_trend(engine, deviation_set):  # noqa: F811
    """R-KPI-5: snapshot() gives built-in and declared metrics as JSON-ready data with the
    trend over the previous periods, and the same figures when asked again."""
    with engine.reader() as session:
        snap = snapshot(session, SPRING, viewer="quinn", registry=engine.registry, trend=2)
        again = snapshot(session, SPRING, as_of=datetime.fromisoformat(snap["as_of"]),
                         viewer="quinn", registry=engine.registry, trend=2)
        system = snapshot(session, Period.months("2026-03", "2026-03"),
                          registry=engine.registry, trend=0)
    json.dumps(snap)
    assert snap == again
    assert snap["as_of"] == (T0.replace(month=5, day=1)).isoformat()
    assert snap["period"]["months"] == ["2026-03", "2026-04", "2026-05", "2026-06"]
    ms = snap["metrics"]
    assert {"capa.open", "dev.triage_days", "sec.failed_logins", *DECLARED} <= set(ms)
    tr = ms["deviation.triaged_in_time"]
    assert (tr["value"], tr["numerator"], tr["denominator"], tr["status"]) == (0.5, 1, 2, "red")
    assert tr["threshold"] == {"better": "higher", "green": 0.9, "amber": 0.75}
    assert ms["deviation.by_classification"]["groups"]["(none)"] == 2
    assert ms["dev.triage_days"]["value"] == pytest.approx(2.0)
    # the two previous 4-month periods (Jul-Oct 2025, Nov 2025-Feb 2026): nothing yet
    assert [t["start"][:7] for t in tr["trend"]] == ["2025-07", "2025-11"]
    assert [t["value"] for t in ms["deviation.open"]["trend"]] == [0, 0]
    # no viewer: the system account, every record; March only, as of its end
    assert system["viewer"] == "system"
    assert system["metrics"]["deviation.by_classification"]["value"] == 3
    # as of 1 Apr 00:00: d1 and d2 closed, d3 open, d4 not yet reported
    assert system["metrics"]["deviation.open"]["value"] == 1
