"""Computed list columns (R-RSK-2): declared with an expression, checked when the definition
is loaded, computed from the row and the record, never from input. No database here."""

from __future__ import annotations

import textwrap

import pytest

from workflow.errors import DefinitionError
from workflow.spec.fields import FieldValueError, coerce, compute
from workflow.spec.load import load_text

BASE = textwrap.dedent("""\
    key: demo
    title: Demo workflow
    prefix: DEMO
    roles:
      qa: Quality Assurance
    fields:
      title: {type: string}
      factor: {type: integer}
      rows:
        type: list
        fields:
          a: {type: integer, label: A}
          b: {type: integer, label: B}
          product: {type: integer, label: Product, computed: "a * b * (factor or 1)"}
          big: {type: boolean, computed: "product > 10"}
    start:
      roles: [qa]
      edits: [title, rows]
    states:
      draft: {initial: true, owner: qa}
      done: {final: true, outcome: done}
    transitions:
      - {name: finish, from: draft, to: done, roles: [qa]}
    """)


def test_computed_columns_use_the_row_and_the_record_and_ignore_input():
    """R-RSK-2: computed in declared order (a later column sees an earlier one); a value
    for a computed column in the input is dropped when coerced and recomputed."""
    d = load_text(BASE)
    spec = d.fields["rows"]
    rows = coerce(spec, [{"a": 3, "b": "4", "product": 1, "big": False}])
    assert rows == [{"a": 3, "b": 4}]
    assert compute(spec, rows, {"factor": 2}) == [{"a": 3, "b": 4, "product": 24, "big": True}]
    with pytest.raises(FieldValueError, match="row 1: Product cannot be computed: give B"):
        compute(spec, [{"a": 3}], {})


@pytest.mark.parametrize("change, message", [
    ('product: {type: integer, label: Product, computed: "a * nothing"}',
     "expression uses 'nothing'"),
    ('product: {type: integer, label: Product, computed: "a *"}', "does not parse"),
    ("factor: {type: integer}", None),
])
def test_bad_computed_expressions_are_refused_at_load(change, message):
    """R-RSK-2: an expression naming an unknown column or field, or not parsing, is refused
    with its line; computed on a field that is not a list column is refused."""
    text = BASE.replace('product: {type: integer, label: Product, computed: "a * b * (factor or 1)"}',
                        change) if message else \
        BASE.replace("factor: {type: integer}", 'factor: {type: text, computed: "1"}')
    with pytest.raises(DefinitionError, match=message or "a text field cannot be computed"):
        load_text(text)
