"""Definition drafts and their change-controlled publishing (issue 9; R-A11-10-1, R-P11-10k-1).

A process owner edits a *draft* of a workflow definition (YAML source, optimistic saves by
``version``), validates it (the engine's checks plus the GxP lints below, every problem at
its line), compares it with the published version (unified diff), walks a throw-away record
through it (:func:`dry_run`, rolled back) and *submits* it: that starts a
``definition_change`` record (DCR) holding the draft's id and content hash. QA approves the
DCR with an electronic signature ("Approved for use", never the submitter); entering its
``published`` state runs the engine action ``publish_draft`` (:func:`publish_from_record`),
which publishes exactly the submitted content as version N+1 - or refuses when the draft
changed since. Records keep the version they started on (pinned by content hash).

No Flask here: the web editor (webapp/definitions_editor.py) and the CLI call these functions.
"""

from __future__ import annotations

import difflib
import logging
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from workflow import clock
from workflow.audit import trail as audit
from workflow.db.engines import WRITE, is_sqlite
from workflow.db.models import DefinitionDraft, DefinitionVersion, DraftStatus, Record, User
from workflow.errors import (
    DefinitionError,
    NotAuthorized,
    Problem,
    StaleRecord,
    ValidationFailed,
    WorkflowError,
)
from workflow.identity import users as identity
from workflow.spec.model import (
    WorkflowDefinition,
    _compose,
    _line,
    _schema_validator,
    cross_check,
    load_text,
    reachable,
)

if TYPE_CHECKING:
    from workflow.engine.core import Engine, Result
    from workflow.registry import Registry

log = logging.getLogger(__name__)

#: who edits drafts and submits them; who approves is the definition_change workflow's business
EDITOR_ROLE = "process_owner"
CHANGE_WORKFLOW = "definition_change"
QA_ROLE = "qa"


class DraftError(WorkflowError):
    """A draft cannot be changed or submitted in its current status."""

    code = "draft_error"


class DraftInvalid(WorkflowError):
    """The draft has validation errors; ``findings`` lists them (each with its line)."""

    code = "draft_invalid"

    def __init__(self, findings: Sequence[Finding]):
        self.findings = list(findings)
        super().__init__(f"The draft has {len(self.findings)} problem(s); the first: "
                         f"line {self.findings[0].line}: {self.findings[0].message}")


# ------------------------------------------------------------------ plain data


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

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors and self.definition is not None


@dataclass(frozen=True)
class DraftInfo:
    id: int
    key: str
    source: str
    base_version: int | None
    status: str
    version: int
    author: str
    author_name: str
    created_at: datetime
    updated_at: datetime
    submitted_hash: str | None = None
    change_record: str | None = None
    change_record_state: str | None = None
    published_version: int | None = None

    @property
    def editable(self) -> bool:
        return self.status == DraftStatus.DRAFT


@dataclass(frozen=True)
class VersionInfo:
    version: int
    content_hash: str
    published_at: datetime
    published_by: str
    status: str  # "published" (current) | "retired" (superseded; its records keep it)
    records_open: int
    records_total: int


@dataclass(frozen=True)
class DefinitionSummary:
    key: str
    title: str
    status: str  # published | draft | in approval (of its newest open draft)
    versions: tuple[VersionInfo, ...]
    drafts: tuple[DraftInfo, ...]

    @property
    def current(self) -> VersionInfo | None:
        return self.versions[-1] if self.versions else None


@dataclass
class DryStep:
    n: int
    transition: str
    label: str
    actor_roles: tuple[str, ...]
    from_state: str
    to_state: str | None
    ok: bool
    message: str = ""
    signatures: int = 0
    created: tuple[str, ...] = ()
    tasks: tuple[str, ...] = ()


@dataclass
class DryRun:
    ok: bool
    steps: list[DryStep] = field(default_factory=list)
    final_state: str | None = None
    outcome: str | None = None
    message: str = ""


# ------------------------------------------------------------------ helpers


def _now() -> datetime:
    return clock.now()


def _require_editor(session: Session, user: User) -> None:
    if EDITOR_ROLE not in identity.roles_of(session, user):
        raise NotAuthorized("Only process owners edit and submit workflow definitions.",
                            required_roles=(EDITOR_ROLE,))


