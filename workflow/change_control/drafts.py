"""Definition drafts: the working copies a process owner edits (issue 9; R-A11-10-1).

A process owner edits a *draft* of a workflow definition (YAML source, optimistic saves by
``version``), validates it (the engine's checks plus the GxP lints of
:mod:`workflow.spec.lints`, every problem at its line) and compares it with the published
version (unified diff). Walking a throw-away record through it is
:mod:`workflow.change_control.dry_run`; submitting it for approval and the ``publish_draft``
action that publishes it are :mod:`workflow.change_control.publishing`.

No Flask here, and no engine: the web editor (webapp/definitions_editor.py) and the CLI call
these functions with the engine, which they use only through :class:`Sessions`.
"""

from __future__ import annotations

import difflib
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import CursorResult, func, select, update
from sqlalchemy.orm import Session

from workflow import clock
from workflow.audit import trail as audit
from workflow.db.engines import is_sqlite
from workflow.db.models import DefinitionDraft, DefinitionVersion, DraftStatus, Record, User
from workflow.errors import NotAuthorized, StaleRecord, WorkflowError
from workflow.identity import users as identity
from workflow.registry import Registry
from workflow.spec.lints import Finding, Validation, validate_text
from workflow.spec.source import MAX_SOURCE_BYTES


class Sessions(Protocol):
    """What drafts need of the engine: its sessions and registry (drafts never import it)."""

    @property
    def registry(self) -> Registry: ...

    def unit(self) -> AbstractContextManager[Session]: ...

    def reader(self) -> AbstractContextManager[Session]: ...


#: who edits drafts and submits them; who approves is the definition_change workflow's business
EDITOR_ROLE = "process_owner"
CHANGE_WORKFLOW = "definition_change"


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


# ------------------------------------------------------------------ helpers


def _now() -> datetime:
    return clock.now()


def check_size(source: str) -> None:
    """A draft text over the definition size limit is refused before it is stored
    (R-SEC-30): every later view would have to read it."""
    size = len(source.encode("utf-8", "surrogatepass"))
    if size > MAX_SOURCE_BYTES:
        raise DraftError(f"The definition text is {size:,} bytes; at most "
                         f"{MAX_SOURCE_BYTES:,} bytes are accepted.")


def require_editor(session: Session, user: User) -> None:
    """Only process owners edit and submit drafts (R-A11-10-1)."""
    if EDITOR_ROLE not in identity.roles_of(session, user):
        raise NotAuthorized("Only process owners edit and submit workflow definitions.",
                            required_roles=(EDITOR_ROLE,))


def latest_row(session: Session, key: str) -> DefinitionVersion | None:
    """The newest published version of ``key`` (None: never published)."""
    return session.execute(
        select(DefinitionVersion).where(DefinitionVersion.key == key)
        .order_by(DefinitionVersion.version.desc()).limit(1)).scalar_one_or_none()


def draft_info(session: Session, d: DefinitionDraft) -> DraftInfo:
    """What the editor shows of draft ``d``: its author, change record and status."""
    author = session.get(User, d.author_id)
    rec = session.get(Record, d.change_record_id) if d.change_record_id else None
    pv = session.get(DefinitionVersion, d.published_version_id) if d.published_version_id \
        else None
    return DraftInfo(
        id=d.id, key=d.key, source=d.source, base_version=d.base_version,
        status=effective_status(d, rec), version=d.version,
        author=author.username if author else "", author_name=author.full_name if author else "",
        created_at=d.created_at, updated_at=d.updated_at, submitted_hash=d.submitted_hash,
        change_record=rec.number if rec else None,
        change_record_state=rec.state if rec else None,
        published_version=pv.version if pv else None)


def effective_status(d: DefinitionDraft, rec: Record | None) -> str:
    """A draft whose change record was rejected or withdrawn is editable again."""
    status = DraftStatus(d.status)
    if status == DraftStatus.IN_APPROVAL and rec is not None and rec.outcome == "void":
        return DraftStatus.DRAFT.value
    return status.value


def load_draft(session: Session, draft_id: int, *, lock: bool = False) -> DefinitionDraft:
    """Draft ``draft_id`` (locked FOR UPDATE when ``lock``, except on SQLite)."""
    stmt = select(DefinitionDraft).where(DefinitionDraft.id == draft_id)
    if lock and not is_sqlite(session):
        stmt = stmt.with_for_update()
    d = session.execute(stmt).scalar_one_or_none()
    if d is None:
        raise WorkflowError(f"There is no definition draft #{draft_id}.")
    return d


# ------------------------------------------------------------------ reading


def get(engine: Sessions, draft_id: int) -> DraftInfo:
    with engine.reader() as s:
        return draft_info(s, load_draft(s, draft_id))


def list_definitions(engine: Sessions) -> list[DefinitionSummary]:
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
        infos = [draft_info(s, d) for d in drafts]
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


def published_source(engine: Sessions, key: str, version: int | None = None
                     ) -> tuple[int, str] | None:
    with engine.reader() as s:
        q = select(DefinitionVersion).where(DefinitionVersion.key == key)
        q = q.where(DefinitionVersion.version == version) if version else \
            q.order_by(DefinitionVersion.version.desc()).limit(1)
        row = s.execute(q).scalar_one_or_none()
        return (row.version, row.source) if row else None


# ------------------------------------------------------------------ editing


