"""The migration plan file: its format and how it is read (the rules it must pass are
:mod:`workflow.change_control.plan_preview`; the format is in docs/definitions.md,
"Migrating running records")."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from workflow import canonical
from workflow.errors import DefinitionError, WorkflowError
from workflow.spec.source import bounded_load

_KEYS = {"id", "workflow", "from_version", "to_version", "mapping", "filter", "drop_fields",
         "allow_upstream", "upstream_reason", "description"}


class PlanInvalid(WorkflowError):
    """The plan file is malformed or the plan is refused; ``problems`` lists every reason."""

    code = "migration_refused"

    def __init__(self, problems: list[str], what: str = "the migration plan is refused"):
        self.problems = problems
        super().__init__(f"{what}:\n" + "\n".join(f"  - {p}" for p in problems))


@dataclass(frozen=True)
class MigrationPlan:
    id: str
    workflow: str
    from_version: int
    to_version: int
    mapping: Mapping[str, str]
    states: tuple[str, ...] = ()
    numbers: tuple[str, ...] = ()
    drop_fields: tuple[str, ...] = ()
    allow_upstream: bool = False
    upstream_reason: str = ""
    description: str = ""
    sha256: str = ""  # of the plan's canonical JSON form, named in the audit events

    def ref(self) -> dict[str, Any]:
        """How audit events name the plan."""
        return {"id": self.id, "sha256": self.sha256}


def load_plan(path: str | Path) -> MigrationPlan:
    return parse_plan(Path(path).read_text(encoding="utf-8"), origin=str(path))


def parse_plan(text: str | Mapping[str, Any], origin: str = "<plan>") -> MigrationPlan:
    """Read a plan from YAML text (or an already parsed mapping); raises PlanInvalid."""
    try:
        doc = bounded_load(text, origin) if isinstance(text, str) else dict(text)
    except yaml.YAMLError as exc:
        raise PlanInvalid([f"{origin}: not YAML: {exc}"], "the plan cannot be read") from None
    except DefinitionError as exc:  # over a size, depth or alias-expansion limit
        raise PlanInvalid([str(p) for p in exc.problems], "the plan cannot be read") from None
    if not isinstance(doc, dict):
        raise PlanInvalid([f"{origin}: the plan must be a mapping"], "the plan cannot be read")
    p: list[str] = []
    for k in sorted(set(doc) - _KEYS):
        p.append(f"unknown key {k!r} (allowed: {', '.join(sorted(_KEYS))})")
    for k in ("id", "workflow", "from_version", "to_version", "mapping"):
        if k not in doc:
            p.append(f"{k!r} is required")
    for k in ("id", "workflow"):
        if k in doc and (not isinstance(doc[k], str) or not doc[k].strip()):
            p.append(f"{k!r} must be a non-empty text")
    for k in ("from_version", "to_version"):
        if k in doc and (not isinstance(doc[k], int) or isinstance(doc[k], bool) or doc[k] < 1):
            p.append(f"{k!r} must be a version number (1, 2, ...)")
    mapping = doc.get("mapping")
    if "mapping" in doc and (not isinstance(mapping, dict) or not mapping or not all(
            isinstance(a, str) and isinstance(b, str) for a, b in mapping.items())):
        p.append("'mapping' must map old state names to new state names")
    flt = doc.get("filter") or {}
    if not isinstance(flt, dict) or set(flt) - {"states", "numbers"}:
        p.append("'filter' may only have 'states' and 'numbers' (lists)")
        flt = {}
    lists = {"drop_fields": doc.get("drop_fields") or [], **{k: flt.get(k) or [] for k in
                                                             ("states", "numbers")}}
    for k, v in lists.items():
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            p.append(f"{k!r} must be a list of names")
    if not isinstance(doc.get("allow_upstream", False), bool):
        p.append("'allow_upstream' must be true or false")
    if p:
        raise PlanInvalid(p, f"{origin}: the plan cannot be read")
    return MigrationPlan(
        id=doc["id"].strip(), workflow=doc["workflow"].strip(),
        from_version=doc["from_version"], to_version=doc["to_version"],
        mapping=dict(doc["mapping"]), states=tuple(lists["states"]),
        numbers=tuple(n.strip().upper() for n in lists["numbers"]),
        drop_fields=tuple(lists["drop_fields"]),
        allow_upstream=doc.get("allow_upstream", False),
        upstream_reason=str(doc.get("upstream_reason") or "").strip(),
        description=str(doc.get("description") or ""),
        sha256=canonical.sha256(doc))
