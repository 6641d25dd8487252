"""Each cross-cutting rule once, as a Python predicate AND its SQL twin.

The engine decides one record at a time (a predicate); listings, inboxes and KPIs decide for
many rows in one query (the SQL twin). Both live here, side by side, and
tests/integration/test_rules.py checks that they agree on a matrix of users and records, so
the rule cannot drift between the record page, the API list and the dashboard.

- visibility: who may see a record (``can_see`` / ``visible_clause``);
- inbox: which tasks are a user's work (``in_inbox`` / ``inbox_branches``): open, and assigned
  to them or open to a role they hold; every such task's record is visible to them;
- active grant: whether a role grant counts at a time (``grant_active`` / ``active_grant_clause``);
  authority (the engine's role checks, ``identity.users.roles_of``) also needs the grant's
  keyed seal to hold (``grant_trusted``; HMAC has no SQL twin: listings and KPIs use the
  clause, verify-audit names every grant with a broken seal);
- training completed: whether a training record shows a completed training
  (``training_done`` / ``training_done_clause``), for the workflows that declare the
  ``training`` capability (``training_workflows``) - the engine never names them;
- training current: completed and not expired by the document's retraining interval
  (``training_current`` / ``training_current_clause``); the training gate's
  ``check_training`` asks it of the version in force (the one whose record is in the
  ``document`` capability's effective state), in one statement.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    String,
    and_,
    bindparam,
    cast,
    exists,
    false,
    literal,
    null,
    or_,
    select,
    true,
    union_all,
)
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from workflow import clock
from workflow.db.models import OPEN_TASK, Record, RoleGrant, Task, User
from workflow.db.seals import seal_ok
from workflow.keyring import Key
from workflow.spec.model import DocumentCapability, TrainingCapability, WorkflowDefinition

#: the outcome of a record closed as completed (final state ``outcome: done``)
DONE = "done"

# --------------------------------------------------------------------------- visibility

_tasks = Task.__table__.c
# built once: the record page and every fire run it (see workflow/engine/statements.py)
_HAS_TASK = select(_tasks.id).where(
    _tasks.record_id == bindparam("rid"), _tasks.assignee_id == bindparam("uid")).limit(1)


def sees_workflow(d: WorkflowDefinition, roles: set[str]) -> bool:
    """The roles include one of the workflow's (working or starting) roles."""
    return bool(roles & (set(d.roles) | set(d.start_roles)))


def can_see(session: Session, d: WorkflowDefinition, rec: Record, user: User,
            roles: set[str]) -> bool:
    """A user sees a record when they hold a role of its workflow version, initiated it, or
    have (had) a task on it assigned to them; the system account sees every record.

    ``d``: the record's definition version; ``roles``: the user's roles now."""
    if user.is_system or sees_workflow(d, roles):
        return True
    if rec.created_by_id == user.id:
        return True
    return session.execute(_HAS_TASK, {"rid": rec.id, "uid": user.id}).first() is not None


def visible_clause(user: User, roles: set[str],
                   definitions: Iterable[WorkflowDefinition]) -> ColumnElement[bool]:
    """:func:`can_see` as one SQL condition on ``records``.

    ``definitions``: every published version of every workflow (not read for the system
    account)."""
    if user.is_system:
        return true()
    hashes = [d.content_hash for d in definitions if sees_workflow(d, roles)]
    return or_(
        Record.definition_hash.in_(hashes) if hashes else false(),
        Record.created_by_id == user.id,
        exists().where(Task.record_id == Record.id, Task.assignee_id == user.id))


# --------------------------------------------------------------------------- inbox


def in_inbox(task: Any, user: User, roles: set[str]) -> bool:
    """A task is in the user's inbox: open, and assigned to them, or unassigned and open to
    a role they hold (what they may claim)."""
    if task.status != "open":
        return False
    return task.assignee_id == user.id or (task.assignee_id is None and task.role in roles)


