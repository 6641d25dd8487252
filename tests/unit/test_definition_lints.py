"""GxP lints on definition drafts, each at its line, and the SVG diagram of every shipped
definition (R-A11-1-1, R-A11-10-1, R-P11-10k-1, R-UI-4). No database: drafts.validate_text
takes the known workflows as a mapping."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from webapp.diagram import render_svg
from workflow.spec.lints import validate_text
from workflow.spec.load import DEFAULT_DEFINITIONS_DIR, load_directory, load_text

SVG = "{http://www.w3.org/2000/svg}"

GOOD = """\
key: demo
title: Demo workflow
prefix: DEMO
risk: high
process_owner: qa
roles:
  qa: Quality Assurance
  employee: Employee
fields:
  title: {type: string}
  note: {type: text}
start:
  roles: [employee]
  edits: [title]
  requires: [title]
states:
  open:
    initial: true
    owner: qa
    due_in: 5d
  closed:
    final: true
    outcome: done
  cancelled:
    final: true
    outcome: void
transitions:
  - name: approve
    from: open
    to: closed
    roles: [qa]
    signature: {meaning: Approved, roles: [qa]}
    separation: {not_initiator: true}
  - name: cancel
    from: open
    to: cancelled
    roles: [qa]
    reason_required: true
"""

# every lint violated once; the comment on each line names the lint expected there
BAD = """\
key: demo
title: Demo workflow
prefix: DEMO
risk: high
roles:
  qa: Quality Assurance
  employee: Employee
fields:
  title: {type: string}
  due: {type: date}
start:
  roles: [employee]
  edits: [title]
  requires: [title]
states:
  open:
    initial: true
    owner: qa
    due_in: 5d
  review:
    owner: qa
  waiting:
    owner: employee
    due_field: due
  closed:
    final: true
    outcome: done
  cancelled:
    final: true
    outcome: void
transitions:
  - name: submit
    from: open
    to: review
    roles: [employee]
    signature: {meaning: Submitted}
  - name: approve
    from: review
    to: waiting
    roles: [qa]
    signature: {meaning: Approved, roles: [qa, employee]}
    separation: {not_actor_of: [finish]}
  - name: finish
    from: waiting
    to: closed
    roles: [initiator]
    separation: {not_initiator: true}
  - name: cancel
    from: open
    to: cancelled
    roles: [qa]
  - name: fast_close
    from: open
    to: closed
    roles: [qa]
"""


def _at(v, line: int) -> list[str]:
    return [f.message for f in v.findings if f.line == line]


def test_a_good_definition_has_no_findings():
    """R-A11-1-1: a high-risk workflow whose only done path is QA-signed passes."""
    v = validate_text(GOOD, {})
    assert v.findings == () and v.ok and v.definition is not None


def test_every_lint_is_reported_at_its_line():
    """R-A11-1-1 R-A11-10-1 R-UI-4: each GxP lint names the line it is about."""
    v = validate_text(BAD, {})
    assert not v.ok
    assert all(f.source == "gxp" for f in v.findings), v.findings
    lines = BAD.splitlines()

    def line_of(text: str, after: int = 0) -> int:
        return next(i for i, x in enumerate(lines, 1) if i > after and text in x)

    # due dates set but no process_owner: at the state with the first due rule
    assert any("names no process_owner" in m for m in _at(v, line_of("  open:")))
    # a state owning a task without a due date while others have one
    assert any("'review' opens a task without a due date" in m
               for m in _at(v, line_of("  review:")))
    # a due_field nothing sets
    assert any("due_field 'due' is never set" in m for m in _at(v, line_of("due_field: due")))
    # a signature gate without signer roles
    assert any("names no signer role" in m for m in _at(v, line_of("signature: {meaning: Submitted")))
    # a signer role that may not do the step
    assert any("role 'employee' may sign 'approve'" in m
               for m in _at(v, line_of("roles: [qa, employee]")))
    # separation referring to a step that can never come first
    assert any("refers to 'finish', which can never happen before it" in m
               for m in _at(v, line_of("not_actor_of: [finish]")))
    # not_initiator on an initiator-only step
    assert any("nobody can do it" in m for m in _at(v, line_of("not_initiator: true")))
    # a done outcome reachable without a QA signature (risk high: an error)
    qa = [f for f in v.findings if "without a QA-signed transition" in f.message]
    assert [(f.line, f.severity) for f in qa] == [(line_of("  closed:"), "error")]
    assert qa[0].message.endswith(": fast_close")  # the path found, step by step


def test_qa_path_lint_is_a_warning_below_high_risk():
    """R-A11-1-1: the QA-signature-on-every-done-path rule is an error for risk: high only."""
    src = GOOD.replace("risk: high", "risk: medium").replace(
        "    signature: {meaning: Approved, roles: [qa]}\n", "")
    v = validate_text(src, {})
    qa = [f for f in v.findings if "QA-signed" in f.message]
    assert [(f.severity, f.line) for f in qa] == [("warning", src.splitlines().index(
        "  closed:") + 1)]
    assert v.ok  # warnings do not block
    high = validate_text(src.replace("risk: medium", "risk: high"), {})
    assert not high.ok and "approve" in high.errors[0].message


def test_engine_errors_come_with_their_line_too():
    """R-P11-10k-1 R-UI-4: the engine's own checks are findings at their line as well."""
    src = GOOD.replace("    to: closed\n", "    to: shut\n")
    v = validate_text(src, {})
    line = src.splitlines().index("    to: shut") + 1
    assert any(f.source == "engine" and "unknown state 'shut'" in f.message and f.line == line
               for f in v.findings)
    assert validate_text(GOOD, {}, key="other").errors[0].line == 1  # key: must not change


