"""The step controls of the definition language (issue 15): separation over named fields,
not_before and waits_for, each misuse refused with its file and line, and the GxP lint that
wants a separation rule on signed closures and verifications. No database here."""

from __future__ import annotations

import textwrap

import pytest

from workflow.errors import DefinitionError
from workflow.spec.lints import validate_text
from workflow.spec.load import load_text

BASE = textwrap.dedent("""\
    key: demo
    title: Demo workflow
    prefix: DEMO
    roles:
      qa: Quality Assurance
      employee: Employee
    fields:
      title: {type: string}
      owner: {type: user}
      check_on: {type: date}
      rows:
        type: list
        fields:
          who: {type: user}
          what: {type: string}
    start:
      roles: [employee]
      edits: [title, owner, check_on]
      requires: [title]
    states:
      draft:
        initial: true
        owner: initiator
      review:
        owner: qa
      closed:
        final: true
        outcome: done
    transitions:
      - name: submit
        from: draft
        to: review
        roles: [initiator]
      - name: approve
        from: review
        to: closed
        roles: [qa]
        signature: {meaning: Approved, roles: [qa]}
        separation: {not_initiator: true}
    """)

APPROVE = "    separation: {not_initiator: true}\n"


def with_approve(extra: str) -> str:
    assert APPROVE in BASE
    return BASE.replace(APPROVE, APPROVE + textwrap.indent(textwrap.dedent(extra), "    "))


def problems(text: str, known=None) -> list[str]:
    with pytest.raises(DefinitionError) as info:
        load_text(text, origin="demo.yaml", known_workflows=known)
    return [str(p) for p in info.value.problems]


def test_the_controls_load_into_the_definition():
    """R-WF-13 R-WF-14 R-WF-15: separation over user fields and list sub-fields, the earliest
    time a step may be taken and the linked records it waits for are part of the language."""
    text = BASE.replace(APPROVE, "    separation: {not_initiator: true, not_named_in: "
                                 "[owner, rows.who]}\n"
                                 "    not_before: {field: check_on, early: reason}\n"
                                 "    waits_for: [{workflow: demo, link: related, "
                                 "outcome: done}, {}]\n")
    t = load_text(text).transitions["approve"]
    assert t.separation.not_named_in == ("owner", "rows.who")
    assert t.not_before is not None and t.not_before.field == "check_on"
    assert t.not_before.early == "reason"
    assert [(w.workflow, w.link, w.outcome) for w in t.waits_for] == [
        ("demo", "related", "done"), (None, None, None)]
    after = load_text(with_approve("not_before: {after: 30d}\n")).transitions["approve"]
    assert after.not_before is not None and after.not_before.after.days == 30
    assert after.not_before.early == "refuse"


def test_separation_on_an_unknown_or_non_user_field_is_refused_at_its_line():
    """R-WF-1 R-WF-13: a separation rule naming a field that is not a user is refused."""
    text = BASE.replace(APPROVE, "    separation: {not_named_in: [nobody, title, "
                                 "rows.what, title.x]}\n")
    ps = problems(text)
    assert "demo.yaml:39: separation names field 'nobody', which is not declared under " \
           "fields:" in ps
    assert "demo.yaml:39: separation names 'title', which is not a user field (it is " \
           "string)" in ps
    assert "demo.yaml:39: separation names 'rows.what', which is not a user field (it is " \
           "string)" in ps
    assert "demo.yaml:39: separation names 'title.x', but 'title' is not a list with a " \
           "field 'x'" in ps


def test_not_before_on_a_non_date_field_is_refused_at_its_line():
    """R-WF-1 R-WF-14: an earliest date on a non-date field, an unknown field, or neither
    field nor after is refused with file:line."""
    assert problems(with_approve("not_before: {field: title}\n")) == [
        "demo.yaml:40: not_before field 'title' must be a date or datetime field (it is "
        "string)"]
    assert problems(with_approve("not_before: {field: nope}\n")) == [
        "demo.yaml:40: field 'nope' is used but not declared under fields:"]
    assert problems(with_approve("not_before: {early: reason}\n")) == [
        "demo.yaml:40: not_before on 'approve' needs either field: (a date field) or after: "
        "(a duration after entering the state)"]
    (p,) = problems(with_approve("not_before: {after: soon}\n"))
    assert p.startswith("demo.yaml:40: ") and "soon" in p


def test_waits_for_an_unknown_workflow_or_link_kind_is_refused_at_its_line():
    """R-WF-1 R-WF-15: a child requirement naming an unknown workflow or link kind."""
    assert problems(with_approve("waits_for: [{workflow: capa}]\n"),
                    known={"demo": None}) == [
        "demo.yaml:40: waits_for names unknown workflow 'capa'"]
    (p,) = problems(with_approve("waits_for: [{link: cousin_of}]\n"))
    assert p.startswith("demo.yaml:40: ") and "cousin_of" in p


def test_lint_warns_on_a_signed_closure_or_verification_without_separation():
    """R-A11-1-1 R-WF-13: a signed closure or verification names who may not sign it."""
    bare = BASE.replace(APPROVE, "")
    v = validate_text(bare, {"demo": None})
    (w,) = [f for f in v.warnings if "separation" in f.message]
    assert w.line == 38 and "'approve' is a signed closure with no separation-of-duties " \
        "rule" in w.message
    verification = bare.replace("    to: closed\n", "    to: review\n", 1).replace(
        "    to: review\n    roles: [initiator]\n", "    to: review\n    roles: [initiator]\n"
        "  - name: close\n    from: review\n    to: closed\n    roles: [qa]\n").replace(
        "meaning: Approved", "meaning: Verified")
    assert not [f for f in validate_text(BASE, {"demo": None}).warnings
                if "separation" in f.message]
    v = validate_text(verification, {"demo": None})
    assert any("signed verification with no separation" in f.message for f in v.warnings), \
        v.findings