def _latest_row(session: Session, key: str) -> DefinitionVersion | None:
    return session.execute(
        select(DefinitionVersion).where(DefinitionVersion.key == key)
        .order_by(DefinitionVersion.version.desc()).limit(1)).scalar_one_or_none()


def _info(session: Session, d: DefinitionDraft) -> DraftInfo:
    author = session.get(User, d.author_id)
    rec = session.get(Record, d.change_record_id) if d.change_record_id else None
    pv = session.get(DefinitionVersion, d.published_version_id) if d.published_version_id \
        else None
    return DraftInfo(
        id=d.id, key=d.key, source=d.source, base_version=d.base_version,
        status=_effective_status(d, rec), version=d.version,
        author=author.username if author else "", author_name=author.full_name if author else "",
        created_at=d.created_at, updated_at=d.updated_at, submitted_hash=d.submitted_hash,
        change_record=rec.number if rec else None,
        change_record_state=rec.state if rec else None,
        published_version=pv.version if pv else None)


def _effective_status(d: DefinitionDraft, rec: Record | None) -> str:
    """A draft whose change record was rejected or withdrawn is editable again."""
    status = DraftStatus(d.status)
    if status == DraftStatus.IN_APPROVAL and rec is not None and rec.outcome == "void":
        return DraftStatus.DRAFT.value
    return status.value


def _load_draft(session: Session, draft_id: int, *, lock: bool = False) -> DefinitionDraft:
    stmt = select(DefinitionDraft).where(DefinitionDraft.id == draft_id)
    if lock and not is_sqlite(session):
        stmt = stmt.with_for_update()
    d = session.execute(stmt).scalar_one_or_none()
    if d is None:
        raise WorkflowError(f"There is no definition draft #{draft_id}.")
    return d


def _known(session: Session, registry: Registry) -> dict[str, WorkflowDefinition]:
    keys = session.execute(select(DefinitionVersion.key).distinct()).scalars().all()
    return {k: registry.latest(session, k).definition for k in keys}


# ------------------------------------------------------------------ reading


def get(engine: Engine, draft_id: int) -> DraftInfo:
    with engine.reader() as s:
        return _info(s, _load_draft(s, draft_id))


def list_definitions(engine: Engine) -> list[DefinitionSummary]:
    """Every definition key with its versions (current / retired, with record counts) and
    its drafts; keys that exist only as drafts are listed too."""
    with engine.reader() as s:
        rows = s.execute(select(DefinitionVersion, User.full_name)
                         .outerjoin(User, User.id == DefinitionVersion.published_by_id)
                         .order_by(DefinitionVersion.key, DefinitionVersion.version)).all()
        counts: dict[int, tuple[int, int]] = {}
        for def_id, total, open_ in s.execute(
                select(Record.definition_id, func.count(),
                       func.count().filter(Record.closed_at.is_(None)))
                .group_by(Record.definition_id)):
            counts[def_id] = (total, open_)
        drafts = s.execute(select(DefinitionDraft).order_by(DefinitionDraft.id)).scalars().all()
        infos = [_info(s, d) for d in drafts]
    by_key: dict[str, list[Any]] = {}
    titles: dict[str, str] = {}
    for row, publisher in rows:
        by_key.setdefault(row.key, []).append((row, publisher))
        titles[row.key] = row.title
    for info in infos:
        by_key.setdefault(info.key, [])
        titles.setdefault(info.key, info.key)
    out = []
    for key in sorted(by_key):
        versions = []
        items = by_key[key]
        for i, (row, publisher) in enumerate(items):
            total, open_ = counts.get(row.id, (0, 0))
            versions.append(VersionInfo(row.version, row.content_hash, row.published_at,
                                        publisher or "", "published" if i == len(items) - 1
                                        else "retired", open_, total))
        key_drafts = tuple(i for i in infos if i.key == key)
        open_drafts = [i for i in key_drafts if i.status in ("draft", "in_approval")]
        status = ("in approval" if any(i.status == "in_approval" for i in open_drafts) else
                  "draft" if open_drafts else "published" if versions else "draft")
        out.append(DefinitionSummary(key, titles[key], status, tuple(versions), key_drafts))
    return out


