"""Gap analysis from the requirements catalogue (definitions/gap_analysis.yaml,
workflow/validation/gap.py): rows pre-filled, fixed, assessed, submitted, signed."""

from __future__ import annotations

import pytest

from tests.factories import sign
from workflow.errors import GuardFailed, NotAuthorized, PopulationFixed, ValidationFailed
from workflow.validation import gap
from workflow.validation.catalogue import load_catalogue


@pytest.fixture
def analyst(make_user):
    return make_user("rita", "risk_owner", full_name="Rita Risk")


def test_gap_analysis_starts_with_a_row_per_requirement_of_the_frameworks(engine, analyst):
    """R-RSK-11: the template lists every catalogue requirement of the chosen frameworks
    (id, clause, text) as the record's fixed rows; an unknown framework is refused."""
    r = gap.start(engine, analyst, "Part 11 gap analysis", ["part11"])
    rows = engine.get(r.number).data["requirements"]
    part11 = [q for q in load_catalogue().sorted()
              if q.id.startswith("R-P11-") or "21 CFR 11" in q.clause]
    assert [x["ref"] for x in rows] == [q.id for q in part11]
    assert rows[0] == {"ref": part11[0].id, "clause": part11[0].clause, "text": part11[0].text}
    assert engine.get(r.number).data["frameworks"] == "21 CFR Part 11"
    with pytest.raises(ValidationFailed, match="choose from part11, annex11, iso27001"):
        gap.start(engine, analyst, "x", ["sox"])
    both = gap.template_rows(["annex11", "iso27001"])
    assert len(both) == len({x["ref"] for x in both})  # each requirement once


def test_gap_analysis_rows_are_fixed_assessed_and_approved(engine, analyst, people):
    """R-RSK-11 R-RSK-12: progress is saved as often as needed; the rows themselves cannot
    be changed, added or removed; submitting needs every status and, for gaps, the gap and
    its risk; QA approves with a signature; only risk owners and QA may start one."""
    with pytest.raises(NotAuthorized):
        gap.start(engine, people["emp"], "x", ["iso27001"])
    r = gap.start(engine, analyst, "ISO 27001 gaps", ["iso27001"])
    rows = engine.get(r.number).data["requirements"]
    rows[0].update(status="partly", gap="No yearly review", risk="medium")
    engine.fire(r.number, "save_progress", analyst, {"requirements": rows})
    assert engine.get(r.number).data["requirements"][0]["status"] == "partly"
    forged = [dict(x) for x in rows]
    forged[1]["text"] = "Something easier"
    with pytest.raises(PopulationFixed):
        engine.fire(r.number, "save_progress", analyst, {"requirements": forged})
    with pytest.raises(PopulationFixed):
        engine.fire(r.number, "save_progress", analyst, {"requirements": rows[1:]})
    with pytest.raises(GuardFailed, match="Every requirement needs a status"):
        engine.fire(r.number, "submit", analyst, {"requirements": rows, "summary": "s"})
    for x in rows[1:]:
        x["status"] = "met"
    rows[1].update(status="not_met")
    with pytest.raises(GuardFailed, match="gap and the gap's risk"):
        engine.fire(r.number, "submit", analyst, {"requirements": rows, "summary": "s"})
    rows[1].update(gap="No ISMS scope", risk="high")
    engine.fire(r.number, "submit", analyst, {"requirements": rows, "summary": "Two gaps."})
    done = engine.fire(r.number, "approve", people["qa"], signature=sign(people["qa"]))
    assert done.state == "approved"
