"""Declared audit KPIs (definitions/audit.yaml and audit_finding.yaml ``kpis:``) on known
data, every figure worked out by hand (days after T0 = 2 Mar 2026 09:00; as of T0+100):

- audit A: preparation opened t=0, findings F1 (major) and F2 (observation) raised t=0,
  report signed t=5 (5 days: on schedule);
- audit B: preparation opened t=1, finding F3 (minor, repeat of F2) raised t=1, report
  signed t=41 (40 days: late);
- F2 closed t=10 (10 days), F3 closed t=21 (20 days); F1 still open, due t=90 (overdue).
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.conftest import T0
from tests.integration.test_audits import (  # noqa: F401 - org is a fixture
    FINDINGS,
    findings_of,
    new_audit,
    org,
    sig,
    to_conduct,
)
from workflow import clock
from workflow.kpi import Kpi, Period

SPRING = Period.months("2026-03", "2026-06")


def at(days: float) -> None:
    clock.set(T0 + timedelta(days=days))


def close_finding(engine, org, number):  # noqa: F811
    engine.fire(number, "respond", org["auditee"], {"response": "Corrected."})
    engine.fire(number, "accept_and_close", org["lead"], {
        "response_review": "Accepted.", "closure_evidence": "Seen."}, signature=sig(org["lead"]))


def report(engine, org, number):  # noqa: F811
    engine.fire(number, "issue_report", org["lead"], {
        "report_summary": "Findings raised.", "conclusion": "conforming_with_findings"},
        signature=sig(org["lead"]))


def test_audit_kpis_known_answers(engine, org):  # noqa: F811
    """R-AUD-14: audit programme on schedule, findings by classification, findings overdue,
    mean time to close findings and repeat findings, each on known data with its drill-down."""
    a = new_audit(engine, org).number
    to_conduct(engine, org, a)
    engine.fire(a, "complete_conduct", org["lead"], {
        "conduct_summary": "x", "findings": [{**f, "auditee": org["auditee"]} for f in FINDINGS]})
    f1, f2 = (r.number for r in findings_of(engine, a))
    at(1)
    b = new_audit(engine, org).number
    to_conduct(engine, org, b)
    minor = {**FINDINGS[1], "classification": "minor", "auditee": org["auditee"],
             "repeat_of": f2}
    engine.fire(b, "complete_conduct", org["lead"], {"conduct_summary": "x", "findings": [minor]})
    (f3,) = (r.number for r in findings_of(engine, b))
    at(5)
    report(engine, org, a)
    at(10)
    close_finding(engine, org, f2)
    at(21)
    close_finding(engine, org, f3)
    at(41)
    report(engine, org, b)
    at(100)

    with engine.reader() as session:
        k = Kpi(session, engine.registry, org["qa"], SPRING)
        m = k.metrics(["audit.on_schedule", "audit.by_type", "audit_finding.open",
                       "audit_finding.by_classification", "audit_finding.overdue",
                       "audit_finding.close_days", "audit_finding.repeat_share"])
        on = m["audit.on_schedule"]
        assert (on.numerator, on.denominator, on.value, on.status) == (1, 2, 0.5, "red")
        assert [r.number for r in k.drill("audit.on_schedule", "num")] == [a]
        assert m["audit.by_type"].groups == {"internal": 2, "supplier": 0}
        assert m["audit_finding.open"].value == 1
        assert m["audit_finding.by_classification"].groups == {
            "critical": 0, "major": 1, "minor": 1, "observation": 1}
        od = m["audit_finding.overdue"]
        assert (od.value, od.numerator, od.denominator) == (1, 1, 1)
        assert [r.number for r in k.drill("audit_finding.overdue", "num")] == [f1]
        cd = m["audit_finding.close_days"]
        assert (cd.denominator, cd.value) == (2, pytest.approx(15.0))
        rep = m["audit_finding.repeat_share"]
        assert (rep.numerator, rep.denominator) == (1, 3)
        assert [r.number for r in k.drill("audit_finding.repeat_share", "num")] == [f3]