def published_source(engine: Engine, key: str, version: int | None = None
                     ) -> tuple[int, str] | None:
    with engine.reader() as s:
        q = select(DefinitionVersion).where(DefinitionVersion.key == key)
        q = q.where(DefinitionVersion.version == version) if version else \
            q.order_by(DefinitionVersion.version.desc()).limit(1)
        row = s.execute(q).scalar_one_or_none()
        return (row.version, row.source) if row else None


# ------------------------------------------------------------------ editing


def create(engine: Engine, key: str, actor: str, source: str | None = None) -> DraftInfo:
    """A new draft of ``key``: a copy of the newest published version unless ``source`` is
    given (required for a new workflow). Only process owners (R-A11-10-1)."""
    with engine.unit() as s:
        user = identity.get_user(s, actor)
        _require_editor(s, user)
        latest = _latest_row(s, key)
        if source is None:
            if latest is None:
                raise DraftError(f"There is no published workflow {key!r} to copy; give the "
                                 "new workflow's YAML.")
            source = latest.source
        now = _now()
        d = DefinitionDraft(key=key, source=source, base_version=latest.version if latest
                            else None, status=DraftStatus.DRAFT, version=1, author_id=user.id,
                            created_at=now, updated_at=now, updated_by_id=user.id)
        s.add(d)
        s.flush()
        audit.system_event(s, at=now, actor=user, action="definition_draft_created",
                           changes={"draft": d.id, "key": key, "base_version": d.base_version})
        return _info(s, d)


def save(engine: Engine, draft_id: int, source: str, actor: str, expected_version: int
         ) -> DraftInfo:
    """Store a new source; ``expected_version`` is the version the editor started from. A
    save over someone else's newer save is refused (:class:`StaleRecord`), never merged."""
    with engine.unit() as s:
        user = identity.get_user(s, actor)
        _require_editor(s, user)
        d = _load_draft(s, draft_id, lock=True)
        rec = s.get(Record, d.change_record_id) if d.change_record_id else None
        status = _effective_status(d, rec)
        if status != DraftStatus.DRAFT:
            raise DraftError(f"Draft #{draft_id} is {status.replace('_', ' ')}; it can no "
                             "longer be edited" + (f" (withdraw {rec.number} first)."
                                                   if status == "in_approval" and rec else "."))
        now = _now()
        done = s.execute(
            update(DefinitionDraft)
            .where(DefinitionDraft.id == draft_id, DefinitionDraft.version == expected_version)
            .values(source=source, version=expected_version + 1, updated_at=now,
                    updated_by_id=user.id, status=DraftStatus.DRAFT,
                    submitted_hash=None, change_record_id=None)
            .execution_options(synchronize_session=False))
        if done.rowcount != 1:
            raise StaleRecord(f"Draft #{draft_id}", expected_version, d.version)
        audit.system_event(s, at=now, actor=user, action="definition_draft_saved",
                           changes={"draft": draft_id, "key": d.key,
                                    "version": [expected_version, expected_version + 1]})
        s.expire(d)
        return _info(s, _load_draft(s, draft_id))


def withdraw(engine: Engine, draft_id: int, actor: str, reason: str) -> DraftInfo:
    """Abandon a draft (kept, never deleted). A draft in approval is withdrawn through its
    change record instead."""
    if not (reason or "").strip():
        raise WorkflowError("Withdrawing a draft needs a reason.")
    with engine.unit() as s:
        user = identity.get_user(s, actor)
        _require_editor(s, user)
        d = _load_draft(s, draft_id, lock=True)
        rec = s.get(Record, d.change_record_id) if d.change_record_id else None
        if _effective_status(d, rec) != DraftStatus.DRAFT:
            raise DraftError(f"Draft #{draft_id} is not an open draft.")
        d.status = DraftStatus.WITHDRAWN
        d.version += 1
        d.updated_at = _now()
        audit.system_event(s, at=d.updated_at, actor=user, action="definition_draft_withdrawn",
                           changes={"draft": draft_id, "key": d.key}, reason=reason)
        s.flush()
        return _info(s, d)


# ------------------------------------------------------------------ validation


def validate(engine: Engine, source: str, key: str | None = None,
             origin: str = "draft") -> Validation:
    """The engine's checks (schema, semantics, cross-workflow actions) and the GxP lints,
    each located at its line. ``key``: the workflow the draft is for."""
    with engine.reader() as s:
        known = _known(s, engine.registry)
    return validate_text(source, known, key=key, origin=origin)


