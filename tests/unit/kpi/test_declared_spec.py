"""The ``kpis:`` section of a definition (workflow/spec/kpis.py, docs/kpis.md "Declared
KPIs"): what loads, and the clear error at the line for every name it does not declare. No
database."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from workflow.errors import DefinitionError
from workflow.resources import definitions_dir
from workflow.spec.load import load_directory, load_text

DEVIATION = (definitions_dir() / "deviation.yaml").read_text()
KNOWN = {"capa": None}  # the deviation's create_record names capa


def _load(extra: str):
    return load_text(DEVIATION.split("\nkpis:\n")[0] + "\nkpis:\n" + extra, origin="dev.yaml",
                     known_workflows=KNOWN)


def _problems(extra: str) -> str:
    with pytest.raises(DefinitionError) as exc:
        _load(extra)
    return str(exc.value)


def test_the_shipped_deviation_declares_its_kpis():
    """R-KPI-1: a definition declares KPIs of generic kinds over its own fields, states and
    milestones; the shipped deviation is the worked example."""
    d = load_directory()["deviation"]
    k = d.kpis
    assert {"open", "by_classification", "critical_share", "overdue", "triaged_in_time",
            "investigation_days", "on_time"} <= set(k)
    assert k["by_classification"].kind == "count_by"
    assert k["by_classification"].field == "classification"
    assert k["triaged_in_time"].within == timedelta(days=2)
    assert k["critical_share"].where[0].op == "reached"
    assert k["critical_share"].hit[0].values == ("critical",)
    assert k["on_time"].where[0].op == "in"
    assert k["investigation_days"].stat == "mean"
    assert dict(k["overdue"].threshold or {}) == {"better": "lower", "green": 0.05,
                                                  "amber": 0.15}


def test_unknown_names_are_refused_at_their_line():
    """R-KPI-2: an unknown field, state, milestone or choice value in kpis: is refused when
    the definition is loaded, each problem at its line with what to fix."""
    text = _problems(
        "  a: {kind: share, where: {reached: investigatoin}, hit: {field: classfication, "
        "equals: critical}}\n"
        "  b: {kind: milestone_days, milestone: triag}\n"
        "  c: {kind: count_by, field: clasification}\n"
        "  d: {kind: on_time, where: {field: classification, in: [major, severe]}}\n"
        "  e: {kind: overdue, due: occured_on}\n")
    assert "KPI 'a' names unknown state 'investigatoin' (not declared under states:)" in text
    assert "KPI 'a' names unknown field 'classfication'" in text
    assert "KPI 'b' names unknown milestone 'triag' (not declared under milestones:)" in text
    assert "KPI 'c' groups by unknown field 'clasification'" in text
    assert "KPI 'd': 'severe' is not a choice of field 'classification'" in text
    assert "KPI 'e': due: 'occured_on' is neither due_current nor due_original nor a " \
           "declared date field" in text
    assert re.search(r"dev\.yaml:\d+: KPI 'b'", text)


def test_keys_a_kind_needs_or_ignores_are_refused():
    """R-KPI-2: a kind missing what it needs, or given a key it would silently ignore,
    is refused; so are unknown kinds (schema) and values of the wrong type."""
    text = _problems(
        "  a: {kind: milestone_within, milestone: triage}\n"
        "  b: {kind: milestone_days, milestone: triage, base: open}\n"
        "  c: {kind: share}\n"
        "  d: {kind: count, where: {field: capa_required, equals: 'yes'}}\n"
        "  e: {kind: count_by, field: root_cause}\n")
    assert "KPI 'a' of kind milestone_within needs within:" in text
    assert "KPI 'b': base: means nothing for kind milestone_days" in text
    assert "KPI 'c' of kind share needs hit:" in text
    assert "field 'capa_required' is a boolean: compare it with true or false" in text
    assert "cannot group by field 'root_cause' of type text" in text
    assert "kind" in _problems("  a: {kind: average}\n")


def test_defaults():
    """R-KPI-1: label from the name, base created, stat median."""
    d = _load("  reported_count: {kind: count}\n  triage: {kind: milestone_days, "
              "milestone: triage}\n")
    assert d.kpis["reported_count"].label == "Reported count"
    assert d.kpis["reported_count"].base == "created"
    assert d.kpis["triage"].stat == "median"





def test_due_within_needs_a_date_field():
    """R-KPI-6: ``due_within`` is read on a date field only; on another field the definition
    is refused at its line, naming the field and its type."""
    text = _problems("  a: {kind: count, where: {field: title, due_within: 30d}}\n")
    assert "KPI 'a': due_within needs a date field; 'title' is of type string" in text
    ok = _load("  a: {kind: count, base: open, where: {field: occurred_on, due_within: 30d}}\n")
    assert ok.kpis["a"].where[0].op == "due_within"
    assert ok.kpis["a"].where[0].values == (timedelta(days=30),)