def inbox_branches(user: User, roles: Iterable[str]) -> list[tuple[str, ColumnElement[bool]]]:
    """:func:`in_inbox` as disjoint SQL conditions on ``tasks``: ("mine", assigned to the
    user) and one ("role:<name>", claimable) per role. Each walks its own partial index in
    due order (``ix_tasks_open_assignee_due``, ``ix_tasks_claimable_role_due``), so an inbox
    page costs what the user's work costs, however many tasks the site holds."""
    out: list[tuple[str, ColumnElement[bool]]] = [
        ("mine", and_(OPEN_TASK, _tasks.assignee_id == user.id))]
    out += [(f"role:{r}", and_(OPEN_TASK, _tasks.assignee_id.is_(None), _tasks.role == r))
            for r in sorted(roles)]
    return out


# --------------------------------------------------------------------------- active grant


def grant_active(grant: Any, at: datetime) -> bool:
    """A role grant counts at ``at``: granted by then, neither revoked nor expired by then."""
    return (grant.granted_at <= at
            and (grant.revoked_at is None or grant.revoked_at > at)
            and (grant.expires_at is None or grant.expires_at > at))


def grant_trusted(key: Key, grant: Any) -> bool:
    """The grant row carries its seal (written by the command that granted or revoked it):
    a row inserted or edited with plain SQL is not honoured. ``grant``: a role_grants row
    with its sealed columns and seal."""
    return seal_ok(key, "role_grants", grant)


def active_grant_clause(at: Any) -> ColumnElement[bool]:
    """:func:`grant_active` as an SQL condition on ``role_grants``; ``at`` is a datetime or
    a bind parameter (for statements built once)."""
    g = RoleGrant.__table__.c
    return and_(g.granted_at <= at, or_(g.revoked_at.is_(None), g.revoked_at > at),
                or_(g.expires_at.is_(None), g.expires_at > at))


# --------------------------------------------------------------------------- training


def training_workflows(definitions: Iterable[WorkflowDefinition]
                       ) -> dict[str, TrainingCapability]:
    """The workflows whose records are training records (the ``training`` capability),
    by key, with the fields that name trainee, document and version."""
    return {d.key: d.capabilities.training for d in definitions
            if d.capabilities.training is not None}


def training_done(rec: Record, as_of: datetime) -> bool:
    """A training record shows a completed training at ``as_of``: closed with outcome done
    by then (``rec`` is a record of a training workflow)."""
    return rec.outcome == DONE and rec.closed_at is not None and rec.closed_at <= as_of


def training_done_clause(as_of: Any, workflows: Iterable[str]) -> ColumnElement[bool]:
    """:func:`training_done` as an SQL condition on ``records``, for records of
    ``workflows`` (the training workflows' keys)."""
    keys = list(workflows)
    return and_(Record.workflow_key.in_(keys) if keys else false(), Record.outcome == DONE,
                Record.closed_at <= as_of)


def trainee_of(cap: TrainingCapability) -> ColumnElement[str]:
    """The trainee (username) of a training record."""
    return Record.data[cap.trainee].as_string()


def document_of(cap: TrainingCapability) -> ColumnElement[str]:
    """The document a training record trains on."""
    return Record.data[cap.document].as_string()


def training_current(rec: Record, as_of: datetime, retraining_days: int | None) -> bool:
    """A training record shows a completed training at ``as_of`` that the document's
    retraining interval has not expired: done, and closed less than ``retraining_days``
    before ``as_of`` (None: it does not expire)."""
    if not training_done(rec, as_of):
        return False
    return retraining_days is None or (
        rec.closed_at is not None and rec.closed_at > as_of - timedelta(days=retraining_days))


def training_current_clause(as_of: datetime, workflows: Iterable[str],
                            retraining_days: int | None) -> ColumnElement[bool]:
    """:func:`training_current` as an SQL condition on ``records``."""
    done = training_done_clause(as_of, workflows)
    if retraining_days is None:
        return done
    return and_(done, Record.closed_at > as_of - timedelta(days=retraining_days))


@dataclass(frozen=True)
class EffectiveVersion:
    """The version of a controlled document in force (its record is in the document
    capability's effective state) and its retraining interval in days (None: none)."""

    number: str
    version: str
    retraining_days: int | None


def document_workflows(definitions: Iterable[WorkflowDefinition]
                       ) -> dict[str, DocumentCapability]:
    """The workflows whose records are controlled-document versions (the ``document``
    capability), by key."""
    return {d.key: d.capabilities.document for d in definitions
            if d.capabilities.document is not None}