def validate_text(source: str, known: Mapping[str, WorkflowDefinition | None],
                  key: str | None = None, origin: str = "draft") -> Validation:
    findings: list[Finding] = []
    d = None
    try:
        d = load_text(source, origin=origin, known_workflows=dict(known))
    except DefinitionError as exc:
        findings += [Finding(p.line or 1, p.message) for p in exc.problems]
    if d is not None:
        others = {k: v for k, v in known.items() if v is not None and k != d.key}
        findings += [Finding(p.line or 1, p.message) for p in cross_check({**others, d.key: d})
                     if p.file == origin]
    doc, lines, problems = _compose(source, origin)
    if not problems and isinstance(doc, dict) and \
            not any(True for _ in _schema_validator().iter_errors(doc)):
        findings += lint(doc, lines)
        if key is not None and doc.get("key") != key:
            findings.append(Finding(_line(lines, ("key",)), f"this draft is for workflow "
                                    f"{key!r}; key: must stay {key!r}", "engine"))
    findings.sort(key=lambda f: (f.line, f.source, f.message))
    return Validation(tuple(findings), d if not [f for f in findings
                                                if f.severity == "error"] else None)


def _as_list(v: Any) -> list[Any]:
    return [v] if isinstance(v, str) else list(v or [])


def lint(doc: Mapping[str, Any], lines: Mapping[tuple, int]) -> list[Finding]:
    """GxP lints on a schema-valid definition document (R-A11-1-1, R-A11-10-1):

    - every signature gate has a meaning and names its signer roles, each of which may do
      the step;
    - separation-of-duties rules can bite: ``not_initiator`` leaves someone to do the step,
      ``not_actor_of`` names steps that can happen before this one;
    - every path from the initial state to a final state with outcome ``done`` passes a
      transition signed by QA (an error for ``risk: high``, a warning otherwise);
    - due dates: a workflow that sets due dates names a ``process_owner`` (the escalation
      target of overdue tasks); when its states set task due dates, every state owning a
      task has one (or the record has ``due_in``); a ``due_field`` is set by some step.
    """
    out: list[Finding] = []

    def add(path: tuple, msg: str, severity: str = "error") -> None:
        out.append(Finding(_line(lines, path), msg, "gxp", severity))

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
        for target in sorted(done & set(prev), key=lambda n: _line(lines, ("states", n))):
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


# ------------------------------------------------------------------ diff


def diff(engine: Engine, draft: DraftInfo) -> str:
    """Unified diff of the draft against the newest published version ('' when equal)."""
    pub = published_source(engine, draft.key)
    old, name = (pub[1], f"{draft.key} v{pub[0]} (published)") if pub else ("", "(new)")
    return "".join(difflib.unified_diff(
        old.splitlines(keepends=True), _nl(draft.source).splitlines(keepends=True),
        fromfile=name, tofile=f"{draft.key} draft #{draft.id} (edit {draft.version})"))


def _nl(text: str) -> str:
    return text if text.endswith("\n") or not text else text + "\n"


# ------------------------------------------------------------------ submit and publish


