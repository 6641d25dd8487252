"""Semantic checks of a definition: what the JSON Schema cannot say.

:func:`check` runs on one schema-valid document (names declared, a sound state graph,
actions and expressions that refer to what exists), each problem at its line;
:func:`cross_check` runs on built definitions and needs both ends of a ``create_record``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from workflow.errors import Problem
from workflow.spec import content, expressions, kpis, more_checks
from workflow.spec.model import BUILTIN_NAMES, PSEUDO_ROLES, RiskCapability, WorkflowDefinition
from workflow.spec.source import KeyPath, Lines, line_of

#: names a field (or a column of a list) may not have: the web forms that enter the values
#: are objects with these attributes (WTForms/Flask-WTF: process, data, errors, validate...,
#: and the step form's own reason, version and signature fields); a field named so broke the
#: form with a server error. tests/web/test_forms_reserved.py keeps the list complete.
RESERVED_FIELD_NAMES = frozenset({
    "data", "errors", "form_errors", "hidden_tag", "is_submitted", "meta", "populate_obj",
    "post_process", "process", "validate", "validate_on_submit", "csrf_token", "reason",
    "expected_version", "blank_rows", "sig_username", "sig_password", "sig_totp",
})


def check(doc: dict[str, Any], lines: Lines, origin: str,
          known: Mapping[str, WorkflowDefinition | None] | None = None) -> list[Problem]:
    """The semantic checks of a schema-valid document: every name it uses is declared,
    the state graph is sound (one initial state, every state reachable and able to finish),
    actions and expressions refer to what exists. ``known``: other workflows by key (see
    :func:`workflow.spec.load.load_text`)."""
    return _Checker(doc, lines, origin, known).check()


class _Checker:
    def __init__(self, doc: dict[str, Any], lines: Lines, origin: str,
                 known: Mapping[str, WorkflowDefinition | None] | None):
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

    def err(self, path: Iterable[str | int], message: str) -> None:
        self.problems.append(Problem(self.origin, line_of(self.lines, path), message))

    def check(self) -> list[Problem]:
        self._roles_and_fields()
        self._states()
        names = self._transitions()
        self._graph()
        self._actions(names)
        self._milestones()
        self._capabilities()
        self.problems.extend(more_checks.exclusive(self.doc, self.lines, self.origin))
        self.problems.extend(content.check(self.doc, self.lines, self.origin))
        self.problems.extend(kpis.check(self.doc, self.lines, self.origin))
        return self.problems

    # roles: declared names or pseudo-roles
    def _role(self, path: KeyPath, role: str, allow_pseudo: bool = True) -> None:
        if role in self.roles:
            return
        if allow_pseudo and role in PSEUDO_ROLES:
            return
        self.err(path, f"role {role!r} is used but not declared under roles:")

    def _field(self, path: KeyPath, name: str, what: str = "field") -> None:
        if name not in self.fields:
            self.err(path, f"{what} {name!r} is used but not declared under fields:")

    def _expr(self, path: KeyPath, text: str, extra: Iterable[str] = ()) -> None:
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

    def _field_spec(self, path: KeyPath, spec: dict[str, Any]) -> None:
        t = spec["type"]
        if path[-1] in RESERVED_FIELD_NAMES:
            self.err(path, f"field name {path[-1]!r} is reserved (the forms that enter values "
                           "use it themselves); choose another name, e.g. "
                           f"{str(path[-1]) + '_name'!r}")
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
            cols = spec.get("fields", {})
            for n, sub in cols.items():
                self._field_spec((*path, "fields", n), sub)
                if "computed" in sub:
                    self._expr((*path, "fields", n, "computed"), sub["computed"], extra=cols)
                    if n in spec.get("editable", []):
                        self.err((*path, "fields", n), f"column {n!r} is computed: it cannot "
                                                       "also be editable")
            inner = [spec.get("item", {})] + list(spec.get("fields", {}).values())
            if any(x.get("type") == "file" for x in inner):
                self.err(path, "a file field cannot be a list item or column: declare one "
                               "field of type: file per attachment")
        if "computed" in spec and len(path) == 2:  # a record field computed from the others
            self._expr((*path, "computed"), spec["computed"])
            if t in ("list", "file", "text"):
                self.err((*path, "computed"), f"computed: a {t} field cannot be computed")
        elif "computed" in spec and (len(path) < 4 or path[-2] != "fields"):
            self.err((*path, "computed"), "computed: only applies to a record field or a "
                                          "column of a list (fields: of a type: list field)")
        if "default" in spec and t == "file":
            self.err((*path, "default"), "a file field has no default")

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
                for r, when in (sig.get("roles_when") or {}).items():
                    wp = (*p, "signature", "roles_when", r)
                    if not sig.get("one_per_role"):
                        self.err(wp, "roles_when needs one_per_role: true (each role signs once)")
                    if r not in roles:
                        self.err(wp, f"roles_when names {r!r}, which is not a signing role")
                    self._expr(wp, when)
                if sig.get("roles_when") and all(r in sig["roles_when"] for r in roles):
                    self.err((*p, "signature", "roles_when"),
                             "at least one signing role must always sign (not all in roles_when)")
            sep = t.get("separation", {})
            for j, other in enumerate(sep.get("not_actor_of", [])):
                if other not in {x["name"] for x in self.transitions}:
                    self.err((*p, "separation", "not_actor_of", j),
                             f"separation refers to unknown transition {other!r}")
            for j, ref in enumerate(sep.get("not_named_in", [])):
                self._user_field((*p, "separation", "not_named_in", j), ref)
            area = sep.get("not_in_area")
            if area:
                self._field((*p, "separation", "not_in_area", "field"), area["field"])
                for j, ref in enumerate(area.get("named_in", [])):
                    self._user_field((*p, "separation", "not_in_area", "named_in", j), ref)
            self._not_before(p, t)
            for j, w in enumerate(t.get("waits_for", [])):
                for key in ("workflow", "via"):
                    if key in w and not self._knows(w[key]):
                        self.err((*p, "waits_for", j, key),
                                 f"waits_for names unknown workflow {w[key]!r}")
        return names

    def _user_field(self, path: KeyPath, ref: str) -> None:
        """``field`` (a user field) or ``list.sub`` (a user sub-field of a list)."""
        name, _, sub = ref.partition(".")
        spec = self.fields.get(name)
        if spec is None:
            self.err(path, f"separation names field {name!r}, which is not declared under "
                     "fields:")
            return
        if sub:
            spec = (spec.get("fields") or {}).get(sub) if spec["type"] == "list" else None
            if spec is None:
                self.err(path, f"separation names {ref!r}, but {name!r} is not a list with a "
                         f"field {sub!r}")
                return
        if spec["type"] != "user":
            self.err(path, f"separation names {ref!r}, which is not a user field (it is "
                     f"{spec['type']})")

    def _not_before(self, p: KeyPath, t: dict[str, Any]) -> None:
        nb = t.get("not_before")
        if nb is None:
            return
        if ("field" in nb) == ("after" in nb):
            self.err((*p, "not_before"), f"not_before on {t['name']!r} needs either field: "
                     "(a date field) or after: (a duration after entering the state)")
        if "field" in nb:
            self._field((*p, "not_before", "field"), nb["field"])
            ftype = self.fields.get(nb["field"], {}).get("type")
            if ftype not in (None, "date", "datetime"):
                self.err((*p, "not_before", "field"), f"not_before field {nb['field']!r} "
                         f"must be a date or datetime field (it is {ftype})")

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
                    extra = (("item",) if "for_each" in params else ()) + \
                        (("source",) if "source" in params else ())
                    for key in ("when", "for_each"):
                        if key in params:
                            self._expr((*p, key), params[key])
                    if "store" in params:
                        lst, _, col = params["store"].partition(".")
                        cols = self.fields.get(lst, {}).get("fields", {})
                        if "for_each" not in params or col not in cols:
                            self.err((*p, "store"), "store: names list.column of a list field "
                                                    "whose rows for_each gives")
                        elif cols[col].get("type") != "reference" or \
                                cols[col].get("workflow") != wf:
                            self.err((*p, "store"), f"store: column {col!r} must be a reference "
                                                    f"to {wf!r}")
                    if "source" in params:
                        self._expr((*p, "source"), params["source"],
                                   ("item",) if "for_each" in params else ())
                    target = self.known.get(wf)
                    for tf, expr in params.get("copy", {}).items():
                        self._expr((*p, "copy", tf), expr, extra)
                        if target is not None and tf not in target.fields:
                            self.err((*p, "copy", tf), f"workflow {wf!r} has no field {tf!r}")
                elif kind == "set_due":
                    self._field((*p, "field"), params["field"])
                    for key in ("after_days_field", "after_months_field", "from_field"):
                        if key in params:
                            self._field((*p, key), params[key])
                    if "when" in params:
                        self._expr((*p, "when"), params["when"])
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
                elif kind == "fire_on_matching":
                    self.problems.extend(more_checks.fire_on_matching(
                        self.doc, self.lines, self.origin, p, params, sname, self._knows))
                elif kind == "revoke_grants":
                    self._field((*p, "items"), params["items"])
                elif kind == "snapshot":
                    names = [*params.get("period", []), params.get("at"), params.get("kpis")]
                    for j, spec in enumerate(params.get("collect", [])):
                        names.append(spec["field"])
                        cols = self.fields.get(spec["field"], {}).get("fields", {})
                        for col in spec["copy"]:
                            if spec["field"] in self.fields and col not in cols:
                                self.err((*p, "collect", j, "copy", col),
                                         f"{spec['field']!r} has no column {col!r}")
                    for name in names:
                        if name is not None:
                            self._field(p, name)
                elif kind == "publish_draft":
                    for key, default in (("draft_field", "draft_id"),
                                         ("hash_field", "content_hash")):
                        self._field((*p, key), params.get(key, default))
                    if "version_field" in params:
                        self._field((*p, "version_field"), params["version_field"])

    def _milestones(self) -> None:
        for name, m in self.doc.get("milestones", {}).items():
            if "start_field" in m:
                sf = self.fields.get(m["start_field"])
                if sf is None or sf.get("type") not in ("date", "datetime"):
                    self.err(("milestones", name, "start_field"),
                             f"milestone {name!r} start_field must name a date or datetime field")
            for key in ("start", "stop"):
                if key in m and m[key] not in self.states:
                    self.err(("milestones", name, key),
                             f"milestone {name!r} {key} names unknown state {m[key]!r}")

    def _capabilities(self) -> None:
        self.problems.extend(more_checks.document_capability(self.doc, self.lines, self.origin))
        self.problems.extend(more_checks.inventory_capability(self.doc, self.lines, self.origin))
        self.problems.extend(more_checks.curriculum_capability(self.doc, self.lines,
                                                               self.origin))
        self._risk_capability()
        training = self.doc.get("capabilities", {}).get("training")
        if not training:
            return
        for key, types in (("trainee", ("user",)), ("document", ("string", "choice")),
                           ("version", ("string", "choice")), ("due", ("date",))):
            name = training.get(key)
            if name is None:
                continue
            path = ("capabilities", "training", key)
            if name not in self.fields:
                self.err(path, f"capability training.{key} names unknown field {name!r}")
            elif self.fields[name].get("type") not in types:
                self.err(path, f"capability training.{key}: field {name!r} must be of type "
                               f"{' or '.join(types)}")

    def _risk_capability(self) -> None:
        risk = self.doc.get("capabilities", {}).get("risk")
        if not risk:
            return
        cap = RiskCapability(**{**risk, "links": tuple(risk.get("links", ("capa", "change")))})
        spec = self.fields.get(cap.rows, {})
        path = ("capabilities", "risk", "rows")
        if spec.get("type") != "list" or not spec.get("fields"):
            self.err(path, f"capability risk.rows: {cap.rows!r} must be a list field with "
                           "columns")
            return
        for col in cap.columns():
            if col not in spec["fields"]:
                self.err(("capabilities", "risk"), f"capability risk: list {cap.rows!r} has "
                                                   f"no column {col!r}")


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