def create(engine: Sessions, key: str, actor: str, source: str | None = None) -> DraftInfo:
    """A new draft of ``key``: a copy of the newest published version unless ``source`` is
    given (required for a new workflow). Only process owners (R-A11-10-1)."""
    with engine.unit() as s:
        user = identity.get_user(s, actor)
        require_editor(s, user)
        latest = latest_row(s, key)
        if source is None:
            if latest is None:
                raise DraftError(f"There is no published workflow {key!r} to copy; give the "
                                 "new workflow's YAML.")
            source = latest.source
        check_size(source)
        now = _now()
        d = DefinitionDraft(key=key, source=source, base_version=latest.version if latest
                            else None, status=DraftStatus.DRAFT, version=1, author_id=user.id,
                            created_at=now, updated_at=now, updated_by_id=user.id)
        s.add(d)
        s.flush()
        audit.system_event(s, at=now, actor=user, action="definition_draft_created",
                           changes={"draft": d.id, "key": key, "base_version": d.base_version})
        return draft_info(s, d)


def save(engine: Sessions, draft_id: int, source: str, actor: str, expected_version: int
         ) -> DraftInfo:
    """Store a new source; ``expected_version`` is the version the editor started from. A
    save over someone else's newer save is refused (:class:`StaleRecord`), never merged."""
    check_size(source)
    with engine.unit() as s:
        user = identity.get_user(s, actor)
        require_editor(s, user)
        d = load_draft(s, draft_id, lock=True)
        rec = s.get(Record, d.change_record_id) if d.change_record_id else None
        status = effective_status(d, rec)
        if status != DraftStatus.DRAFT:
            raise DraftError(f"Draft #{draft_id} is {status.replace('_', ' ')}; it can no "
                             "longer be edited" + (f" (withdraw {rec.number} first)."
                                                   if status == "in_approval" and rec else "."))
        now = _now()
        done: CursorResult[Any] = s.execute(  # type: ignore[assignment]  # an UPDATE's result
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
        return draft_info(s, load_draft(s, draft_id))


def withdraw(engine: Sessions, draft_id: int, actor: str, reason: str) -> DraftInfo:
    """Abandon a draft (kept, never deleted). A draft in approval is withdrawn through its
    change record instead."""
    if not (reason or "").strip():
        raise WorkflowError("Withdrawing a draft needs a reason.")
    with engine.unit() as s:
        user = identity.get_user(s, actor)
        require_editor(s, user)
        d = load_draft(s, draft_id, lock=True)
        rec = s.get(Record, d.change_record_id) if d.change_record_id else None
        if effective_status(d, rec) != DraftStatus.DRAFT:
            raise DraftError(f"Draft #{draft_id} is not an open draft.")
        d.status = DraftStatus.WITHDRAWN
        d.version += 1
        d.updated_at = _now()
        audit.system_event(s, at=d.updated_at, actor=user, action="definition_draft_withdrawn",
                           changes={"draft": draft_id, "key": d.key}, reason=reason)
        s.flush()
        return draft_info(s, d)


# ------------------------------------------------------------------ validation


def validate(engine: Sessions, source: str, key: str | None = None,
             origin: str = "draft") -> Validation:
    """The engine's checks (schema, semantics, cross-workflow actions) and the GxP lints,
    each located at its line. ``key``: the workflow the draft is for.

    A text is parsed once per process, not on every view (R-SEC-31): the result is kept
    for the same text, key, origin and published definitions (:data:`VALIDATIONS`)."""
    with engine.reader() as s:
        known = engine.registry.known(s)
    published = tuple(sorted((k, v.content_hash if v is not None else "")
                             for k, v in known.items()))
    cache_key = (hashlib.sha256(source.encode("utf-8", "surrogatepass")).hexdigest(), key,
                 origin, published)
    return VALIDATIONS.get(cache_key, lambda: validate_text(source, known, key=key,
                                                              origin=origin))


class _Validations:
    """The validations of the last ``size`` texts (a draft page shows its validation, its
    diagram and its errors from one parse; saving, validating and submitting a text parse it
    once). Keyed by the text's SHA-256 and what validation depends on; thread-safe."""

    def __init__(self, size: int = 64) -> None:
        self.size = size
        self.items: OrderedDict[Any, Validation] = OrderedDict()
        self.lock = threading.Lock()
        self.parses = 0  # how many texts were parsed (tests read it)

    def get(self, key: Any, compute: Callable[[], Validation]) -> Validation:
        with self.lock:
            if key in self.items:
                self.items.move_to_end(key)
                return self.items[key]
        value = compute()
        with self.lock:
            self.parses += 1
            self.items[key] = value
            while len(self.items) > self.size:
                self.items.popitem(last=False)
        return value


VALIDATIONS = _Validations()


# ------------------------------------------------------------------ diff


def diff(engine: Sessions, draft: DraftInfo) -> str:
    """Unified diff of the draft against the newest published version ('' when equal)."""
    pub = published_source(engine, draft.key)
    old, name = (pub[1], f"{draft.key} v{pub[0]} (published)") if pub else ("", "(new)")
    return "".join(difflib.unified_diff(
        old.splitlines(keepends=True), _nl(draft.source).splitlines(keepends=True),
        fromfile=name, tofile=f"{draft.key} draft #{draft.id} (edit {draft.version})"))


def _nl(text: str) -> str:
    return text if text.endswith("\n") or not text else text + "\n"
