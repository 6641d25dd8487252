"""Training gate (Part 11 §11.10(i)): a step can require current training on a document."""

from __future__ import annotations

import pytest

from tests.factories import sign
from workflow.errors import TrainingRequired
from workflow.identity import users as identity
from workflow.kpi import Kpi
from workflow.spec.load import DEFAULT_DEFINITIONS_DIR, load_text

GATED = """\
key: sop_release
title: SOP release
prefix: SOPR
roles:
  qa: Quality Assurance
  employee: Employee
fields:
  title: {type: string}
start:
  roles: [employee]
  edits: [title]
  requires: [title]
states:
  draft: {initial: true, owner: initiator}
  review:
    owner: qa
    training: [{document: SOP-QA-1}]
  released: {final: true, outcome: done}
transitions:
  - name: submit
    from: draft
    to: review
    roles: [initiator]
    training: [{document: SOP-12, version: "5"}]
  - name: release
    from: review
    to: released
    roles: [qa]
    signature: {meaning: Approved, roles: [qa]}
"""


def complete_training(engine, trainee, document, version):
    r = engine.start("training_assignment", "tina", {
        "title": f"{document} v{version}", "document": document, "document_version": version,
        "trainee": trainee, "due_date": "2026-04-01"})
    engine.fire(r.number, "complete", trainee, signature=sign(trainee))
    engine.fire(r.number, "verify", "tina", signature=sign("tina"))
    assert engine.get(r.number).outcome == "done"


@pytest.fixture
def gated(engine, make_user):
    make_user("tina", "trainer", "training_coordinator", "employee")
    make_user("emma", "employee")
    make_user("quinn", "qa", "employee")
    with engine.unit() as s:
        engine.registry.publish(s, load_text(GATED, "sop_release.yaml"), identity.system_user(s))
    return engine


def test_transition_refused_until_training_on_that_version_is_complete(gated):
    """R-P11-10i-1: the refusal names the missing training; completing it allows the step."""
    r = gated.start("sop_release", "emma", {"title": "SOP-20"})
    with pytest.raises(TrainingRequired, match="SOP-12 version 5"):
        gated.fire(r.number, "submit", "emma")
    complete_training(gated, "emma", "SOP-12", "4")  # an older version does not count
    with pytest.raises(TrainingRequired, match="SOP-12 version 5"):
        gated.fire(r.number, "submit", "emma")
    assert gated.get(r.number).state == "draft"
    complete_training(gated, "emma", "SOP-12", "5")
    assert gated.fire(r.number, "submit", "emma").state == "review"


def test_state_level_training_applies_to_anyone_acting_there(gated):
    """R-P11-10i-1: acting in a state can require training (any version when none is named)."""
    r = gated.start("sop_release", "emma", {"title": "SOP-21"})
    complete_training(gated, "emma", "SOP-12", "5")
    gated.fire(r.number, "submit", "emma")
    with pytest.raises(TrainingRequired, match="SOP-QA-1"):
        gated.fire(r.number, "release", "quinn", signature=sign("quinn"))
    complete_training(gated, "quinn", "SOP-QA-1", "2")
    assert gated.fire(r.number, "release", "quinn", signature=sign("quinn")).state == "released"


def test_gate_fails_closed_when_no_workflow_declares_the_training_capability(gated):
    """R-P11-10i-1: training counts only through a workflow declaring the training capability;
    a database whose newest training workflow declares none (an upgrade not yet published)
    refuses gated steps instead of letting them through, and the training KPIs count nothing
    instead of failing."""
    complete_training(gated, "emma", "SOP-12", "5")
    source = (DEFAULT_DEFINITIONS_DIR / "training_assignment.yaml").read_text()
    start = source.index("capabilities:")
    without = source[:start] + source[source.index("\nroles:", start) + 1:]
    d = load_text(without, "training_assignment.yaml", {"controlled_document": None})
    assert d.capabilities.training is None
    with gated.unit() as s:
        gated.registry.publish(s, d, identity.system_user(s))
    r = gated.start("sop_release", "emma", {"title": "SOP-22"})
    with pytest.raises(TrainingRequired, match="SOP-12 version 5"):
        gated.fire(r.number, "submit", "emma")
    assert gated.get(r.number).state == "draft"
    with gated.reader() as s:
        k = Kpi(s, gated.registry, "quinn")
        assert k.metric("trn.compliance").denominator == 0
        assert k.training_by_document() == [] and k.training_by_role() == []
