"""The inventory's and the vulnerabilities' declared KPIs on known data, worked out by hand
(definitions/system_inventory.yaml and vulnerability.yaml kpis:, docs/kpis.md).

Period March-June 2026, now and as of T0+60 = 1 May 09:00. Inventory: QMS (GxP, validated,
next periodic review 1 Apr: overdue), LIMS (GxP, in validation), BMS (not GxP, not required).
Vulnerabilities, all registered at T0 (2 Mar): v1 critical (due 9 Mar) found not applicable
at T0+2; v2 high (due 1 Apr) still in assessment; v3 medium accepted at T0+1 until 1 Apr,
reopened by the timer at T0+31 (new deadline 90 days later, 1 Jul); v4 low (due 29 Aug).
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.factories import sign
from tests.integration.test_kpi import at, kpi
from tests.integration.test_system_inventory import ENTRY
from tests.integration.test_vulnerability import ADVISORY


@pytest.fixture
def staff(people, make_user):
    return {**people,
            "sam": make_user("sam", "system_owner", "employee", full_name="Sam System-Owner"),
            "ivy": make_user("ivy", "isms", "employee", full_name="Ivy ISMS")}


@pytest.fixture
def secops_set(engine, staff):
    at(0)
    systems = {}
    for name, over in (("QMS", {"next_periodic_review": "2026-04-01"}),
                       ("LIMS", {"validation_status": "in_validation",
                                 "next_periodic_review": "2027-01-01"}),
                       ("BMS", {"gxp_relevant": False, "part11_applicable": False,
                                "annex11_applicable": False, "validation_status": "not_required",
                                "validation_document": None,
                                "next_periodic_review": "2026-12-01"})):
        r = engine.start("system_inventory", "sam", {"title": name})
        engine.fire(r.number, "submit", "sam", {**{k: v for k, v in ENTRY.items()
                                                   if k != "title"}, **over})
        engine.fire(r.number, "approve", "quinn", signature=sign("quinn"))
        systems[name] = r.number
    v = {}
    for key, sev in (("v1", "critical"), ("v2", "high"), ("v3", "medium"), ("v4", "low")):
        v[key] = engine.start("vulnerability", "ivy", {**ADVISORY, "severity": sev,
                                                       "system": systems["QMS"]}).number
    at(1)
    engine.fire(v["v3"], "accept_risk", "sam", {
        "applicable": True, "assessment": "Admin network only.", "gxp_system": True,
        "validated_state_risk": "none", "acceptance_rationale": "Fix in next release.",
        "compensating_controls": "Network segmentation.", "acceptance_expiry": "2026-04-01"},
        signature=sign("sam"))
    engine.fire(v["v3"], "accept_risk", "ivy", signature=sign("ivy"))
    at(2)
    engine.fire(v["v1"], "not_applicable", "ivy", {
        "applicable": False, "assessment": "Module not installed."}, signature=sign("ivy"))
    at(31)
    assert engine.run_due_timers() == [f"{v['v3']}: acceptance_expired -> assessment"]
    at(60)
    return {**systems, **v}


def test_vulnerability_kpis_known_answers(engine, secops_set):
    """R-VUL-20: open by severity, open age, open past the deadline, remediation within the
    severity deadline, risk acceptances and expired ones, on known data."""
    s = secops_set
    k = kpi(engine, "ivy")
    m = k.metrics(["vulnerability.open_by_severity", "vulnerability.open_critical_high",
                   "vulnerability.open_age", "vulnerability.overdue",
                   "vulnerability.patch_compliance", "vulnerability.acceptances",
                   "vulnerability.acceptances_expired"])
    obs = m["vulnerability.open_by_severity"]
    assert obs.value == 3
    assert obs.groups == {"critical": 0, "high": 1, "medium": 1, "low": 1}
    assert m["vulnerability.open_critical_high"].value == 1
    assert m["vulnerability.open_age"].value == pytest.approx(60.0)
    od = m["vulnerability.overdue"]
    assert (od.numerator, od.denominator) == (1, 3)
    assert [r.number for r in k.drill("vulnerability.overdue", "num")] == [s["v2"]]
    # due in March-June: v1 (9 Mar, closed 4 Mar: hit) and v2 (1 Apr, open: miss); v3's
    # deadline moved to 1 Jul when it reopened, v4's is in August
    pc = m["vulnerability.patch_compliance"]
    assert (pc.numerator, pc.denominator, pc.value) == (1, 2, 0.5)
    assert m["vulnerability.acceptances"].value == 1
    ae = m["vulnerability.acceptances_expired"]
    assert ae.numerator == 1
    assert [r.number for r in k.drill("vulnerability.acceptances_expired", "num")] == [s["v3"]]
    assert engine.get(s["v3"]).data["due_date"] == "2026-07-01"


def test_acceptances_expiring_within_30_days(engine, secops_set):
    """R-VUL-20 R-KPI-6: "risk acceptances expiring" counts the open vulnerabilities whose
    acceptance expiry falls on the as-of day or in the 30 days after it: v3 (accepted at T0+1
    until 1 Apr) as of 10 Mar and as of 1 Apr, not as of 1 Mar (the expiry is 31 days away)
    nor as of 2 Apr (expired: the other KPI counts it)."""
    s = secops_set
    key = "vulnerability.acceptances_expiring"

    def as_of(day: int) -> list[str]:
        k = kpi(engine, "ivy", as_of=datetime(2026, 3 if day < 32 else 4, day if day < 32
                                              else day - 31, 12, tzinfo=UTC))
        assert k.metrics([key])[key].value == len(k.drill(key, "num"))
        return [r.number for r in k.drill(key, "num")]

    assert as_of(1) == []
    assert as_of(10) == [s["v3"]]
    assert as_of(32) == [s["v3"]]  # 1 Apr, the expiry day itself
    assert as_of(33) == []         # 2 Apr


def test_inventory_kpis_known_answers(engine, secops_set):
    """R-SYS-20: systems by GAMP category, overdue periodic reviews, GxP systems without a
    current validation report and the validated share, on known data; as of 1 Mar nothing
    was registered yet."""
    s = secops_set
    k = kpi(engine, "ivy")
    m = k.metrics(["system_inventory.systems", "system_inventory.periodic_review_overdue",
                   "system_inventory.without_validation_report",
                   "system_inventory.validated_share"])
    assert m["system_inventory.systems"].value == 3
    pr = m["system_inventory.periodic_review_overdue"]
    assert (pr.numerator, pr.denominator) == (1, 3)
    assert [r.number for r in k.drill("system_inventory.periodic_review_overdue", "num")] == \
        [s["QMS"]]
    assert m["system_inventory.without_validation_report"].value == 1
    assert [r.number for r in k.drill("system_inventory.without_validation_report")] == \
        [s["LIMS"]]
    vs = m["system_inventory.validated_share"]
    assert (vs.numerator, vs.denominator, vs.value) == (1, 2, 0.5)
    # as of the day before the inventory existed: nothing open
    past = kpi(engine, "ivy", as_of=datetime(2026, 3, 1, 9, tzinfo=UTC))
    assert past.metrics(["system_inventory.systems"])["system_inventory.systems"].value == 0


def test_access_review_overdue_is_declared(engine, staff):
    """R-SYS-21: the access review declares its overdue KPI (a system whose review is
    overdue)."""
    k = kpi(engine, "ivy")
    assert k.metrics(["access_review.overdue"])["access_review.overdue"].numerator == 0