def submit(engine: Engine, draft_id: int, actor: str, summary: str,
           expected_version: int | None = None) -> Result:
    """Submit a valid draft for approval: in ONE transaction the draft becomes in_approval
    and a definition_change record (DCR) starts holding its id and content hash. Nothing is
    published here; QA's signed approval of the DCR publishes (R-A11-10-1)."""
    if not (summary or "").strip():
        raise ValidationFailed({"change_summary": "is required: say what changes and why"})
    with engine.reader() as s:
        d0 = _load_draft(s, draft_id)
        known = _known(s, engine.registry)
    v = validate_text(d0.source, known, key=d0.key, origin=f"draft #{draft_id}")
    if not v.ok:
        raise DraftInvalid(v.errors)
    definition = v.definition
    assert definition is not None
    with engine.unit() as s:
        now = _now()
        user = identity.get_user(s, actor)
        _require_editor(s, user)
        d = _load_draft(s, draft_id, lock=True)
        if expected_version is not None and d.version != expected_version:
            raise StaleRecord(f"Draft #{draft_id}", expected_version, d.version)
        if d.source != d0.source:
            raise StaleRecord(f"Draft #{draft_id}", d0.version, d.version)
        rec = s.get(Record, d.change_record_id) if d.change_record_id else None
        if _effective_status(d, rec) != DraftStatus.DRAFT:
            raise DraftError(f"Draft #{draft_id} is not an open draft (it is "
                             f"{_effective_status(d, rec).replace('_', ' ')}).")
        same = s.execute(select(DefinitionVersion).where(
            DefinitionVersion.content_hash == definition.content_hash)).scalar_one_or_none()
        if same is not None:
            raise DraftError(f"This content is already published as {same.key} version "
                             f"{same.version}; there is nothing to approve.")
        latest = _latest_row(s, d.key)
        if (latest.version if latest else None) != d.base_version:
            raise DraftError(f"{d.key} version {latest.version if latest else '?'} was "
                             f"published after this draft was started from version "
                             f"{d.base_version}; start a new draft from it.")
        compiled = engine.registry.latest(s, CHANGE_WORKFLOW)
        if not identity.roles_of(s, user) & set(compiled.definition.start_roles):
            raise NotAuthorized("Submitting a definition change needs the role: "
                                f"{', '.join(compiled.definition.start_roles)}.")
        data = {"title": f"{definition.title}: version {(d.base_version or 0) + 1}"[:200],
                "definition": d.key, "draft_id": d.id,
                "content_hash": definition.content_hash,
                "base_version": d.base_version or 0, "change_summary": summary.strip()}
        rec = engine.start_in(s, CHANGE_WORKFLOW, user, data,
                              reason="definition draft submitted")
        d.status = DraftStatus.IN_APPROVAL
        d.submitted_hash = definition.content_hash
        d.change_record_id = rec.id
        d.version += 1
        d.updated_at = now
        d.updated_by_id = user.id
        audit.system_event(s, at=now, actor=user, action="definition_draft_submitted",
                           changes={"draft": d.id, "key": d.key, "record": rec.number,
                                    "content_hash": definition.content_hash},
                           reason=summary.strip())
        from workflow.engine.core import Result

        return Result(record_id=rec.id, number=rec.number, workflow=rec.workflow_key,
                      state=rec.state, version=rec.version, created=(rec.number,))


def publish_from_record(session: Session, registry: Registry, rec: Record, user: User,
                        params: Mapping[str, Any], *, at: datetime) -> int:
    """The ``publish_draft`` engine action, inside the approving transition's transaction:
    publish the draft this record holds as the next version of its workflow. Refuses (the
    whole step rolls back) when the draft is not the one submitted with this record, its
    content hash differs from the one the record holds, or another version was published
    meanwhile. Returns the new version number."""
    draft_id = rec.data.get(params.get("draft_field", "draft_id"))
    expected_hash = rec.data.get(params.get("hash_field", "content_hash"))
    if not draft_id or not expected_hash:
        raise WorkflowError(f"{rec.number} names no draft and content hash to publish.")
    d = _load_draft(session, int(draft_id), lock=True)
    if d.change_record_id != rec.id or d.status != DraftStatus.IN_APPROVAL:
        raise WorkflowError(f"Draft #{d.id} is not awaiting approval by {rec.number}; "
                            "nothing was published.")
    try:
        definition = load_text(d.source, origin=f"draft #{d.id}",
                               known_workflows=_known(session, registry))
    except DefinitionError as exc:
        raise WorkflowError(f"Draft #{d.id} no longer validates ({exc.problems[0]}); "
                            "nothing was published.") from None
    if definition.content_hash != expected_hash or d.submitted_hash != expected_hash:
        raise WorkflowError(
            f"Draft #{d.id} changed since it was submitted with {rec.number} (content hash "
            f"{definition.content_hash[:12]}, submitted {str(expected_hash)[:12]}); nothing "
            "was published. Reject this change and submit the draft again.")
    latest = _latest_row(session, d.key)
    if (latest.version if latest else None) != d.base_version:
        raise WorkflowError(f"{d.key} version {latest.version if latest else '?'} was published "
                            f"after draft #{d.id} was started from version {d.base_version}; "
                            "nothing was published.")
    row, created = registry.publish(session, definition, user,
                                    reason=f"approved in {rec.number}")
    if not created:
        raise WorkflowError(f"This content is already published as version {row.version}.")
    d.status = DraftStatus.PUBLISHED
    d.published_version_id = row.id
    d.version += 1
    d.updated_at = at
    vf = params.get("version_field")
    if vf and rec.data.get(vf) != row.version:
        old = rec.data.get(vf)
        rec.data = {**rec.data, vf: row.version}
        audit.record_event(session, rec, at=at, actor=user, action="update",
                           changes={vf: [old, row.version]},
                           reason=f"{d.key} published as version {row.version}")
    log.info("%s: %s published as version %s", rec.number, d.key, row.version)
    return row.version


