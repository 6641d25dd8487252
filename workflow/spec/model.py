"""Load and validate YAML workflow definitions into frozen dataclasses.

Nothing loads until it validates: :func:`load_file` / :func:`load_text` run the JSON
Schema (``definitions/workflow.schema.json``) and then the semantic checks, and raise
:class:`~workflow.errors.DefinitionError` listing *every* problem as ``file:line: message``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from workflow.errors import DefinitionError, Problem
from workflow.spec import expressions

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "definitions" / "workflow.schema.json"
DEFAULT_DEFINITIONS_DIR = SCHEMA_PATH.parent

#: Pseudo-roles usable in ``roles:`` lists without being declared.
PSEUDO_ROLES = frozenset({"initiator", "assignee"})
#: Names every guard and copy expression may use besides the workflow's fields.
BUILTIN_NAMES = frozenset({"now", "today", "item", "user", "initiator", "actor", "number"})

_DURATION = re.compile(r"^([1-9][0-9]*)([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str) -> timedelta:
    """``"90d"`` -> ``timedelta(days=90)``; units m, h, d, w."""
    m = _DURATION.match(text)
    if not m:
        raise ValueError(f"not a duration: {text!r} (use e.g. 30m, 12h, 90d, 2w)")
    return timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})


# --------------------------------------------------------------------------- dataclasses


@dataclass(frozen=True)
class FieldSpec:
    name: str
    type: str
    label: str
    help: str = ""
    choices: tuple[str, ...] = ()
    workflow: str | None = None
    min: float | None = None
    max: float | None = None
    max_length: int | None = None
    default: Any = None
    item: FieldSpec | None = None
    fields: tuple[FieldSpec, ...] = ()
    link: str | None = None  # reference fields: also record a link of this kind


@dataclass(frozen=True)
class Action:
    kind: str  # create_record | set_due | start_timer | notify | revoke_grants | publish_draft
    params: Mapping[str, Any]
    line: int = field(default=0, compare=False)


@dataclass(frozen=True)
class TrainingRequirement:
    """Current training needed (Part 11 §11.10(i)): a completed training_assignment for the
    document (and version, when given) whose trainee is the actor."""

    document: str
    version: str | None = None

    def __str__(self) -> str:
        return f"{self.document} version {self.version}" if self.version else self.document


def _training(items: list[dict] | None) -> tuple[TrainingRequirement, ...]:
    return tuple(TrainingRequirement(i["document"], i.get("version")) for i in items or ())


@dataclass(frozen=True)
class StateSpec:
    name: str
    label: str
    initial: bool = False
    final: bool = False
    outcome: str | None = None  # for final states: "done" or "void"
    owners: tuple[str, ...] = ()  # roles (or initiator) owning a task each in this state
    assignee_field: str | None = None
    due_in: timedelta | None = None
    due_field: str | None = None
    on_enter: tuple[Action, ...] = ()
    training: tuple[TrainingRequirement, ...] = ()  # for anyone acting in this state


@dataclass(frozen=True)
class Guard:
    when: str
    message: str


@dataclass(frozen=True)
class SignatureSpec:
    meaning: str
    roles: tuple[str, ...]
    quorum: int = 1
    one_per_role: bool = False


@dataclass(frozen=True)
class Separation:
    not_initiator: bool = False
    not_actor_of: tuple[str, ...] = ()


@dataclass(frozen=True)
class TransitionSpec:
    name: str
    label: str
    sources: tuple[str, ...]
    dest: str
    roles: tuple[str, ...]
    edits: tuple[str, ...] = ()
    requires: tuple[str, ...] = ()
    guards: tuple[Guard, ...] = ()
    reason_required: bool = False
    signature: SignatureSpec | None = None
    separation: Separation = field(default_factory=Separation)
    training: tuple[TrainingRequirement, ...] = ()


@dataclass(frozen=True)
class Milestone:
    name: str
    label: str
    start: str
    stop: str


@dataclass(frozen=True)
class WorkflowDefinition:
    key: str
    title: str
    prefix: str
    description: str
    risk: str
    process_owner: str | None
    due_in: timedelta | None
    extension_roles: tuple[str, ...]
    roles: Mapping[str, str]
    fields: Mapping[str, FieldSpec]
    start_roles: tuple[str, ...]
    start_edits: tuple[str, ...]
    start_requires: tuple[str, ...]
    states: Mapping[str, StateSpec]
    transitions: Mapping[str, TransitionSpec]
    milestones: Mapping[str, Milestone]
    source: str = field(repr=False, compare=False)
    start_guards: tuple[Guard, ...] = ()
    content_hash: str = ""
    origin: str = "<string>"

    @property
    def initial_state(self) -> str:
        return next(s.name for s in self.states.values() if s.initial)

    def transitions_from(self, state: str) -> list[TransitionSpec]:
        return [t for t in self.transitions.values() if state in t.sources]

    def summary(self) -> str:
        finals = sum(1 for s in self.states.values() if s.final)
        gates = sum(1 for t in self.transitions.values() if t.signature)
        return (
            f"{self.key} ({self.title}): {len(self.states)} states ({finals} final), "
            f"{len(self.transitions)} transitions, {gates} signature gates, "
            f"{len(self.fields)} fields, sha256 {self.content_hash[:12]}"
        )


# --------------------------------------------------------------------------- YAML with lines


class _LineLoader(yaml.SafeLoader):
    """SafeLoader that records the line of every node and refuses duplicate keys."""


def _compose(text: str, origin: str) -> tuple[Any, dict[tuple, int], list[Problem]]:
    problems: list[Problem] = []
    lines: dict[tuple, int] = {}
    try:
        node = yaml.compose(text, Loader=_LineLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        problem = getattr(exc, "problem", None) or str(exc)
        problems.append(Problem(origin, line, f"YAML syntax error: {problem}"))
        return None, lines, problems
    if node is None:
        problems.append(Problem(origin, 1, "the file is empty"))
        return None, lines, problems

    loader = _LineLoader("")

    def build(n: yaml.Node, path: tuple) -> Any:
        lines[path] = n.start_mark.line + 1
        if isinstance(n, yaml.MappingNode):
            out: dict[str, Any] = {}
            for key_node, value_node in n.value:
                key = loader.construct_object(key_node, deep=True)
                if not isinstance(key, str):
                    key = str(key)
                if key in out:
                    problems.append(
                        Problem(origin, key_node.start_mark.line + 1, f"duplicate key {key!r}")
                    )
                    continue
                out[key] = build(value_node, (*path, key))
                # a key's own line is more useful than where its value starts
                lines[(*path, key)] = key_node.start_mark.line + 1
            return out
        if isinstance(n, yaml.SequenceNode):
            return [build(v, (*path, i)) for i, v in enumerate(n.value)]
        value = loader.construct_object(n, deep=True)
        # dates and similar: keep definitions JSON-compatible
        if not isinstance(value, str | int | float | bool | type(None)):
            value = str(value)
        return value

    return build(node, ()), lines, problems


def _line(lines: dict[tuple, int], path: Iterable) -> int:
    p = tuple(path)
    while p:
        if p in lines:
            return lines[p]
        p = p[:-1]
    return lines.get((), 1)


@cache
def _schema_validator() -> jsonschema.protocols.Validator:
    schema = json.loads(SCHEMA_PATH.read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def _error_path(err: jsonschema.ValidationError) -> tuple:
    """Point at the offending key itself where the schema error is about one."""
    path = tuple(err.absolute_path)
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        extra = sorted(set(err.instance) - set(err.schema.get("properties", {})))
        if extra:
            return (*path, extra[0])
    return path


def _schema_message(err: jsonschema.ValidationError) -> str:
    where = "/".join(str(p) for p in err.absolute_path) or "(top level)"
    if err.validator == "additionalProperties":
        return f"{where}: {err.message}"
    if err.validator == "required":
        return f"{where}: {err.message}"
    if err.validator == "pattern":
        return f"{where}: {err.instance!r} is not a valid name here (pattern {err.validator_value})"
    if err.validator == "enum":
        return f"{where}: {err.instance!r} is not one of {err.validator_value}"
    return f"{where}: {err.message}"


# --------------------------------------------------------------------------- public API


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
    doc, lines, problems = _compose(text, origin)
    if doc is None:
        raise DefinitionError(problems)
    if not isinstance(doc, dict):
        raise DefinitionError([Problem(origin, 1, "the top level must be a mapping of keys")])
    for err in sorted(_schema_validator().iter_errors(doc), key=lambda e: list(e.absolute_path)):
        problems.append(Problem(origin, _line(lines, _error_path(err)), _schema_message(err)))
    if problems:
        raise DefinitionError(_dedupe(problems))
    checker = _SemanticChecker(doc, lines, origin, known_workflows)
    problems = checker.check()
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
    files = [Path(f) for f in files]
    keys = _peek_keys(files)
    known: dict[str, WorkflowDefinition | None] = {k: None for k in keys}
    out: dict[str, WorkflowDefinition] = {}
    problems: list[Problem] = []
    for f in files:
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


def cross_check(defs: Mapping[str, WorkflowDefinition]) -> list[Problem]:
    """Checks that need both ends of a ``create_record``: the copied fields must be ones the
    target's start may set, and the target's required start fields must all be copied."""
    problems = []
    for d in defs.values():
        for state in d.states.values():
            for a in state.on_enter:
                if a.kind != "create_record" or a.params["workflow"] not in defs:
                    continue
                target = defs[a.params["workflow"]]
                copied = set(a.params.get("copy", {}))
                for f in sorted(copied - set(target.start_edits)):
                    problems.append(Problem(d.origin, a.line,
                                            f"copies {f!r}, which starting a {target.key} "
                                            "cannot set (not in its start: edits)"))
                for f in sorted(set(target.start_requires) - copied):
                    problems.append(Problem(d.origin, a.line,
                                            f"does not copy {f!r}, which starting a "
                                            f"{target.key} requires"))
    return problems


def _peek_keys(files: Iterable[Path]) -> list[str]:
    keys = []
    for f in files:
        try:
            doc = yaml.safe_load(f.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError, UnicodeDecodeError):
            continue
        if isinstance(doc, dict) and isinstance(doc.get("key"), str):
            keys.append(doc["key"])
    return keys


def _dedupe(problems: list[Problem]) -> list[Problem]:
    seen = set()
    out = []
    for p in problems:
        k = (p.file, p.line, p.message)
        if k not in seen:
            seen.add(k)
            out.append(p)
    return sorted(out, key=lambda p: (p.line or 0))


# --------------------------------------------------------------------------- semantics


class _SemanticChecker:
    def __init__(self, doc: dict, lines: dict, origin: str, known: Mapping | None):
        self.doc = doc
        self.lines = lines
        self.origin = origin
        self.known = known if known is not None else {}
        self.own_key = doc["key"]
        self.problems: list[Problem] = []
        self.roles = set(doc["roles"])
        self.fields = doc["fields"]
        self.states = doc["states"]
        self.transitions = doc["transitions"]

    def _knows(self, workflow: object) -> bool:
        return workflow == self.own_key or workflow in self.known

    def err(self, path: Iterable, message: str) -> None:
        self.problems.append(Problem(self.origin, _line(self.lines, path), message))

    def check(self) -> list[Problem]:
        self._roles_and_fields()
        self._states()
        names = self._transitions()
        self._graph()
        self._actions(names)
        self._milestones()
        return self.problems

    # roles: declared names or pseudo-roles
    def _role(self, path: tuple, role: str, allow_pseudo: bool = True) -> None:
        if role in self.roles:
            return
        if allow_pseudo and role in PSEUDO_ROLES:
            return
        self.err(path, f"role {role!r} is used but not declared under roles:")

    def _field(self, path: tuple, name: str, what: str = "field") -> None:
        if name not in self.fields:
            self.err(path, f"{what} {name!r} is used but not declared under fields:")

    def _expr(self, path: tuple, text: str, extra: Iterable[str] = ()) -> None:
        try:
            names = expressions.names_in(text)
        except expressions.ExpressionError as exc:
            self.err(path, f"expression does not parse: {exc}")
            return
        allowed = set(self.fields) | BUILTIN_NAMES | set(expressions.FUNCTIONS) | set(extra)
        for n in sorted(names - allowed):
            self.err(path, f"expression uses {n!r}, which is not a declared field")

    def _roles_and_fields(self) -> None:
        for r in self.roles & PSEUDO_ROLES:
            self.err(("roles", r), f"{r!r} is a built-in pseudo-role and must not be declared")
        for i, r in enumerate(self.doc.get("extension_roles", [])):
            self._role(("extension_roles", i), r, allow_pseudo=False)
        if "process_owner" in self.doc:
            self._role(("process_owner",), self.doc["process_owner"], allow_pseudo=False)
        start = self.doc["start"]
        for i, r in enumerate(start["roles"]):
            self._role(("start", "roles", i), r, allow_pseudo=False)
        for key in ("edits", "requires"):
            for i, f in enumerate(start.get(key, [])):
                self._field(("start", key, i), f)
        for i, g in enumerate(start.get("guards", [])):
            self._expr(("start", "guards", i, "when"), g["when"])
        for i, f in enumerate(start.get("requires", [])):
            if f not in start.get("edits", []):
                self.err(("start", "requires", i), f"start requires {f!r} but does not edit it")
        for name, spec in self.fields.items():
            self._field_spec(("fields", name), spec)

    def _field_spec(self, path: tuple, spec: dict) -> None:
        t = spec["type"]
        if t == "reference" and not self._knows(spec.get("workflow")):
            self.err((*path, "workflow"), f"reference to unknown workflow {spec.get('workflow')!r}")
        if "link" in spec and t != "reference":
            self.err((*path, "link"), "link: only applies to type: reference")
        if "choices" in spec and t != "choice":
            self.err((*path, "choices"), "choices: only applies to type: choice")
        if "default" in spec and t == "choice" and spec["default"] not in spec.get("choices", []):
            self.err((*path, "default"), f"default {spec['default']!r} is not one of the choices")
        if t == "list":
            if "item" in spec:
                self._field_spec((*path, "item"), spec["item"])
            for n, sub in spec.get("fields", {}).items():
                self._field_spec((*path, "fields", n), sub)

    def _states(self) -> None:
        initial = [n for n, s in self.states.items() if s.get("initial")]
        finals = [n for n, s in self.states.items() if s.get("final")]
        if len(initial) != 1:
            self.err(("states",), f"exactly one state must be initial: true (found {len(initial)})")
        if not finals:
            self.err(("states",), "at least one state must be final: true")
        for name, s in self.states.items():
            p = ("states", name)
            if s.get("initial") and s.get("final"):
                self.err(p, f"state {name!r} cannot be both initial and final")
            if s.get("final") and "outcome" not in s:
                self.err(p, f"final state {name!r} needs outcome: done or void (used by KPIs)")
            if not s.get("final") and "outcome" in s:
                self.err((*p, "outcome"), f"outcome only applies to final states ({name!r})")
            if s.get("final") and (s.get("owner") or s.get("due_in")):
                self.err(p, f"final state {name!r} cannot own a task or have a due date")
            owners = [s["owner"]] if isinstance(s.get("owner"), str) else s.get("owner", [])
            for j, o in enumerate(owners):
                self._role((*p, "owner") if isinstance(s["owner"], str) else (*p, "owner", j), o)
            if "assignee_field" in s:
                self._field((*p, "assignee_field"), s["assignee_field"])
                if self.fields.get(s["assignee_field"], {}).get("type") not in (None, "user"):
                    self.err((*p, "assignee_field"), "assignee_field must be a field of type user")
            if "due_field" in s:
                self._field((*p, "due_field"), s["due_field"])
                if self.fields.get(s["due_field"], {}).get("type") not in (None, "date", "datetime"):
                    self.err((*p, "due_field"), "due_field must be a date or datetime field")
            if "due_in" in s and "due_field" in s:
                self.err(p, "use due_in or due_field, not both")

    def _transitions(self) -> set[str]:
        names: set[str] = set()
        for i, t in enumerate(self.transitions):
            p = ("transitions", i)
            name = t["name"]
            if name in names:
                self.err((*p, "name"), f"duplicate transition name {name!r}")
            names.add(name)
            sources = [t["from"]] if isinstance(t["from"], str) else t["from"]
            for j, src in enumerate(sources):
                sp = (*p, "from") if isinstance(t["from"], str) else (*p, "from", j)
                if src not in self.states:
                    self.err(sp, f"transition {name!r} starts from unknown state {src!r}")
                elif self.states[src].get("final"):
                    self.err(sp, f"transition {name!r} leaves final state {src!r}")
            if t["to"] not in self.states:
                self.err((*p, "to"), f"transition {name!r} goes to unknown state {t['to']!r}")
            if not t["roles"]:
                self.err((*p, "roles"), f"transition {name!r} allows no role")
            for j, r in enumerate(t["roles"]):
                self._role((*p, "roles", j), r)
            for key in ("edits", "requires"):
                for j, f in enumerate(t.get(key, [])):
                    self._field((*p, key, j), f)
            for j, g in enumerate(t.get("guards", [])):
                self._expr((*p, "guards", j, "when"), g["when"])
            sig = t.get("signature")
            if sig is not None:
                if not sig["meaning"].strip():
                    self.err((*p, "signature", "meaning"), f"signature gate on {name!r} has no meaning")
                roles = sig.get("roles") or t["roles"]
                for j, r in enumerate(sig.get("roles", [])):
                    self._role((*p, "signature", "roles", j), r, allow_pseudo=False)
                quorum = sig.get("quorum", 1)
                if sig.get("one_per_role") and "quorum" in sig and quorum != len(roles):
                    self.err((*p, "signature", "quorum"),
                             f"one_per_role needs quorum equal to the number of roles ({len(roles)})")
            sep = t.get("separation", {})
            for j, other in enumerate(sep.get("not_actor_of", [])):
                if other not in {x["name"] for x in self.transitions}:
                    self.err((*p, "separation", "not_actor_of", j),
                             f"separation refers to unknown transition {other!r}")
        return names

    def _graph(self) -> None:
        if not all(t["to"] in self.states for t in self.transitions):
            return
        edges: dict[str, set[str]] = {s: set() for s in self.states}
        for t in self.transitions:
            for src in [t["from"]] if isinstance(t["from"], str) else t["from"]:
                if src in edges:
                    edges[src].add(t["to"])
        initial = [n for n, s in self.states.items() if s.get("initial")]
        if len(initial) == 1:
            seen = reachable(initial[0], edges)
            for s in self.states:
                if s not in seen:
                    self.err(("states", s), f"state {s!r} is unreachable from the initial state")
        finals = {n for n, s in self.states.items() if s.get("final")}
        reverse: dict[str, set[str]] = {s: set() for s in self.states}
        for src, dests in edges.items():
            for d in dests:
                reverse[d].add(src)
        can_finish: set[str] = set()
        for f in finals:
            can_finish |= reachable(f, reverse)
        for s in self.states:
            if s not in can_finish:
                self.err(("states", s), f"state {s!r} has no path to a final state")

    def _actions(self, transition_names: set[str]) -> None:
        for sname, s in self.states.items():
            for i, action in enumerate(s.get("on_enter", [])):
                kind, params = next(iter(action.items()))
                p = ("states", sname, "on_enter", i, kind)
                if kind == "create_record":
                    wf = params["workflow"]
                    if not self._knows(wf):
                        self.err((*p, "workflow"), f"action names unknown workflow {wf!r}")
                    extra = ("item",) if "for_each" in params else ()
                    for key in ("when", "for_each"):
                        if key in params:
                            self._expr((*p, key), params[key])
                    target = self.known.get(wf)
                    for tf, expr in params.get("copy", {}).items():
                        self._expr((*p, "copy", tf), expr, extra)
                        if target is not None and tf not in target.fields:
                            self.err((*p, "copy", tf), f"workflow {wf!r} has no field {tf!r}")
                elif kind == "set_due":
                    self._field((*p, "field"), params["field"])
                    if "after_days_field" in params:
                        self._field((*p, "after_days_field"), params["after_days_field"])
                elif kind == "start_timer":
                    tn = params["transition"]
                    if tn not in transition_names:
                        self.err((*p, "transition"), f"timer fires unknown transition {tn!r}")
                    else:
                        t = next(x for x in self.transitions if x["name"] == tn)
                        srcs = [t["from"]] if isinstance(t["from"], str) else t["from"]
                        if sname not in srcs:
                            self.err((*p, "transition"),
                                     f"timer transition {tn!r} cannot fire from state {sname!r}")
                    if "after_field" in params:
                        self._field((*p, "after_field"), params["after_field"])
                elif kind == "notify":
                    if "role" in params:
                        self._role((*p, "role"), params["role"])
                    if "field" in params:
                        self._field((*p, "field"), params["field"])
                    if "role" not in params and "field" not in params:
                        self.err(p, "notify needs role: or field: (who receives it)")
                    if "when" in params:
                        self._expr((*p, "when"), params["when"])
                elif kind == "revoke_grants":
                    self._field((*p, "items"), params["items"])
                elif kind == "publish_draft":
                    for key, default in (("draft_field", "draft_id"),
                                         ("hash_field", "content_hash")):
                        self._field((*p, key), params.get(key, default))
                    if "version_field" in params:
                        self._field((*p, "version_field"), params["version_field"])

    def _milestones(self) -> None:
        for name, m in self.doc.get("milestones", {}).items():
            for key in ("start", "stop"):
                if m[key] not in self.states:
                    self.err(("milestones", name, key),
                             f"milestone {name!r} {key} names unknown state {m[key]!r}")


def reachable(start: str, edges: Mapping[str, set[str]]) -> set[str]:
    """States reachable from ``start`` along ``edges`` (``start`` included)."""
    seen = {start}
    todo = [start]
    while todo:
        for nxt in edges.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


# --------------------------------------------------------------------------- building


def _field_from(name: str, spec: dict) -> FieldSpec:
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
    )


def _build(doc: dict, text: str, origin: str, lines: dict[tuple, int]) -> WorkflowDefinition:
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
                Action(kind=k, params=dict(v), line=_line(lines, ("states", name, "on_enter", i)))
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
            )
            if sig
            else None,
            separation=Separation(
                not_initiator=bool(sep.get("not_initiator")),
                not_actor_of=tuple(sep.get("not_actor_of", ())),
            ),
            training=_training(t.get("training")),
        )
    milestones = {
        n: Milestone(n, m.get("label", n.replace("_", " ").capitalize()), m["start"], m["stop"])
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
        source=text,
        content_hash=content_hash(doc),
        origin=origin,
    )