TARGET = GOOD.replace("key: demo", "key: target").replace("prefix: DEMO", "prefix: TGT")


def test_a_copy_the_target_cannot_set_is_a_finding_at_its_line():
    """R-P11-10k-1 R-UI-4: a create_record copying a field the target workflow's start may not
    set is reported at the action's line (it used to crash validate_text: a 500 in the editor)."""
    target = load_text(TARGET, origin="target.yaml")
    action = "      - create_record: {workflow: target, copy: {title: title, note: title}}"
    src = GOOD.replace("    due_in: 5d\n", f"    due_in: 5d\n    on_enter:\n{action}\n", 1)
    v = validate_text(src, {"target": target})
    line = src.splitlines().index(action) + 1
    assert [(f.line, f.source, f.message) for f in v.errors] == [
        (line, "engine", "copies 'note', which starting a target cannot set (not in its start: "
         "edits)")]
    assert not v.ok and v.definition is None


@pytest.mark.parametrize("path", sorted(DEFAULT_DEFINITIONS_DIR.glob("*.yaml")),
                         ids=lambda p: p.stem)
def test_the_diagram_renders_for_each_shipped_definition(path):
    """R-UI-4 R-P11-10k-1: the SVG parses; it has a box per state, an edge per transition
    source, signature gates marked with their meaning, final states drawn distinct."""
    d = load_directory()[next(k for k, x in load_directory().items()
                              if x.origin == str(path))]
    root = ET.fromstring(render_svg(d))
    assert root.tag == f"{SVG}svg"
    states = {g.get("data-state"): g.get("class") for g in root.iter(f"{SVG}g")
              if g.get("data-state")}
    assert set(states) == set(d.states)
    for name, s in d.states.items():
        assert ("wf-final" in states[name]) == s.final
        if s.final:
            assert f"wf-{s.outcome}" in states[name]
    edges = [p for p in root.iter(f"{SVG}path") if p.get("data-transition")]
    assert len(edges) == sum(len(t.sources) for t in d.transitions.values())
    for t in d.transitions.values():
        mine = [e for e in edges if e.get("data-transition") == t.name]
        assert all(("wf-sig" in e.get("class")) == (t.signature is not None) for e in mine)
    text = " ".join(x.text or "" for x in root.iter(f"{SVG}text"))
    for t in d.transitions.values():
        if t.signature:
            assert f"signed: {t.signature.meaning}"[:30] in text
    assert not any(el.get("style") for el in root.iter())  # strict CSP: no inline styles


def test_every_shipped_definition_passes_the_lints():
    """R-A11-1-1: the shipped workflows meet the GxP lints (warnings allowed below high risk)."""
    defs = load_directory()
    for d in defs.values():
        v = validate_text(d.source, defs, key=d.key, origin=d.origin)
        assert v.errors == [], (d.key, v.errors)
