"""The risk register (workflow/queries/risks.py): risks across assessments, by priority,
untreated and overdue treatments, as the viewer may see them."""

from __future__ import annotations

from datetime import date

from tests.factories import sign
from tests.integration.test_risk_assessment import open_ra, planned
from workflow.identity import users as identity
from workflow.queries import risks


def register(engine, username, **kw):
    with engine.reader() as s:
        u = identity.get_user(s, username)
        return risks.register(s, engine.registry, u, identity.roles_of(s, u),
                              today=kw.pop("today", date(2026, 3, 2)), **kw)


def test_register_lists_open_risks_by_priority_untreated_and_overdue(engine, people):
    """R-RSK-9 R-RSK-10: one row per risk across assessments, highest priority and score
    first; risks without treatment and mitigations past their due date are flagged; cancelled
    assessments are left out; filters by priority, status and overdue."""
    a = planned(engine, people)  # 50 high (mitigate, due 2026-06-30), 16 medium (accept)
    engine.fire(a, "approve", people["qa"], signature=sign(people["qa"]))
    b = open_ra(engine, people, risks=[{"hazard": "Power loss", "severity": 3,
                                        "occurrence": 2, "detection": 1}]).number
    c = open_ra(engine, people).number
    engine.fire(c, "cancel", people["qa"], reason="duplicate", signature=sign(people["qa"]))
    rows = register(engine, people["qa"])
    assert [(r.number, r.score, r.priority, r.status) for r in rows] == [
        (a, 50, "high", "mitigating"), (a, 16, "medium", "accepted"),
        (b, 6, "low", "untreated")]
    assert rows[0].links[0][0].startswith("CAPA-") and not rows[0].overdue
    assert risks.summary(rows) == {"high": 1, "medium": 1, "low": 1, "untreated": 1,
                                   "overdue": 0}
    late = register(engine, people["qa"], today=date(2026, 7, 1), overdue=True)
    assert [(r.number, r.hazard) for r in late] == [(a, "Audit trail can be switched off")]
    assert [r.number for r in register(engine, people["qa"], priority="low")] == [b]
    assert [r.row for r in register(engine, people["qa"], status="accepted")] == [2]
    assert [r.number for r in register(engine, people["qa"], text="power")] == [b]


def test_register_shows_only_assessments_the_viewer_may_see(engine, people, make_user):
    """R-RSK-9 R-P11-10d-2: the register applies the one visibility rule."""
    open_ra(engine, people)
    outsider = make_user("otto", "capa_owner")
    assert register(engine, outsider) == []
    assert len(register(engine, people["emp"])) == 2  # the initiator sees their own


def test_declared_risk_kpis_on_known_data(engine, people):
    """R-RSK-13: the record-level computed fields (highest priority, risks without
    treatment, next treatment due) carry the declared KPIs: open assessments by highest
    priority, the share with untreated risks, assessments with an overdue treatment."""
    from datetime import UTC, datetime

    from workflow import clock
    from workflow.kpi import Period, snapshot

    a = planned(engine, people)
    engine.fire(a, "approve", people["qa"], signature=sign(people["qa"]))
    rec = engine.get(a).data
    assert (rec["highest_priority"], rec["has_untreated"], rec["next_treatment_due"]) == (
        "high", False, "2026-06-30")
    open_ra(engine, people, risks=[{"hazard": "Power loss", "severity": 3, "occurrence": 2,
                                    "detection": 1}])
    clock.set(datetime(2026, 7, 15, tzinfo=UTC))
    with engine.reader() as s:
        m = snapshot(s, Period.months("2026-07", "2026-07"), registry=engine.registry,
                     keys=["risk_assessment.open_by_priority",
                           "risk_assessment.without_treatment",
                           "risk_assessment.treatments_overdue"], trend=0)["metrics"]
    assert m["risk_assessment.open_by_priority"]["value"] == 2
    assert (m["risk_assessment.without_treatment"]["numerator"],
            m["risk_assessment.without_treatment"]["denominator"]) == (1, 2)
    assert m["risk_assessment.treatments_overdue"]["value"] == 1