def publish_file(engine: Engine, path: str, actor: str, summary: str) -> tuple[DraftInfo, Result]:
    """``qms definitions publish FILE --as USER --summary TEXT``: a draft of FILE's workflow
    is created and submitted; QA's signed approval of the DCR publishes it, as in the UI."""
    from pathlib import Path

    import yaml

    text = Path(path).read_text(encoding="utf-8")
    try:
        key = (yaml.safe_load(text) or {}).get("key")
    except (yaml.YAMLError, AttributeError):
        key = None
    if not isinstance(key, str) or not key:
        v = validate(engine, text, origin=path)
        raise DraftInvalid(v.errors or [Finding(1, "the file names no key:")])
    v = validate(engine, text, key=key, origin=path)
    if not v.ok:
        raise DraftInvalid(v.errors)
    draft = create(engine, key, actor, source=text)
    result = submit(engine, draft.id, actor, summary)
    return get(engine, draft.id), result


# ------------------------------------------------------------------ dry run


def dry_run(engine: Engine, source: str, path: Sequence[str] | None = None,
            data: Mapping[str, Any] | None = None, max_steps: int = 40) -> DryRun:
    """Walk a throw-away record through ``source`` and roll everything back.

    The draft is published inside one outer transaction that is always rolled back; a
    private Engine on that connection starts a record and fires ``path`` (transition names)
    or, without one, the shortest way to a ``done`` final state. Each step is done by a
    fresh throw-away user holding the step's roles (so separation of duties is satisfied)
    with sample values for the fields it requires (``data`` overrides them); signature
    gates are signed by as many such users as the quorum needs. Nothing persists: not the
    version, the users, the record, its audit events nor its notifications."""
    from workflow.engine.core import Engine as _Engine
    from workflow.registry import Registry as _Registry
    from workflow.signatures.mac import VouchedSignature, VouchingVerifier

    data = dict(data or {})
    with engine.reader() as s:
        known = _known(s, engine.registry)
    v = validate_text(source, known)
    if v.definition is None:
        return DryRun(False, message=f"The draft does not validate ({len(v.errors)} "
                      "problem(s)); fix them first.")
    d = v.definition
    result = DryRun(True)
    outer = engine.sessions()
    try:
        outer.begin()
        conn = outer.connection(execution_options=WRITE)
        dry = _Engine(sessionmaker(bind=conn, join_transaction_mode="create_savepoint",
                                   expire_on_commit=False),
                      engine.signing_key, verifier=VouchingVerifier(), registry=_Registry(),
                      system_name=engine.system_name)
        counter = iter(range(1, 10_000))
        with dry.unit() as s:
            system = identity.system_user(s)
            dry.registry.publish(s, d, system, reason="dry run (rolled back)")

        def person(roles: Sequence[str]) -> str:
            name = f"dryrun{next(counter)}"
            with dry.unit() as s:
                system = identity.system_user(s)
                u = identity.create_user(s, name, f"Dry run {name[6:]}", email="",
                                         actor=system, reason="dry run")
                for r in dict.fromkeys(r for r in roles if r not in ("initiator", "assignee")):
                    identity.grant_role(s, u, r, actor=system, reason="dry run")
            return name

        initiator = person(d.start_roles)
        start_data = _sample(d, d.start_edits, d.start_requires, initiator, data)
        try:
            r = dry.start(d.key, initiator, start_data)
        except WorkflowError as exc:
            result.ok = False
            result.message = f"Starting a record failed: {exc}"
            return result
        number, state = r.number, r.state
        result.steps.append(DryStep(0, "(start)", "Create record", tuple(d.start_roles),
                                    "", state, True, f"{number} created",
                                    created=tuple(c for c in r.created if c != number),
                                    tasks=_owners(d, state)))
        plan = list(path) if path else None
        n = 0
        while n < max_steps:
            if d.states[state].final:
                break
            if plan is not None:
                if not plan:
                    break
                name = plan.pop(0)
            else:
                name = _next_towards_done(d, state)
                if name is None:
                    result.ok = False
                    result.message = f"No transition leads from {state!r} to a done state."
                    break
            n += 1
            t = d.transitions.get(name)
            if t is None or state not in t.sources:
                result.ok = False
                result.steps.append(DryStep(n, name, t.label if t else name, (), state, None,
                                            False, f"{name!r} is not possible from {state!r}"))
                break
            roles = [x for x in t.roles if x not in ("initiator", "assignee")]
            sig_roles = list(t.signature.roles) if t.signature else []
            needed = t.signature.quorum if t.signature else 1
            values = _sample(d, t.edits, t.requires, initiator, data)
            step = DryStep(n, name, t.label, tuple(roles or t.roles), state, None, True)
            try:
                for k in range(needed):
                    if not roles:  # initiator / assignee only
                        who = initiator
                    elif t.signature and t.signature.one_per_role:
                        r = sig_roles[k % len(sig_roles)]
                        who = person([r] if r in roles else [roles[0], r])
                    else:
                        who = person([*roles, *sig_roles])
                    sig = VouchedSignature(who, method="dry-run") if t.signature else None
                    rr = dry.fire(number, name, who, values if k == 0 else {}, signature=sig,
                                  reason="dry run" if t.reason_required else None)
                    step.signatures += 1 if t.signature else 0
                    if rr.moved:
                        break
                state = rr.state
                step.to_state = state
                step.created = tuple(c for c in rr.created if c != number)
                step.tasks = _owners(d, state)
                step.message = f"{number} is now {d.states[state].label}"
            except WorkflowError as exc:
                step.ok = False
                step.message = str(exc)
                result.ok = False
                result.steps.append(step)
                break
            result.steps.append(step)
        result.final_state = state
        result.outcome = d.states[state].outcome
        if result.ok and not result.message:
            result.message = (f"The record reached {d.states[state].label}"
                              + (f" (outcome {result.outcome})." if result.outcome else "."))
        return result
    finally:
        outer.rollback()
        outer.close()


