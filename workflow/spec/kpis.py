"""Declared KPIs (the ``kpis:`` section of a definition), as pure data: no database.

A workflow declares its KPIs as a handful of GENERIC kinds over its own fields, states and
milestones (docs/kpis.md, "Declared KPIs"); :mod:`workflow.kpi.declared` turns each into a
cohort like the built-in metrics'. :func:`check` refuses, at the line, every name the
section uses that the definition does not declare; :func:`build` makes the dataclasses.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from workflow.errors import Problem
from workflow.spec.model import DeclaredKpi, KpiCondition, parse_duration
from workflow.spec.source import KeyPath, Lines, line_of

#: kind -> (the keys it needs, the keys it also accepts); every kind accepts label, help,
#: threshold and where
KINDS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "count": (frozenset(), frozenset({"base"})),
    "count_by": (frozenset({"field"}), frozenset({"base"})),
    "share": (frozenset({"hit"}), frozenset({"base"})),
    "overdue": (frozenset(), frozenset({"due"})),
    "open_age": (frozenset(), frozenset()),
    "milestone_days": (frozenset({"milestone"}), frozenset({"stat"})),
    "milestone_within": (frozenset({"milestone", "within"}), frozenset()),
    "on_time": (frozenset(), frozenset({"due"})),
}
COMMON = frozenset({"kind", "label", "help", "threshold", "where"})
#: the record's own due dates (``due:`` may also name a date field)
RECORD_DUES = ("due_current", "due_original")
#: field types a condition or a grouping may read (one scalar value per record)
SCALAR_TYPES = frozenset({"string", "text", "integer", "decimal", "boolean", "date", "datetime",
                          "choice", "user", "reference"})
GROUP_TYPES = frozenset({"choice", "string", "user", "boolean", "reference"})
OPS = ("equals", "in", "not_in", "set", "due_within")


def check(doc: Mapping[str, Any], lines: Lines, origin: str) -> list[Problem]:
    """Problems with the ``kpis:`` section of a schema-valid document: keys the kind does
    not use, unknown fields, states, milestones; values a choice field cannot hold."""
    problems: list[Problem] = []

    def err(path: KeyPath, message: str) -> None:
        problems.append(Problem(origin, line_of(lines, path), message))

    fields: Mapping[str, Any] = doc.get("fields", {})
    states: Mapping[str, Any] = doc.get("states", {})
    milestones: Mapping[str, Any] = doc.get("milestones", {})
    for name, k in doc.get("kpis", {}).items():
        p: KeyPath = ("kpis", name)
        needs, accepts = KINDS[k["kind"]]
        for key in sorted(needs - set(k)):
            err(p, f"KPI {name!r} of kind {k['kind']} needs {key}:")
        for key in sorted(set(k) - needs - accepts - COMMON):
            err((*p, key), f"KPI {name!r}: {key}: means nothing for kind {k['kind']} "
                           f"(it takes {', '.join(sorted(needs | accepts | COMMON))})")
        if "milestone" in k and k["milestone"] not in milestones:
            err((*p, "milestone"), f"KPI {name!r} names unknown milestone {k['milestone']!r} "
                                   "(not declared under milestones:)")
        if "field" in k:
            f = fields.get(k["field"])
            if f is None:
                err((*p, "field"), f"KPI {name!r} groups by unknown field {k['field']!r} "
                                   "(not declared under fields:)")
            elif f["type"] not in GROUP_TYPES:
                err((*p, "field"), f"KPI {name!r} cannot group by field {k['field']!r} of type "
                                   f"{f['type']} (use {', '.join(sorted(GROUP_TYPES))})")
        if "due" in k and k["due"] not in RECORD_DUES:
            f = fields.get(k["due"])
            if f is None or f["type"] != "date":
                err((*p, "due"), f"KPI {name!r}: due: {k['due']!r} is neither "
                                 f"{' nor '.join(RECORD_DUES)} nor a declared date field")
        for part in ("where", "hit"):
            for i, c in enumerate(_as_list(k.get(part))):
                _check_condition((*p, part, i) if isinstance(k[part], list) else (*p, part),
                                 name, c, fields, states, err)
    return problems


def _check_condition(path: KeyPath, kpi: str, c: Mapping[str, Any], fields: Mapping[str, Any],
                     states: Mapping[str, Any], err: Any) -> None:
    if "reached" in c:
        if c["reached"] not in states:
            err((*path, "reached"), f"KPI {kpi!r} names unknown state {c['reached']!r} "
                                    "(not declared under states:)")
        return
    f = fields.get(c["field"])
    if f is None:
        err((*path, "field"), f"KPI {kpi!r} names unknown field {c['field']!r} "
                              "(not declared under fields:)")
        return
    if f["type"] not in SCALAR_TYPES:
        err((*path, "field"), f"KPI {kpi!r}: field {c['field']!r} of type {f['type']} holds "
                              "no single value a condition can compare")
        return
    if "due_within" in c:
        if f["type"] != "date":
            err((*path, "due_within"), f"KPI {kpi!r}: due_within needs a date field; "
                                       f"{c['field']!r} is of type {f['type']}")
        return
    values = [c["equals"]] if "equals" in c else c.get("in", c.get("not_in", []))
    for v in values:
        if f["type"] == "choice" and v not in f.get("choices", []):
            err(path, f"KPI {kpi!r}: {v!r} is not a choice of field {c['field']!r} "
                      f"({', '.join(map(str, f.get('choices', [])))})")
        elif f["type"] == "boolean" and not isinstance(v, bool):
            err(path, f"KPI {kpi!r}: field {c['field']!r} is a boolean: compare it with "
                      f"true or false, not {v!r}")
        elif f["type"] in ("integer", "decimal") and (isinstance(v, bool) or
                                                     not isinstance(v, (int, float))):
            err(path, f"KPI {kpi!r}: field {c['field']!r} is a number: {v!r} is not")


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _condition(c: Mapping[str, Any]) -> KpiCondition:
    if "reached" in c:
        return KpiCondition(op="reached", state=c["reached"])
    op = next(o for o in OPS if o in c)
    if op == "set":
        return KpiCondition(field=c["field"], op=op, values=(bool(c["set"]),))
    if op == "due_within":
        return KpiCondition(field=c["field"], op=op,
                            values=(parse_duration(c["due_within"]),))
    values = (c["equals"],) if op == "equals" else tuple(c[op])
    return KpiCondition(field=c["field"], op=op, values=values)


def build(doc: Mapping[str, Any]) -> dict[str, DeclaredKpi]:
    """The ``kpis:`` section of a checked document as :class:`DeclaredKpi` by name."""
    out = {}
    for name, k in doc.get("kpis", {}).items():
        out[name] = DeclaredKpi(
            name=name, kind=k["kind"],
            label=k.get("label", name.replace("_", " ").capitalize()),
            help=k.get("help", ""),
            base=k.get("base", "created"),
            where=tuple(_condition(c) for c in _as_list(k.get("where"))),
            hit=tuple(_condition(c) for c in _as_list(k.get("hit"))),
            field=k.get("field"), milestone=k.get("milestone"),
            stat=k.get("stat", "median"),
            within=parse_duration(k["within"]) if "within" in k else None,
            due=k.get("due"),
            threshold=dict(k["threshold"]) if "threshold" in k else None)
    return out
