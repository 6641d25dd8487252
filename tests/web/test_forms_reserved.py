"""Field names the web forms use themselves are refused when a definition is loaded."""

from __future__ import annotations

import pytest
from flask_wtf import FlaskForm
from wtforms import Form

from workflow.errors import DefinitionError
from workflow.spec.checks import RESERVED_FIELD_NAMES
from workflow.spec.load import load_text

SOURCE = """
key: reserved_demo
title: Reserved names
prefix: RSV
roles: {employee: Employee}
fields:
  title: {type: string, label: Title}
  {name}: {type: string, label: Something}
start: {roles: [employee], edits: [title], requires: [title]}
states:
  open: {label: Open, initial: true, owner: initiator}
  done: {label: Done, final: true, outcome: done}
transitions:
  - {name: finish, label: Finish, from: open, to: done, roles: [initiator]}
"""


def test_every_public_form_attribute_is_reserved():
    """R-WF-42: a field named like an attribute of the form classes would replace it (a
    definition with a field ``process`` answered 500 on its form): every public attribute of
    WTForms' Form and Flask-WTF's FlaskForm is in the reserved list."""
    public = {n for n in set(dir(FlaskForm)) | set(dir(Form))
              if not n.startswith("_") and n != "Meta"}
    assert public <= RESERVED_FIELD_NAMES


@pytest.mark.parametrize("name", ["process", "data", "reason", "sig_password"])
def test_a_reserved_field_name_is_refused_at_its_line(name):
    """R-WF-42: the definition is refused with the field named at its line, not loaded."""
    with pytest.raises(DefinitionError) as exc:
        load_text(SOURCE.replace("{name}", name), origin="reserved.yaml")
    msgs = [(p.line, p.message) for p in exc.value.problems]
    assert any(line == 8 and f"field name {name!r} is reserved" in m for line, m in msgs), msgs


def test_an_ordinary_name_loads():
    d = load_text(SOURCE.replace("{name}", "process_name"), origin="ok.yaml")
    assert "process_name" in d.fields
