"""Load workflow definitions: YAML text in, a validated :class:`WorkflowDefinition` out.

Nothing loads until it validates: :func:`load_file` / :func:`load_text` run the JSON
Schema (``definitions/workflow.schema.json``) and then the semantic checks, and raise
:class:`~workflow.errors.DefinitionError` listing *every* problem as ``file:line: message``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from workflow.errors import DefinitionError, DefinitionTampered, Problem
from workflow.spec import kpis
from workflow.spec.checks import check, cross_check
from workflow.spec.model import (
    Action,
    AreaRule,
    Capabilities,
    CurriculumCapability,
    DocumentCapability,
    Exclusive,
    FieldSpec,
    Guard,
    InventoryCapability,
    Milestone,
    NotBefore,
    RiskCapability,
    Separation,
    SignatureSpec,
    StateSpec,
    TrainingCapability,
    TrainingRequirement,
    TransitionSpec,
    WaitsFor,
    WorkflowDefinition,
    parse_duration,
)
from workflow.spec.source import (
    SCHEMA_PATH,
    Lines,
    bounded_load,
    compose,
    line_of,
    schema_problems,
)

#: The shipped definitions (next to their JSON Schema).
DEFAULT_DEFINITIONS_DIR = SCHEMA_PATH.parent


def content_hash(doc: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON form: formatting and comments do not change it."""
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def load_file(
    path: str | Path, known_workflows: Mapping[str, WorkflowDefinition | None] | None = None
) -> WorkflowDefinition:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DefinitionError([Problem(str(path), 1, f"cannot read the file: {exc}")]) from exc
    return load_text(text, origin=str(path), known_workflows=known_workflows)


def load_text(
    text: str,
    origin: str = "<string>",
    known_workflows: Mapping[str, WorkflowDefinition | None] | None = None,
) -> WorkflowDefinition:
    """Parse and validate one definition.

    Args:
        text: the YAML source.
        origin: the file name used in problem messages.
        known_workflows: other workflows by key (value may be None when only the key is known)
            so that ``create_record`` and ``reference`` fields can be checked. When None, the
            definition's own key is the only known workflow.

    Raises:
        DefinitionError: with every problem found, each located by line.
    """
    doc, lines, problems = compose(text, origin)
    if doc is None:
        raise DefinitionError(problems)
    if not isinstance(doc, dict):
        raise DefinitionError([Problem(origin, 1, "the top level must be a mapping of keys")])
    problems.extend(schema_problems(doc, lines, origin))
    if problems:
        raise DefinitionError(_dedupe(problems))
    problems = check(doc, lines, origin, known_workflows)
    if problems:
        raise DefinitionError(_dedupe(problems))
    return _build(doc, text, origin, lines)


def load_directory(directory: str | Path | None = None) -> dict[str, WorkflowDefinition]:
    """Load every ``*.yaml`` in ``directory`` (the shipped definitions by default), checking
    cross-workflow references among them. Raises DefinitionError with all problems."""
    directory = Path(directory) if directory else DEFAULT_DEFINITIONS_DIR
    files = sorted(directory.glob("*.yaml"))
    return load_files(files)


def load_files(files: Iterable[str | Path]) -> dict[str, WorkflowDefinition]:
    """Load ``files`` as one set: references among them are checked, and a key defined twice
    is a problem. Raises DefinitionError with all problems of all files."""
    paths = [Path(f) for f in files]
    keys = peek_keys(paths)
    known: dict[str, WorkflowDefinition | None] = {k: None for k in keys}
    out: dict[str, WorkflowDefinition] = {}
    problems: list[Problem] = []
    for f in paths:
        try:
            d = load_file(f, known_workflows=known)
        except DefinitionError as exc:
            problems.extend(exc.problems)
            continue
        if d.key in out:
            problems.append(Problem(str(f), 1, f"workflow key {d.key!r} is defined twice"))
        out[d.key] = d
    problems.extend(cross_check(out))
    if problems:
        raise DefinitionError(problems)
    return out


def peek_keys(files: Iterable[Path]) -> list[str]:
    """The ``key:`` of each file that has one, without validating anything."""
    keys = []
    for f in files:
        try:
            doc = bounded_load(f.read_text(encoding="utf-8"), str(f))
        except (OSError, yaml.YAMLError, UnicodeDecodeError, DefinitionError):
            continue
        if isinstance(doc, dict) and isinstance(doc.get("key"), str):
            keys.append(doc["key"])
    return keys


