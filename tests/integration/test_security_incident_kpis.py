"""The security incident KPIs declared in definitions/security_incident.yaml (``kpis:``,
docs/kpis.md "Declared KPIs") on a crafted set, every figure worked out by hand.

T0 = 2 Mar 2026 09:00 UTC; days are counted from T0:

| inc | reported | occurred (detect) | triage: severity, category, GxP | contained | recovered | end |
|---|---|---|---|---|---|---|
| i1 | 0 | -0.25 (0.25 d) | 0.5: high, account_compromise, no | 1 (1 d) | 3 (3 d) | closed 4 |
| i2 | 1 | 0.25 (0.75 d) | 1: critical, malware, yes | 3 (2 d) | 6 (5 d) | in review |
| i3 | 2 | 1.5 (0.5 d, given at triage) | 2: low, malware, no | - | - | containment |
| i4 | 2 | - (none) | - | - | - | dismissed at 2 |

contained = entered eradication (contain: from the report), recovered = entered review
(resolve: from the report).
As of T0+60 (1 May 09:00), period March-June; due = reported + 30 d.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.conftest import T0
from tests.factories import sign
from workflow import clock
from workflow.kpi import Kpi, Period

SPRING = Period.months("2026-03", "2026-06")
KEYS = ["security_incident.open", "security_incident.by_severity",
        "security_incident.by_category", "security_incident.mean_time_to_detect",
        "security_incident.mean_time_to_contain", "security_incident.mean_time_to_resolve",
        "security_incident.gxp_share", "security_incident.overdue"]


def at(days: float) -> None:
    clock.set(T0 + timedelta(days=days))


def iso(days: float) -> str:
    return (T0 + timedelta(days=days)).isoformat()


@pytest.fixture
def incidents(engine, make_user):
    make_user("emma", "employee")
    make_user("ivy", "isms", "employee")
    make_user("hank", "employee")
    make_user("quinn", "qa", "employee")
    system = engine.start("system_inventory", "ivy", {"title": "LIMS"}).number

    def report(day, **extra):
        at(day)
        return engine.start("security_incident", "emma", {
            "title": f"Incident of day {day}", "description": "What happened.", **extra}).number

    def triage(n, day, severity, category, gxp, **extra):
        at(day)
        engine.fire(n, "triage", "ivy", {
            "severity": severity, "category": category, "affected_systems": [system],
            "gxp_data_affected": gxp, "personal_data_affected": False,
            "aware_at": iso(day), "handler": "hank", **extra})

    def step(n, day, name, data):
        at(day)
        engine.fire(n, name, "hank", data)

    i1 = report(0, occurred_at=iso(-0.25))
    triage(i1, 0.5, "high", "account_compromise", False)
    step(i1, 1, "contained", {"containment_actions": "Account locked."})
    step(i1, 3, "recovered", {"eradication_actions": "Reset.", "recovery_actions": "Back."})
    at(4)
    engine.fire(i1, "close", "ivy", {"root_cause": "No MFA.", "lessons_learned": "MFA."},
                signature=sign("ivy"))
    i2 = report(1, occurred_at=iso(0.25))
    triage(i2, 1, "critical", "malware", True)
    step(i2, 3, "contained", {"containment_actions": "Isolated."})
    step(i2, 6, "recovered", {"eradication_actions": "Reimaged.", "recovery_actions": "Restored.",
                              "data_integrity_verified": True})
    i3 = report(2)
    triage(i3, 2, "low", "malware", False, occurred_at=iso(1.5))
    i4 = report(2)
    engine.fire(i4, "dismiss", "ivy", {"triage_rationale": "Awareness campaign test mail."},
                signature=sign("ivy"), reason="not an incident")
    at(60)
    return {"i1": i1, "i2": i2, "i3": i3, "i4": i4}


def test_security_incident_kpis_on_known_data(engine, incidents):
    """R-INC-30 R-INC-31 R-INC-32 R-INC-33: incidents by severity and category, mean time to
    detect / contain / resolve from the declared milestones, the share with GxP impact and the
    overdue ones, each checked against the table in the module docstring."""
    i = incidents
    session = engine.reader().__enter__()
    k = Kpi(session, engine.registry, "ivy", SPRING)
    m = k.metrics(KEYS)
    assert m["security_incident.open"].value == 2  # i2 (review), i3 (containment)
    sev = m["security_incident.by_severity"]
    assert sev.groups == {"low": 1, "medium": 0, "high": 1, "critical": 1, "(none)": 1}
    cat = m["security_incident.by_category"]
    assert cat.groups == {"account_compromise": 1, "malware": 2, "data_loss": 0,
                          "unauthorised_change": 0, "availability": 0, "other": 0, "(none)": 1}
    assert [r.number for r in k.drill("security_incident.by_category", group="malware")] == \
        [i["i2"], i["i3"]]
    # detect: occurred -> reported: 0.25, 0.75, 0.5 d (i4 has no occurrence time)
    mttd = m["security_incident.mean_time_to_detect"]
    assert mttd.value == pytest.approx(0.5)
    # contain: reported -> eradication: i1 1 d, i2 2 d; resolve: -> review: 3 d, 5 d
    assert m["security_incident.mean_time_to_contain"].value == pytest.approx(1.5)
    assert m["security_incident.mean_time_to_resolve"].value == pytest.approx(4.0)
    assert m["security_incident.mean_time_to_contain"].denominator == 2
    # GxP impact: of the triaged i1, i2, i3, one (i2)
    gxp = m["security_incident.gxp_share"]
    assert (gxp.numerator, gxp.denominator) == (1, 3)
    assert [r.number for r in k.drill("security_incident.gxp_share", "num")] == [i["i2"]]
    # overdue: i2 due 1 Apr 09:00, i3 due 2 Apr 09:00, both open on 1 May
    od = m["security_incident.overdue"]
    assert (od.numerator, od.denominator) == (2, 2)