def _owners(d: WorkflowDefinition, state: str) -> tuple[str, ...]:
    s = d.states[state]
    out = [d.roles.get(o, o) for o in s.owners]
    if s.assignee_field:
        out.append(f"assignee ({s.assignee_field})")
    return tuple(out)


def _next_towards_done(d: WorkflowDefinition, state: str) -> str | None:
    """The first transition on a shortest path from ``state`` to a done final state."""
    first: dict[str, str | None] = {state: None}
    todo = deque([state])
    while todo:
        cur = todo.popleft()
        s = d.states[cur]
        if s.final and s.outcome == "done":
            return first[cur]
        for t in d.transitions_from(cur):
            if t.dest not in first:
                first[t.dest] = first[cur] or t.name
                todo.append(t.dest)
    ts = d.transitions_from(state)
    return ts[0].name if ts else None


def _sample(d: WorkflowDefinition, edits: Sequence[str], requires: Sequence[str], user: str,
            overrides: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in edits:
        if name in overrides:
            out[name] = overrides[name]
        elif name in requires:
            value = _sample_value(d.fields[name], user)
            if value is not None:
                out[name] = value
    return out


def _sample_value(spec: Any, user: str) -> Any:
    today = clock.now().date()
    t = spec.type
    if t == "string":
        return f"Dry run {spec.label}"[: spec.max_length or 200]
    if t == "text":
        return f"Dry run: {spec.label}"
    if t == "integer":
        return int(spec.min) if spec.min is not None else 1
    if t == "decimal":
        return str(spec.min) if spec.min is not None else "1"
    if t == "boolean":
        return True
    if t == "date":
        return today.isoformat()
    if t == "datetime":
        return clock.now().isoformat()
    if t == "choice":
        return spec.choices[0] if spec.choices else None
    if t == "user":
        return user
    if t == "list":
        if spec.item is not None:
            item = _sample_value(spec.item, user)
            return [item] if item is not None else []
        obj = {f.name: _sample_value(f, user) for f in spec.fields}
        return [{k: x for k, x in obj.items() if x is not None}]
    return None  # references need a real record: give them in ``data``


def problems_as_findings(problems: Sequence[Problem]) -> list[Finding]:
    return [Finding(p.line or 1, p.message) for p in problems]