def _dedupe(problems: list[Problem]) -> list[Problem]:
    seen: set[tuple[str, int | None, str]] = set()
    out = []
    for p in problems:
        k = (p.file, p.line, p.message)
        if k not in seen:
            seen.add(k)
            out.append(p)
    return sorted(out, key=lambda p: (p.line or 0))


# --------------------------------------------------------------------------- building


def _training(items: list[dict[str, Any]] | None) -> tuple[TrainingRequirement, ...]:
    return tuple(TrainingRequirement(i["document"], i.get("version")) for i in items or ())


def _field_from(name: str, spec: dict[str, Any]) -> FieldSpec:
    return FieldSpec(
        name=name,
        type=spec["type"],
        label=spec.get("label", name.replace("_", " ").capitalize()),
        help=spec.get("help", ""),
        choices=tuple(spec.get("choices", ())),
        workflow=spec.get("workflow"),
        min=spec.get("min"),
        max=spec.get("max"),
        max_length=spec.get("max_length"),
        default=spec.get("default"),
        item=_field_from("item", spec["item"]) if "item" in spec else None,
        fields=tuple(_field_from(n, s) for n, s in spec.get("fields", {}).items()),
        link=spec.get("link"),
        generated=bool(spec.get("generated")),
        editable=tuple(spec.get("editable", ())),
        subject=spec.get("subject"),
        csv_import=bool(spec.get("csv_import")),
        computed=spec.get("computed"),
    )


def _build(doc: dict[str, Any], text: str, origin: str, lines: Lines) -> WorkflowDefinition:
    states = {}
    for name, s in doc["states"].items():
        states[name] = StateSpec(
            name=name,
            label=s.get("label", name.replace("_", " ").capitalize()),
            initial=bool(s.get("initial")),
            final=bool(s.get("final")),
            outcome=s.get("outcome"),
            owners=tuple([s["owner"]] if isinstance(s.get("owner"), str) else s.get("owner", ())),
            assignee_field=s.get("assignee_field"),
            due_in=parse_duration(s["due_in"]) if "due_in" in s else None,
            due_field=s.get("due_field"),
            on_enter=tuple(
                Action(kind=k, params=dict(v), line=line_of(lines, ("states", name, "on_enter", i)))
                for i, a in enumerate(s.get("on_enter", [])) for k, v in a.items()
            ),
            training=_training(s.get("training")),
        )
    transitions = {}
    for t in doc["transitions"]:
        sig = t.get("signature")
        sep = t.get("separation", {})
        transitions[t["name"]] = TransitionSpec(
            name=t["name"],
            label=t.get("label", t["name"].replace("_", " ").capitalize()),
            sources=tuple([t["from"]] if isinstance(t["from"], str) else t["from"]),
            dest=t["to"],
            roles=tuple(t["roles"]),
            edits=tuple(t.get("edits", ())),
            requires=tuple(t.get("requires", ())),
            guards=tuple(Guard(g["when"], g["message"]) for g in t.get("guards", ())),
            reason_required=bool(t.get("reason_required")),
            signature=SignatureSpec(
                meaning=sig["meaning"],
                roles=tuple(sig.get("roles") or t["roles"]),
                quorum=sig.get("quorum", len(sig.get("roles") or t["roles"])
                               if sig.get("one_per_role") else 1),
                one_per_role=bool(sig.get("one_per_role")),
                roles_when=tuple((str(r), str(w)) for r, w in
                                 (sig.get("roles_when") or {}).items()),
            )
            if sig
            else None,
            separation=Separation(
                not_initiator=bool(sep.get("not_initiator")),
                not_actor_of=tuple(sep.get("not_actor_of", ())),
                not_named_in=tuple(sep.get("not_named_in", ())),
                not_in_area=AreaRule(sep["not_in_area"]["field"],
                                     tuple(sep["not_in_area"].get("named_in", ())))
                if sep.get("not_in_area") else None,
            ),
            training=_training(t.get("training")),
            locks=tuple(t.get("locks", ())),
            editable_after=tuple(t.get("editable_after", ())),
            unlocks=tuple(t.get("unlocks", ())),
            not_before=_not_before(t.get("not_before")),
            waits_for=tuple(WaitsFor(w.get("workflow"), w.get("link"), w.get("outcome"),
                                     tuple(w.get("states", ())), w.get("via"))
                            for w in t.get("waits_for", ())),
        )
    milestones = {
        n: Milestone(n, m.get("label", n.replace("_", " ").capitalize()), m.get("start", ""),
                     m["stop"], m.get("start_field"))
        for n, m in doc.get("milestones", {}).items()
    }
    start = doc["start"]
    return WorkflowDefinition(
        key=doc["key"],
        title=doc["title"],
        prefix=doc["prefix"],
        description=doc.get("description", ""),
        risk=doc.get("risk", "high"),
        process_owner=doc.get("process_owner"),
        due_in=parse_duration(doc["due_in"]) if "due_in" in doc else None,
        extension_roles=tuple(doc.get("extension_roles", ("qa",) if "qa" in doc["roles"] else ())),
        roles=dict(doc["roles"]),
        fields={n: _field_from(n, s) for n, s in doc["fields"].items()},
        start_roles=tuple(start["roles"]),
        start_edits=tuple(start.get("edits", ())),
        start_requires=tuple(start.get("requires", ())),
        start_guards=tuple(Guard(g["when"], g["message"]) for g in start.get("guards", ())),
        states=states,
        transitions=transitions,
        milestones=milestones,
        capabilities=_capabilities(doc.get("capabilities", {})),
        exclusive=tuple(Exclusive(tuple(x["key"]), tuple(x["states"]), x.get("message", ""))
                        for x in doc.get("exclusive", ())),
        kpis=kpis.build(doc),
        source=text,
        content_hash=content_hash(doc),
        origin=origin,
    )


