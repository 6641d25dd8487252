"""Validation of a definition text as the editor shows it: the engine's checks and the GxP
lints, each a :class:`Finding` at its line (R-A11-1-1, R-A11-10-1). Pure: the known
workflows are passed in, no database.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from workflow.errors import DefinitionError
from workflow.spec.checks import cross_check, reachable
from workflow.spec.load import load_text
from workflow.spec.model import WorkflowDefinition
from workflow.spec.source import KeyPath, Lines, compose, line_of, schema_validator

#: the role whose signature every path to a ``done`` outcome must pass
QA_ROLE = "qa"


@dataclass(frozen=True)
class Finding:
    """One validation problem: the engine's checks (``source="engine"``) or a GxP lint
    (``"gxp"``); warnings do not block submission."""

    line: int
    message: str
    source: str = "engine"
    severity: str = "error"

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass(frozen=True)
class Validation:
    findings: tuple[Finding, ...]
    definition: WorkflowDefinition | None = None
    #: the definition as loaded even when a lint finds an error (for the diagram); None
    #: when the engine's own checks refuse it
    loaded: WorkflowDefinition | None = None

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors and self.definition is not None


def validate_text(source: str, known: Mapping[str, WorkflowDefinition | None],
                  key: str | None = None, origin: str = "draft") -> Validation:
    """The engine's checks (schema, semantics, the ``create_record`` cross-check against
    ``known``) and the GxP lints of :func:`lint`, each located at its line. ``key``: the
    workflow the text is for (its ``key:`` must not change)."""
    findings: list[Finding] = []
    d: WorkflowDefinition | None = None
    try:
        d = load_text(source, origin=origin, known_workflows=dict(known))
    except DefinitionError as exc:
        findings += [Finding(p.line or 1, p.message) for p in exc.problems]
    if d is not None:
        others = {k: v for k, v in known.items() if v is not None and k != d.key}
        findings += [Finding(p.line or 1, p.message) for p in cross_check({**others, d.key: d})
                     if p.file == origin]
    doc, lines, problems = compose(source, origin)
    if not problems and isinstance(doc, dict) and \
            not any(True for _ in schema_validator().iter_errors(doc)):
        findings += lint(doc, lines)
        if key is not None and doc.get("key") != key:
            findings.append(Finding(line_of(lines, ("key",)), f"this draft is for workflow "
                                    f"{key!r}; key: must stay {key!r}", "engine"))
    findings.sort(key=lambda f: (f.line, f.source, f.message))
    return Validation(tuple(findings), d if not [f for f in findings
                                                if f.severity == "error"] else None, d)


def _as_list(v: Any) -> list[Any]:
    return [v] if isinstance(v, str) else list(v or [])


def lint(doc: Mapping[str, Any], lines: Lines) -> list[Finding]:
    """GxP lints on a schema-valid definition document (R-A11-1-1, R-A11-10-1):

    - every signature gate has a meaning and names its signer roles, each of which may do
      the step;
    - separation-of-duties rules can bite: ``not_initiator`` leaves someone to do the step,
      ``not_actor_of`` names steps that can happen before this one; a signed closure (into a
      final state with outcome ``done``) or verification has a separation rule (a warning);
    - every path from the initial state to a final state with outcome ``done`` passes a
      transition signed by QA (an error for ``risk: high``, a warning otherwise);
    - due dates: a workflow that sets due dates names a ``process_owner`` (the escalation
      target of overdue tasks); when its states set task due dates, every state owning a
      task has one (or the record has ``due_in``); a ``due_field`` is set by some step.
    """
    out: list[Finding] = []

    def add(path: KeyPath, msg: str, severity: str = "error") -> None:
        out.append(Finding(line_of(lines, path), msg, "gxp", severity))

    states: dict[str, Any] = dict(doc.get("states") or {})
    transitions: list[dict[str, Any]] = list(doc.get("transitions") or [])
    roles = set(doc.get("roles") or {})
    risk = doc.get("risk", "high")

    # signature gates
    for i, t in enumerate(transitions):
        sig = t.get("signature")
        if sig is None:
            continue
        p = ("transitions", i, "signature")
        if not str(sig.get("meaning", "")).strip():
            add((*p, "meaning"), f"signature gate on {t['name']!r} has no meaning (what the "
                "signer attests, e.g. Approved)")
        if not sig.get("roles"):
            add(p, f"signature gate on {t['name']!r} names no signer role: add "
                "signature: roles: [...]")
        for j, r in enumerate(sig.get("roles") or []):
            if r not in t.get("roles", []):
                add((*p, "roles", j), f"role {r!r} may sign {t['name']!r} but may not do the "
                    "step: add it to the transition's roles or remove it here")

    # segregation of duties
    names = {t["name"] for t in transitions}
    edges: dict[str, set[str]] = {s: set() for s in states}
    for t in transitions:
        for src in _as_list(t.get("from")):
            if src in edges and t.get("to") in states:
                edges[src].add(t["to"])
    for i, t in enumerate(transitions):
        sep = t.get("separation") or {}
        p = ("transitions", i, "separation")
        if sep.get("not_initiator") and set(t.get("roles", [])) <= {"initiator"}:
            add((*p, "not_initiator"), f"{t['name']!r} may only be done by the initiator, "
                "whom not_initiator bars: nobody can do it")
        for j, other in enumerate(sep.get("not_actor_of") or []):
            if other not in names:
                continue  # the engine reports unknown transitions
            u = next(x for x in transitions if x["name"] == other)
            if u.get("to") not in states:
                continue
            reach = reachable(u["to"], edges)
            if not reach & set(_as_list(t.get("from"))):
                add((*p, "not_actor_of", j), f"separation on {t['name']!r} refers to "
                    f"{other!r}, which can never happen before it: the rule never applies")

    # a signed closure or verification names who may not give it (R-WF-13)
    for i, t in enumerate(transitions):
        sig = t.get("signature")
        if not sig:
            continue
        dest = states.get(str(t.get("to"))) or {}
        closure = bool(dest.get("final")) and dest.get("outcome") == "done"
        verification = "verif" in f"{t['name']} {sig.get('meaning', '')}".lower()
        sep = t.get("separation") or {}
        if (closure or verification) and not any(
                sep.get(k) for k in ("not_initiator", "not_actor_of", "not_named_in",
                                     "not_in_area")):
            what = "closure" if closure else "verification"
            add(("transitions", i, "signature"), f"{t['name']!r} is a signed {what} with no "
                "separation-of-duties rule: say who may not sign it (separation: "
                "not_initiator, not_actor_of: [steps] or not_named_in: [user fields])",
                "warning")

    # QA signature on every path to a done outcome
    initial = [n for n, s in states.items() if s.get("initial")]
    done = {n for n, s in states.items() if s.get("final") and s.get("outcome") == "done"}
    if len(initial) == 1 and done:
        severity = "error" if risk == "high" else "warning"
        free: dict[str, list[tuple[str, str]]] = {s: [] for s in states}
        for t in transitions:
            sig = t.get("signature") or {}
            qa_signed = sig and QA_ROLE in (sig.get("roles") or t.get("roles", []))
            if qa_signed:
                continue
            for src in _as_list(t.get("from")):
                if src in free and t.get("to") in states:
                    free[src].append((t["name"], t["to"]))
        prev: dict[str, tuple[str, str] | None] = {initial[0]: None}
        todo = deque([initial[0]])
        while todo:
            cur = todo.popleft()
            for tname, nxt in free.get(cur, ()):
                if nxt not in prev:
                    prev[nxt] = (cur, tname)
                    todo.append(nxt)
        for target in sorted(done & set(prev), key=lambda n: line_of(lines, ("states", n))):
            path, cur = [], target
            while prev[cur] is not None:
                src, tname = prev[cur]  # type: ignore[misc]
                path.append(tname)
                cur = src
            why = ("" if QA_ROLE in roles else " (the workflow declares no qa role)")
            add(("states", target), f"state {target!r} (outcome done) can be reached without "
                f"a QA-signed transition{why}: {' -> '.join(reversed(path))}"
                + ("" if risk == "high" else f" (risk: {risk}: a warning)"), severity)

    # due dates
    state_due = {n for n, s in states.items() if s.get("due_in") or s.get("due_field")}
    has_due = bool(doc.get("due_in")) or bool(state_due)
    if has_due and not doc.get("process_owner"):
        add(("due_in",) if doc.get("due_in") else ("states", sorted(state_due)[0]),
            "the workflow sets due dates but names no process_owner: overdue tasks "
            "cannot be escalated (add process_owner: ROLE)")
    if state_due and not doc.get("due_in"):
        for n, s in states.items():
            if s.get("final") or n in state_due or not (s.get("owner") or
                                                        s.get("assignee_field")):
                continue
            add(("states", n), f"state {n!r} opens a task without a due date while other "
                "states have one: add due_in or due_field (or a record due_in)")
    settable = set((doc.get("start") or {}).get("edits", []))
    for t in transitions:
        settable |= set(t.get("edits", []))
    for n, s in states.items():
        f = s.get("due_field")
        if f and f not in settable and not any(
                "set_due" in a and a["set_due"].get("field") == f
                for st in states.values() for a in st.get("on_enter", [])):
            add(("states", n, "due_field"), f"due_field {f!r} is never set (not edited by "
                "start or any transition, nor by set_due): the task would have no due date")
    return out
