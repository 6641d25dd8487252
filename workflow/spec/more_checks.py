"""Semantic checks of the document capability, the ``exclusive:`` control and the
``fire_on_matching`` action (beside workflow/spec/checks.py, which calls them): each problem
at its line."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from workflow.errors import Problem
from workflow.spec import expressions
from workflow.spec.model import BUILTIN_NAMES
from workflow.spec.source import KeyPath, Lines, line_of

#: field types that can be a key (compared by value): not lists, files or free text
KEY_TYPES = ("string", "choice", "integer", "user", "reference", "date", "boolean")


def document_capability(doc: dict[str, Any], lines: Lines, origin: str) -> list[Problem]:
    document = doc.get("capabilities", {}).get("document")
    if not document:
        return []
    out: list[Problem] = []
    fields, states = doc["fields"], doc["states"]

    def err(path: KeyPath, message: str) -> None:
        out.append(Problem(origin, line_of(lines, path), message))

    for key, types in (("number", ("string",)), ("version", ("integer", "string")),
                       ("title", ("string",)), ("type", ("choice", "string")),
                       ("effective_date", ("date",)), ("retraining_days", ("integer",)),
                       ("next_review", ("date",))):
        name = document.get(key)
        if name is None:
            continue
        path = ("capabilities", "document", key)
        if name not in fields:
            err(path, f"capability document.{key} names unknown field {name!r}")
        elif fields[name].get("type") not in types:
            err(path, f"capability document.{key}: field {name!r} must be of type "
                      f"{' or '.join(types)}")
    state = document["effective_state"]
    path = ("capabilities", "document", "effective_state")
    if state not in states:
        err(path, f"capability document.effective_state names unknown state {state!r}")
    elif states[state].get("final"):
        err(path, f"capability document.effective_state: {state!r} is a final state; the "
                  "version in force must be able to be superseded or retired")
    return out


def inventory_capability(doc: dict[str, Any], lines: Lines, origin: str) -> list[Problem]:
    """``capabilities.inventory``: its fields exist with the right types, its active state
    exists and is not final."""
    inv = doc.get("capabilities", {}).get("inventory")
    if not inv:
        return []
    out: list[Problem] = []
    fields, states = doc["fields"], doc["states"]
    for key, types in (("name", ("string",)), ("owner", ("user",)), ("in_scope", ("boolean",))):
        name = inv.get(key)
        if name is None:
            continue
        path = ("capabilities", "inventory", key)
        if name not in fields:
            out.append(Problem(origin, line_of(lines, path),
                               f"capability inventory.{key} names unknown field {name!r}"))
        elif fields[name].get("type") not in types:
            out.append(Problem(origin, line_of(lines, path),
                               f"capability inventory.{key}: field {name!r} must be of type "
                               f"{' or '.join(types)}"))
    state = inv.get("active_state")
    if state not in states or states[state].get("final"):
        out.append(Problem(origin, line_of(lines, ("capabilities", "inventory", "active_state")),
                           f"capability inventory.active_state {state!r} must name a state "
                           "that is not final"))
    return out


def curriculum_capability(doc: dict[str, Any], lines: Lines, origin: str) -> list[Problem]:
    """``capabilities.curriculum``: the role, list and days fields exist with the right
    types, the document and kind are sub-fields of the list, the active state exists."""
    cur = doc.get("capabilities", {}).get("curriculum")
    if not cur:
        return []
    out: list[Problem] = []
    fields, states = doc["fields"], doc["states"]

    def err(key: str, message: str) -> None:
        out.append(Problem(origin, line_of(lines, ("capabilities", "curriculum", key)),
                           message))

    for key, types in (("role", ("string", "choice")), ("items", ("list",)),
                       ("due_days", ("integer",))):
        name = cur.get(key)
        if name is None:
            continue
        if name not in fields:
            err(key, f"capability curriculum.{key} names unknown field {name!r}")
        elif fields[name].get("type") not in types:
            err(key, f"capability curriculum.{key}: field {name!r} must be of type "
                     f"{' or '.join(types)}")
    items = fields.get(cur.get("items"), {})
    subs = items.get("fields", {}) if isinstance(items, dict) else {}
    for key in ("document", "kind"):
        name = cur.get(key)
        if name is not None and items and name not in subs:
            err(key, f"capability curriculum.{key}: the list field {cur.get('items')!r} has "
                     f"no sub-field {name!r}")
    state = cur.get("active_state", "active")
    if state not in states:
        err("active_state", f"capability curriculum.active_state names unknown state {state!r}")
    return out


def exclusive(doc: dict[str, Any], lines: Lines, origin: str) -> list[Problem]:
    out: list[Problem] = []
    fields, states = doc["fields"], doc["states"]
    for i, rule in enumerate(doc.get("exclusive", [])):
        for j, name in enumerate(rule["key"]):
            path = ("exclusive", i, "key", j)
            if name not in fields:
                out.append(Problem(origin, line_of(lines, path),
                                   f"exclusive key names unknown field {name!r}"))
            elif fields[name].get("type") not in KEY_TYPES:
                out.append(Problem(origin, line_of(lines, path),
                                   f"exclusive key field {name!r} is of type "
                                   f"{fields[name].get('type')}; a key must be one of "
                                   f"{', '.join(KEY_TYPES)}"))
        for j, name in enumerate(rule["states"]):
            if name not in states:
                out.append(Problem(origin, line_of(lines, ("exclusive", i, "states", j)),
                                   f"exclusive names unknown state {name!r}"))
    return out


def fire_on_matching(doc: dict[str, Any], lines: Lines, origin: str, path: KeyPath,
                     params: dict[str, Any], state: str,
                     knows: Callable[[object], bool]) -> list[Problem]:
    """The action's transition exists (in this workflow; another workflow's is checked when
    the set is loaded together), its match fields are declared, ``when`` reads known names
    (and ``other``); it does not fire on records of its own state by a step into it."""
    out: list[Problem] = []

    def err(p: KeyPath, message: str) -> None:
        out.append(Problem(origin, line_of(lines, p), message))

    own = params.get("workflow") in (None, doc["key"])
    if not own and not knows(params["workflow"]):
        err((*path, "workflow"), f"action names unknown workflow {params['workflow']!r}")
    for j, name in enumerate(params["match"]):
        if name not in doc["fields"]:
            err((*path, "match", j), f"fire_on_matching matches on unknown field {name!r}")
    if own:
        t = next((x for x in doc["transitions"] if x["name"] == params["transition"]), None)
        if t is None:
            err((*path, "transition"),
                f"fire_on_matching fires unknown transition {params['transition']!r}")
        elif t["to"] == state:
            err((*path, "transition"),
                f"fire_on_matching on entering {state!r} fires {t['name']!r}, which enters "
                f"{state!r} again (it would reach every record in turn)")
    if "when" in params:
        try:
            names = expressions.names_in(params["when"])
        except expressions.ExpressionError as exc:
            err((*path, "when"), f"invalid expression: {exc}")
        else:
            known = set(doc["fields"]) | BUILTIN_NAMES | set(expressions.FUNCTIONS) | {"other"}
            for n in sorted(names - known):
                err((*path, "when"), f"expression uses unknown name {n!r}")
    return out