def _not_before(nb: Mapping[str, Any] | None) -> NotBefore | None:
    if not nb:
        return None
    return NotBefore(field=nb.get("field"),
                     after=parse_duration(nb["after"]) if "after" in nb else None,
                     early=nb.get("early", "refuse"))


def _capabilities(doc: Mapping[str, Any]) -> Capabilities:
    t = doc.get("training")
    dc = doc.get("document")
    inv = doc.get("inventory")
    return Capabilities(
        training=TrainingCapability(t["trainee"], t["document"], t.get("version"),
                                    t.get("due")) if t else None,
        document=DocumentCapability(
            number=dc["number"], version=dc["version"], title=dc["title"],
            effective_state=dc["effective_state"], type=dc.get("type"),
            effective_date=dc.get("effective_date"), retraining_days=dc.get("retraining_days"),
            next_review=dc.get("next_review")) if dc else None,
        inventory=InventoryCapability(inv["name"], inv["active_state"], inv.get("owner"),
                                      inv.get("in_scope")) if inv else None,
        risk=RiskCapability(**{**doc["risk"], "links": tuple(doc["risk"].get(
            "links", ("capa", "change")))}) if doc.get("risk") else None,
        curriculum=CurriculumCapability(c["role"], c["items"], c["document"], c.get("kind"),
                                        c.get("due_days"), c.get("active_state", "active"))
        if (c := doc.get("curriculum")) else None)


class _AnyWorkflow(dict[str, WorkflowDefinition | None]):
    """Published sources were validated against their siblings when published; when
    recompiling one alone, accept references to any workflow key."""

    def __contains__(self, key: object) -> bool:
        return True

    def get(self, key: object, default: Any = None) -> None:
        return None


#: published versions already read in this process, keyed by what was checked: key, version,
#: recorded hash and the SHA-256 of the exact source text. The text's digest is recomputed on
#: every call, so a source changed behind the application's back misses here and is parsed
#: and checked again (and refused); an unchanged one is not parsed again by the next engine,
#: CLI command or verify-audit run of the process. Failures are never kept.
_PUBLISHED: dict[tuple[str, int, str, str], WorkflowDefinition] = {}


def published(row: Any) -> WorkflowDefinition:
    """The definition a published version's stored source describes, after checking that the
    source still has the version's recorded content hash (``row``: a definition_versions row
    with ``key``, ``version``, ``source`` and ``content_hash``). The registry compiles
    nothing else, and verify-audit checks every version with it.

    Raises:
        DefinitionTampered: the source (or its hash) was changed outside the application.
    """
    memo = (row.key, row.version, row.content_hash,
            hashlib.sha256(row.source.encode()).hexdigest())
    hit = _PUBLISHED.get(memo)
    if hit is not None:
        return hit
    try:
        d = load_text(row.source, origin=f"{row.key} v{row.version}",
                      known_workflows=_AnyWorkflow())
    except DefinitionError:
        raise DefinitionTampered(row.key, row.version, row.content_hash, None) from None
    if d.content_hash != row.content_hash:
        raise DefinitionTampered(row.key, row.version, row.content_hash, d.content_hash)
    _PUBLISHED[memo] = d
    return d
