"""Published definition versions: publishing, lookup by key or content hash, and the
compiled version (:class:`~workflow.spec.machine.Compiled`), built once per version and
cached.

Nothing is compiled on trust: the stored source's canonical hash is recomputed and must equal
the version's recorded ``content_hash`` (the hash records and signatures are bound to);
otherwise :class:`~workflow.errors.DefinitionTampered` is raised and no record runs under it.
"""

from __future__ import annotations

import hashlib
import threading

from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session
from transitions import Machine

from workflow import clock
from workflow.audit import trail as audit
from workflow.db.models import DefinitionPerson, DefinitionVersion, User
from workflow.errors import UnknownWorkflow
from workflow.spec.fields import people_places
from workflow.spec.load import published
from workflow.spec.machine import Compiled, compile_machine
from workflow.spec.model import WorkflowDefinition

# built once: every start runs _LATEST_HASH (see workflow/engine/statements.py)
_versions = DefinitionVersion.__table__.c
_LATEST_HASH = (select(_versions.content_hash).where(_versions.key == bindparam("key"))
                .order_by(_versions.version.desc()).limit(1))
_BY_HASH = select(DefinitionVersion).where(DefinitionVersion.content_hash == bindparam("content_hash"))
# the newest version's hash of every key, in one statement (the training gate's each step)
_newest_v = (select(_versions.key, func.max(_versions.version).label("v"))
             .group_by(_versions.key).subquery())
_NEWEST_HASHES = (select(_versions.key, _versions.content_hash)
                  .join(_newest_v, (_versions.key == _newest_v.c.key)
                        & (_versions.version == _newest_v.c.v)).order_by(_versions.key))


#: compiled definitions shared by every registry of the process, keyed by what was verified:
#: key, version, recorded hash AND the digest of the exact source text checked against it. A
#: source changed behind the application's back has another digest, so it is parsed and
#: checked again (and refused); an unchanged one is not parsed again by the next engine the
#: process opens (a CLI command, a test). Bounded by the distinct sources a process meets.
_COMPILED: dict[tuple[str, int, str, str], tuple[WorkflowDefinition, Machine]] = {}
_COMPILED_LOCK = threading.Lock()


def _verified(row: DefinitionVersion) -> tuple[WorkflowDefinition, Machine]:
    digest = hashlib.sha256(row.source.encode()).hexdigest()
    key = (row.key, row.version, row.content_hash, digest)
    with _COMPILED_LOCK:
        hit = _COMPILED.get(key)
        if hit is None:
            d = published(row)
            hit = _COMPILED[key] = (d, compile_machine(d))
        return hit


class Registry:
    """Process-wide cache of compiled definition versions (immutable, so safe to share)."""

    def __init__(self) -> None:
        self._by_hash: dict[str, Compiled] = {}
        self._lock = threading.Lock()

    def _compile(self, row: DefinitionVersion) -> Compiled:
        with self._lock:
            hit = self._by_hash.get(row.content_hash)
            if hit is None:
                d, machine = _verified(row)
                hit = Compiled(row.id, row.version, d, machine)
                self._by_hash[row.content_hash] = hit
            return hit

    def by_hash(self, session: Session, content_hash: str) -> Compiled:
        hit = self._by_hash.get(content_hash)
        if hit is not None:
            return hit
        row = session.execute(_BY_HASH, {"content_hash": content_hash}).scalar_one()
        return self._compile(row)

    def latest(self, session: Session, key: str) -> Compiled:
        # only the newest version's hash is read: the compiled version is usually cached, and
        # the row with its source text is loaded only when it is not
        content_hash = session.execute(_LATEST_HASH, {"key": key}).scalar_one_or_none()
        if content_hash is None:
            raise UnknownWorkflow(key)
        return self.by_hash(session, content_hash)

    def known(self, session: Session) -> dict[str, WorkflowDefinition]:
        """The newest published definition of every workflow key (what a draft's
        cross-workflow references are checked against)."""
        return self.newest(session)

    def newest(self, session: Session) -> dict[str, WorkflowDefinition]:
        """What :meth:`known` returns, read in one statement (compiled versions cached)."""
        return {key: self.by_hash(session, h).definition
                for key, h in session.execute(_NEWEST_HASHES).all()}

    def publish(self, session: Session, d: WorkflowDefinition, actor: User,
                reason: str = "") -> tuple[DefinitionVersion, bool]:
        """Store ``d`` as the next version of its key unless that exact content is already
        published. Returns (row, created). Published versions are immutable (DB triggers)."""
        existing = session.execute(
            select(DefinitionVersion).where(DefinitionVersion.content_hash == d.content_hash)
        ).scalar_one_or_none()
        if existing is not None:
            return existing, False
        last = session.execute(
            select(func.max(DefinitionVersion.version)).where(DefinitionVersion.key == d.key)
        ).scalar_one()
        now = clock.now()
        row = DefinitionVersion(key=d.key, version=(last or 0) + 1, title=d.title,
                                content_hash=d.content_hash, source=d.source,
                                published_at=now, published_by_id=actor.id)
        session.add(row)
        # where its records name people, for the record_people triggers (migration 0015)
        session.add_all(DefinitionPerson(definition_hash=d.content_hash, field=f, sub=sub)
                        for f, sub in people_places(d.fields.values()))
        session.flush()
        audit.system_event(session, at=now, actor=actor, action="definition_published",
                           changes={"key": d.key, "version": [last, row.version],
                                    "content_hash": d.content_hash},
                           reason=reason or None)
        return row, True
