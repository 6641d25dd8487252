"""General definition abilities the security incident needs, checked on their own (no
database): a signature role required only when a condition holds (``roles_when``), a
milestone that starts at a date/time field (``start_field``), ``set_due`` counting from a
field with a condition, and slices in expressions."""

from __future__ import annotations

import pytest

from tests.unit.test_definition_validation import BASE, problems, replace
from workflow.engine.signing import required
from workflow.spec import expressions
from workflow.spec.load import load_text
from workflow.spec.model import SignatureSpec

TWO = replace("""    roles: [qa]
    signature: {meaning: Approved, roles: [qa]}""", """    roles: [qa, employee]
    signature: {meaning: Approved, roles: [qa, employee], one_per_role: true,
                roles_when: {qa: "severity == 'high'"}}""")


def test_roles_when_loads_and_applies_only_when_its_condition_holds():
    """R-WF-1: QA is a required signer only when the condition holds on the signed values."""
    d = load_text(TWO, origin="demo.yaml")
    sig = d.transitions["approve"].signature
    assert sig.roles_when == (("qa", "severity == 'high'"),) and sig.quorum == 2
    low = required(sig, {"severity": "low"})
    assert (low.roles, low.quorum) == (("employee",), 1)
    high = required(sig, {"severity": "high"})
    assert (high.roles, high.quorum) == (("qa", "employee"), 2)
    # a condition that cannot be evaluated keeps the role required (fails closed)
    assert required(SignatureSpec("A", ("qa", "employee"), 2, True, (("qa", "1 +"),)),
                    {}).roles == ("qa", "employee")


@pytest.mark.parametrize("bad, message", [
    ("roles_when: {qa: \"severity == 'high'\"}, one_per_role: false", "needs one_per_role"),
    ("one_per_role: true, roles_when: {hr: \"severity == 'high'\"}", "not a signing role"),
    ("one_per_role: true, roles_when: {qa: \"nope == 1\"}", "not a declared field"),
    ("one_per_role: true, roles_when: {qa: 'True', employee: 'True'}", "must always sign"),
])
def test_roles_when_is_checked(bad, message):
    """R-WF-1: roles_when errors name the file and line."""
    text = replace("""    roles: [qa]
    signature: {meaning: Approved, roles: [qa]}""", f"""    roles: [qa, employee]
    signature: {{meaning: Approved, roles: [qa, employee], {bad}}}""")
    assert any(message in p and "demo.yaml:" in p for p in problems(text)), problems(text)


def test_milestone_from_a_field_and_set_due_from_a_field():
    """R-WF-1: set_due counts from a field under a condition; a milestone may start at a
    date/time field; both name declared fields."""
    sev = "  severity: {type: choice, choices: [low, high]}"
    text = BASE.replace(sev, sev + """
  seen_at: {type: datetime}
  due_at: {type: datetime}""").replace("""  review:
    owner: qa""", """  review:
    owner: qa
    on_enter:
      - set_due: {field: due_at, after: 72h, from_field: seen_at, when: "severity == 'high'"}""")
    d = load_text(text + "milestones:\n  detect: {start_field: seen_at, stop: review}\n",
                  origin="demo.yaml")
    m = d.milestones["detect"]
    assert (m.start, m.start_field, m.stop) == ("", "seen_at", "review")
    bad = problems(text.replace("from_field: seen_at", "from_field: nope") +
                   "milestones:\n  detect: {start_field: title, stop: review}\n")
    assert any("'nope' is used but not declared" in p for p in bad), bad
    assert any("start_field must name a date or datetime field" in p for p in bad), bad


def test_slices_are_allowed_in_expressions():
    assert expressions.evaluate("title[:5]", {"title": "Security incident"}) == "Secur"