def _days(raw: Any) -> int | None:
    try:
        return int(raw) or None if raw not in (None, "") else None
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class TrainingCheck:
    """What :func:`check_training` found for one person and document."""

    current: bool
    #: the version the training must be on: the one named, else the effective one (None:
    #: any version, the document being under no document control)
    version: str | None
    effective: EffectiveVersion | None
    #: trained on that version, but longer ago than the retraining interval
    expired: bool


@functools.lru_cache(maxsize=32)
def _training_check(trainings: tuple[tuple[str, TrainingCapability], ...],
                    documents: tuple[tuple[str, DocumentCapability], ...]) -> Any:
    """:func:`check_training`'s statement for these workflows, built once (bind parameters
    username, document, as_of): building the UNION and its cache key cost more than running
    it (issue 18: ~4 ms of every training-gated step under cProfile)."""
    username, document = bindparam("username", type_=String), bindparam("document", type_=String)
    as_of = bindparam("as_of", type_=Record.closed_at.type)
    parts = []
    for key, tcap in trainings:
        v = Record.data[tcap.version].as_string() if tcap.version else cast(null(), String)
        parts.append(select(literal("t").label("kind"), Record.id, v.label("version"),
                            cast(null(), String).label("days"), Record.closed_at)
                     .where(training_done_clause(as_of, [key]), trainee_of(tcap) == username,
                            document_of(tcap) == document))
    for key, dcap in documents:
        days = (Record.data[dcap.retraining_days].as_string() if dcap.retraining_days
                else cast(null(), String))
        parts.append(select(literal("e"), Record.id, Record.data[dcap.version].as_string(),
                            days, cast(null(), Record.closed_at.type))
                     .where(Record.workflow_key == key, Record.state == dcap.effective_state,
                            Record.data[dcap.number].as_string() == document))
    return union_all(*parts)


def check_training(session: Session, trainings: Mapping[str, TrainingCapability],
                   documents: Mapping[str, DocumentCapability], username: str, document: str,
                   version: str | None, as_of: datetime) -> TrainingCheck:
    """Whether ``username`` is currently trained on ``document``: a completed training on
    ``version`` if named, else on the controlled document's effective version, not older than
    its retraining interval (:func:`training_current`); a document no workflow controls: a
    completed training on any version. ONE statement (the training gate runs it on each
    gated step): the effective version rows and the person's completed trainings on the
    document, as a UNION."""
    if not trainings:
        return TrainingCheck(False, version, None, False)  # fail closed
    stmt = _training_check(tuple(trainings.items()), tuple(documents.items()))
    rows = session.execute(stmt, {"username": username, "document": document,
                                  "as_of": as_of}).all()
    eff_rows = sorted((r for r in rows if r.kind == "e"), key=lambda r: r.id)
    eff = (EffectiveVersion(document, str(eff_rows[-1].version or ""),
                            _days(eff_rows[-1].days)) if eff_rows else None)
    want = version or (eff.version if eff else None)
    days = eff.retraining_days if eff is not None and eff.version == want else None
    done = [r for r in rows if r.kind == "t" and (want is None or r.version == want)]
    since = as_of - timedelta(days=days) if days else None
    current = any(since is None or clock.as_utc(r.closed_at) > since for r in done)
    return TrainingCheck(current, want, eff, bool(done) and not current)


def trained_on(session: Session, workflows: Mapping[str, TrainingCapability], username: str,
               document: str, version: str | None, as_of: datetime, *,
               retraining_days: int | None = None) -> bool:
    """The user has a completed training on ``document`` (and ``version``, when given) in
    any of the training ``workflows``, not expired by ``retraining_days``."""
    per_workflow = []
    for key, cap in workflows.items():
        conds = [Record.workflow_key == key, trainee_of(cap) == username,
                 document_of(cap) == document]
        if version:
            if cap.version is None:
                continue  # a workflow that records no version cannot show a version's training
            conds.append(Record.data[cap.version].as_string() == version)
        per_workflow.append(and_(*conds))
    if not per_workflow:
        return False
    q = select(Record.id).where(training_current_clause(as_of, workflows, retraining_days),
                                or_(*per_workflow))
    return session.execute(q.limit(1)).first() is not None
