"""Content controls of the definition language, as pure data (no database): what a signature
locks, which list columns stay editable, generated populations (issue 15, controls 1, 2, 5
and 9).

:func:`check` validates a schema-valid document (each problem at its file:line); the other
functions compute, from a built definition and field values, what the engine
(workflow/engine/content.py) and the read models compare: the content a signature covers
and the columns exempt from it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from workflow.errors import Problem
from workflow.spec.model import FieldSpec, TransitionSpec, WorkflowDefinition
from workflow.spec.source import KeyPath, Lines, line_of

# --------------------------------------------------------------------------- validation


def check(doc: Mapping[str, Any], lines: Lines, origin: str) -> list[Problem]:
    """Problems with ``locks``, ``editable_after``, ``unlocks`` (transitions) and
    ``generated``, ``editable``, ``subject``, ``csv_import`` (list fields)."""
    problems: list[Problem] = []

    def err(path: KeyPath, message: str) -> None:
        problems.append(Problem(origin, line_of(lines, path), message))

    fields: Mapping[str, Any] = doc.get("fields", {})
    for name, spec in fields.items():
        _check_list_options(("fields", name), name, spec, err)
    transitions = doc.get("transitions", [])
    locking = {t["name"] for t in transitions if t.get("locks")}
    for i, t in enumerate(transitions):
        p: KeyPath = ("transitions", i)
        locks = t.get("locks", [])
        if locks and not t.get("signature"):
            err(
                (*p, "locks"),
                f"transition {t['name']!r} locks fields but has no signature: only a signature locks content",
            )
        for j, f in enumerate(locks):
            if f not in fields:
                err((*p, "locks", j), f"lock on unknown field {f!r} (not declared under fields:)")
        for j, item in enumerate(t.get("editable_after", [])):
            name, _, column = item.partition(".")
            if name not in locks:
                err(
                    (*p, "editable_after", j),
                    f"editable_after names {item!r}, but {name!r} is not in this step's locks:",
                )
            elif column:
                cols = fields.get(name, {}).get("fields", {})
                if column not in cols:
                    err(
                        (*p, "editable_after", j),
                        f"{name!r} has no column {column!r} (editable_after: list.column)",
                    )
        for j, other in enumerate(t.get("unlocks", [])):
            if other not in locking:
                err((*p, "unlocks", j), f"unlocks {other!r}, which is not a step with locks:")
    return problems


def _check_list_options(path: KeyPath, name: str, spec: Mapping[str, Any], err: Any) -> None:
    is_list = spec.get("type") == "list"
    cols: Mapping[str, Any] = spec.get("fields", {}) if is_list else {}
    for key in ("generated", "editable", "subject", "csv_import"):
        if key in spec and not is_list:
            err((*path, key), f"{key}: only applies to type: list (field {name!r})")
    if not is_list:
        return
    if spec.get("editable") and not spec.get("generated"):
        err(
            (*path, "editable"),
            f"editable: names the columns of a generated list; "
            f"add generated: true to {name!r} or remove editable:",
        )
    for j, col in enumerate(spec.get("editable", [])):
        if col not in cols:
            err((*path, "editable", j), f"{name!r} has no column {col!r}")
    subject = spec.get("subject")
    if subject is not None:
        if subject not in cols:
            err((*path, "subject"), f"{name!r} has no column {subject!r}")
        elif cols[subject].get("type") != "user":
            err((*path, "subject"), f"subject: column {subject!r} must be of type user")
    if spec.get("csv_import") and not cols:
        err((*path, "csv_import"), f"csv_import: needs a list with columns (fields:), {name!r} has none")
    if spec.get("generated") and not cols:
        err((*path, "generated"), f"generated: needs a list with columns (fields:), {name!r} has none")


# --------------------------------------------------------------------------- covered content


def free_columns(t: TransitionSpec) -> dict[str, frozenset[str]]:
    """Locked list fields -> the columns that stay editable after ``t``'s signature."""
    out: dict[str, set[str]] = {}
    for item in t.editable_after:
        name, _, column = item.partition(".")
        if column:
            out.setdefault(name, set()).add(column)
    return {k: frozenset(v) for k, v in out.items()}


def whole_free(t: TransitionSpec) -> frozenset[str]:
    """Locked fields named without a column in ``editable_after``: editable as a whole."""
    return frozenset(i for i in t.editable_after if "." not in i)


def without(value: Any, columns: frozenset[str]) -> Any:
    """A list's rows without ``columns`` (other values unchanged)."""
    if not columns or not isinstance(value, list):
        return value
    return [
        {k: v for k, v in row.items() if k not in columns} if isinstance(row, dict) else row for row in value
    ]


def covered(t: TransitionSpec, data: Mapping[str, Any]) -> dict[str, Any]:
    """The content ``t``'s signature covers in ``data``: each locked field's value, list
    rows without their still-editable columns; None when ``t`` locks nothing."""
    free = free_columns(t)
    skip = whole_free(t)
    return {f: without(data.get(f), free.get(f, frozenset())) for f in t.locks if f not in skip}


def covered_hash(content: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of covered content."""
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def covered_now(covers: Iterable[str], free: Mapping[str, Iterable[str]], data: Mapping[str, Any]) -> str:
    """The hash of what a signature covered (``covers``, ``free`` as recorded with it)
    computed over ``data``: equal to its ``covered_hash`` while that content is unchanged."""
    return covered_hash({f: without(data.get(f), frozenset(free.get(f, ()))) for f in covers})


def column_exemptions(d: WorkflowDefinition, field: str) -> frozenset[str]:
    """Columns of list ``field`` that a definition means to be completed later (named in some
    step's ``editable_after``): changing them is not a change needing a reason."""
    out: set[str] = set()
    for t in d.transitions.values():
        out |= free_columns(t).get(field, frozenset())
    return frozenset(out)


def list_spec(d: WorkflowDefinition, field: str) -> FieldSpec | None:
    spec = d.fields.get(field)
    return spec if spec is not None and spec.type == "list" and spec.fields else None
