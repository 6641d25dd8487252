"""Every validation rule, each reported with its file and line (R-P11-10k-1, R-A11-4-1).

No database here: definitions load and validate on their own.
"""

from __future__ import annotations

import textwrap

import pytest

from workflow.errors import DefinitionError
from workflow.spec.load import load_text
from workflow.spec.model import parse_duration

BASE = """\
key: demo
title: Demo workflow
prefix: DEMO
roles:
  qa: Quality Assurance
  employee: Employee
fields:
  title: {type: string}
  severity: {type: choice, choices: [low, high]}
start:
  roles: [employee]
  edits: [title, severity]
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
"""


def problems(text: str, known=None) -> list[str]:
    with pytest.raises(DefinitionError) as info:
        load_text(textwrap.dedent(text), origin="demo.yaml", known_workflows=known)
    return [str(p) for p in info.value.problems]


def replace(old: str, new: str) -> str:
    assert old in BASE, old
    return BASE.replace(old, new, 1)


def test_base_is_valid_and_hash_ignores_formatting():
    d = load_text(BASE, origin="demo.yaml")
    assert d.initial_state == "draft"
    assert d.transitions["approve"].signature.meaning == "Approved"
    reformatted = BASE.replace("  qa: Quality Assurance", "  qa:   Quality Assurance  # QA")
    assert load_text(reformatted).content_hash == d.content_hash


def test_yaml_syntax_error_has_its_line():
    (p,) = problems(replace("    to: review\n", "    to: review\n   roles: [qa]\n"))
    assert p.startswith("demo.yaml:27: YAML syntax error")


def test_empty_file_and_non_mapping():
    assert problems("") == ["demo.yaml:1: the file is empty"]
    assert problems("- a\n- b\n") == ["demo.yaml:1: the top level must be a mapping of keys"]


def test_schema_error_names_file_line_and_key():
    (p,) = problems(replace("    to: review\n", "    to: review\n    colour: red\n"))
    assert p.startswith("demo.yaml:27: ") and "colour" in p


def test_missing_required_key():
    (p,) = problems(BASE.replace("prefix: DEMO\n", ""))
    assert p.startswith("demo.yaml:1: ") and "'prefix' is a required property" in p


def test_duplicate_key_reported_at_its_line():
    (p,) = problems(replace("  review:\n    owner: qa\n",
                            "  review:\n    owner: qa\n  review:\n    owner: qa\n"))
    assert p == "demo.yaml:20: duplicate key 'review'"


def test_transition_to_unknown_state():
    ps = problems(replace("    to: closed\n", "    to: closd\n"))
    assert "demo.yaml:30: transition 'approve' goes to unknown state 'closd'" in ps


def test_transition_from_unknown_state():
    ps = problems(replace("    from: review\n", "    from: [review, limbo]\n"))
    assert any(p.startswith("demo.yaml:29: ") and "unknown state 'limbo'" in p for p in ps)


def test_unreachable_state():
    ps = problems(replace("  closed:\n", "  orphan:\n    owner: qa\n  closed:\n"))
    assert any(p.startswith("demo.yaml:20: ") and "'orphan' is unreachable" in p for p in ps)


def test_state_without_path_to_final():
    text = replace("  - name: approve\n", "  - name: park\n    from: review\n    to: limbo\n"
                   "    roles: [qa]\n  - name: approve\n")
    text = text.replace("  closed:\n", "  limbo:\n    owner: qa\n  closed:\n")
    ps = problems(text)
    assert any(p.startswith("demo.yaml:20: ") and "'limbo' has no path to a final state" in p
               for p in ps)


def test_undeclared_role_and_field():
    ps = problems(replace("    roles: [qa]\n    signature", "    roles: [qa, auditor]\n"
                          "    requires: [colour]\n    signature"))
    assert "demo.yaml:31: role 'auditor' is used but not declared under roles:" in ps
    assert "demo.yaml:32: field 'colour' is used but not declared under fields:" in ps


def test_signature_without_meaning():
    ps = problems(replace("meaning: Approved", "meaning: ' '"))
    assert "demo.yaml:32: signature gate on 'approve' has no meaning" in ps
    ps = problems(replace("{meaning: Approved, roles: [qa]}", "{roles: [qa]}"))
    assert any(p.startswith("demo.yaml:32: ") and "'meaning' is a required property" in p
               for p in ps)


def test_duplicate_transition_name():
    ps = problems(replace("  - name: approve\n", "  - name: submit\n"))
    assert "demo.yaml:28: duplicate transition name 'submit'" in ps


def test_action_naming_unknown_workflow():
    text = replace("  review:\n    owner: qa\n",
                   "  review:\n    owner: qa\n    on_enter:\n"
                   "      - create_record: {workflow: capa_typo}\n")
    ps = problems(text, known={"capa": None})
    assert "demo.yaml:21: action names unknown workflow 'capa_typo'" in ps


def test_guard_that_does_not_parse_or_uses_unknown_name():
    ps = problems(replace("    roles: [initiator]\n",
                          "    roles: [initiator]\n    guards:\n"
                          "      - {when: \"severity ==\", message: m}\n"
                          "      - {when: \"colour == 'red'\", message: m}\n"))
    assert any(p.startswith("demo.yaml:29: ") and "does not parse" in p for p in ps)
    assert "demo.yaml:30: expression uses 'colour', which is not a declared field" in ps


def test_guard_cannot_smuggle_python():
    ps = problems(replace("    roles: [initiator]\n",
                          "    roles: [initiator]\n    guards:\n"
                          "      - {when: \"title.__class__\", message: m}\n"))
    assert any("private attribute" in p for p in ps)


def test_initial_and_final_rules():
    ps = problems(replace("    final: true\n    outcome: done\n", "    outcome: done\n"))
    assert any("at least one state must be final" in p for p in ps)
    ps = problems(replace("    final: true\n    outcome: done\n", "    final: true\n"))
    assert any("needs outcome: done or void" in p for p in ps)


def test_every_problem_is_reported_at_once():
    text = replace("    to: closed\n", "    to: closd\n")
    text = text.replace("    roles: [initiator]\n", "    roles: [ghost]\n")
    ps = problems(text)
    assert len(ps) >= 2


def test_durations():
    assert parse_duration("90d").days == 90
    assert parse_duration("2w").days == 14
    with pytest.raises(ValueError):
        parse_duration("3 days")


def test_training_capability_names_fields_of_the_right_type():
    """R-P11-10i-1: the training capability (how the engine finds training records without
    naming a workflow) must name declared fields of fitting types; each mistake at its line."""
    ok = replace("fields:\n", "capabilities:\n  training: {trainee: who, document: title}\nfields:\n"
                 "  who: {type: user}\n")
    cap = load_text(ok).capabilities.training
    assert (cap.trainee, cap.document, cap.version, cap.due) == ("who", "title", None, None)
    assert load_text(BASE).capabilities.training is None
    bad = replace("fields:\n", "capabilities:\n  training: {trainee: title, document: nope}\n"
                  "fields:\n")
    assert problems(bad) == [
        "demo.yaml:8: capability training.trainee: field 'title' must be of type user",
        "demo.yaml:8: capability training.document names unknown field 'nope'"]
    (p,) = problems(replace("fields:\n", "capabilities:\n  training: {trainee: x}\nfields:\n"))
    assert "demo.yaml:8" in p and "document" in p
