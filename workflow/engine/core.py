"""The engine: the one transactional path every change takes.

``Engine.start``, ``Engine.fire``, the due-date extension calls and ``Engine.run_due_timers``
each run in ONE database transaction (``Engine.unit``): lock the record, authorise, validate,
check the signature gate, move the state, open and close tasks, run the on-enter actions,
append audit events, commit. Any exception rolls everything back; nothing is half-done.
The web UI, the API, the CLI and the scheduler all call these same methods.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import bindparam, event, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from workflow import canonical, clock
from workflow.audit import trail as audit
from workflow.db.engines import WRITE, is_sqlite
from workflow.db.models import (
    AuditEvent,
    DueDateExtension,
    ExtensionStatus,
    OutboxMessage,
    Record,
    RecordCounter,
    RecordLink,
    Signature,
    Task,
    TaskStatus,
    Timer,
    TimerStatus,
    User,
)
from workflow.errors import (
    AccountLocked,
    CredentialsRejected,
    DueDateLocked,
    GuardFailed,
    NotAuthorized,
    ReasonRequired,
    RecordNotFound,
    SegregationOfDuties,
    SignatureRejected,
    SignatureRequired,
    StaleRecord,
    TrainingRequired,
    TransitionNotAvailable,
    ValidationFailed,
    WorkflowError,
)
from workflow.identity import users as identity
from workflow.registry import Compiled, Registry
from workflow.signatures.mac import CredentialVerifier, VouchingVerifier, compute_mac
from workflow.spec import expressions
from workflow.spec.fields import FieldValueError, coerce, is_empty, references_in, users_in
from workflow.spec.model import Action, TransitionSpec, WorkflowDefinition, parse_duration

log = logging.getLogger(__name__)

# ------------------------------------------------------------------ pre-built statements
# The statements a unit of work runs are built once, here. SQLAlchemy caches the compiled SQL,
# but building a statement and computing its cache key on every call cost more than running
# it (measured 40-90 us a statement, ~10 statements a transition). Where no ORM object is
# needed they select Core table columns, which also skips the ORM's result processing.
_users = User.__table__.c
_records = Record.__table__.c
_tasks = Task.__table__.c
_timers = Timer.__table__.c
_signatures = Signature.__table__.c
_events = AuditEvent.__table__.c
_counters = RecordCounter.__table__.c

_RECORD_BY_ID = select(Record).where(Record.id == bindparam("ref"))
_RECORD_BY_NUMBER = select(Record).where(Record.number == bindparam("ref"))
_LOCK_BY_ID = _RECORD_BY_ID.with_for_update()
_LOCK_BY_NUMBER = _RECORD_BY_NUMBER.with_for_update()
_USER_ID = select(_users.id).where(_users.username == bindparam("username"))
_USERNAME = select(_users.username).where(_users.id == bindparam("user_id"))
_ACTIVE_USERNAMES = select(_users.username).where(
    _users.username.in_(bindparam("names", expanding=True)),
    _users.active.is_(True), _users.is_system.is_(False))
_RECORD_WORKFLOWS = select(_records.number, _records.workflow_key).where(
    _records.number.in_(bindparam("numbers", expanding=True)))
_HAS_TASK = select(_tasks.id).where(
    _tasks.record_id == bindparam("rid"), _tasks.assignee_id == bindparam("uid")).limit(1)
_HAS_OPEN_TASK = select(_tasks.id).where(
    _tasks.record_id == bindparam("rid"), _tasks.assignee_id == bindparam("uid"),
    _tasks.status == TaskStatus.OPEN).limit(1)
_DID_STEP = select(_events.transition).where(
    _events.record_id == bindparam("rid"), _events.actor_id == bindparam("uid"),
    _events.transition.in_(bindparam("transitions", expanding=True)),
    _events.action.in_(("transition", "sign"))).limit(1)
_EARLIER_SIGNATURES = select(_signatures.signer_id, _signatures.signer_role).where(
    _signatures.record_id == bindparam("rid"), _signatures.transition == bindparam("transition"),
    _signatures.state_visit == bindparam("visit"))
_INSERT_SIGNATURE = insert(Signature.__table__)

_INSERT_TASKS = insert(Task.__table__)
_INSERT_TIMER = insert(Timer.__table__)
_INSERT_OUTBOX = insert(OutboxMessage.__table__)
_CLOSE_TASKS = update(Task.__table__).where(
    _tasks.record_id == bindparam("rid"), _tasks.status == TaskStatus.OPEN,
).values(status=TaskStatus.DONE, closed_at=bindparam("now"), closed_by_id=bindparam("uid"),
         closed_by_transition=bindparam("transition"))
_CLOSE_ROLE_TASK = update(Task.__table__).where(
    _tasks.record_id == bindparam("rid"), _tasks.status == TaskStatus.OPEN,
    _tasks.role == bindparam("b_role"),
).values(status=TaskStatus.DONE, closed_at=bindparam("now"), closed_by_id=bindparam("uid"),
         closed_by_transition=bindparam("transition"))
_CANCEL_TIMERS = update(Timer.__table__).where(
    _timers.record_id == bindparam("rid"), _timers.status == TimerStatus.PENDING,
).values(status=TimerStatus.CANCELLED)
_COUNTER_ROW = {
    name: upsert(RecordCounter.__table__)
    .values(prefix=bindparam("p"), year=bindparam("y"), last_value=0)
    .on_conflict_do_nothing(index_elements=["prefix", "year"])
    for name, upsert in (("postgresql", postgresql.insert), ("sqlite", sqlite.insert))
}
_BUMP_COUNTER = (
    update(RecordCounter.__table__)
    .where(_counters.prefix == bindparam("p"), _counters.year == bindparam("y"))
    .values(last_value=_counters.last_value + 1)
    .returning(_counters.last_value)
)
_INSERT_RECORD = insert(Record.__table__)
# SET gets the columns passed at execution (the ones that changed)
_UPDATE_RECORD = update(Record.__table__).where(
    _records.id == bindparam("_id"), _records.version == bindparam("_stored_version"))
_RECORD_VERSION = select(_records.version).where(_records.id == bindparam("_id"))

# ------------------------------------------------------------------ record write-back
# The record a unit changes is not left to the ORM unit of work: it is detached when loaded
# (``_lock``) or inserted with Core (``_create``), and the columns that changed are written by
# one version-checked UPDATE (WHERE id AND version = the version read) when the unit flushes
# or commits. The ORM flush of that one row cost ~0.12 ms a unit, more than any statement
# (measured). Like the audit rows, the write is hooked to the session, so no exit path can
# skip it, and a rollback discards it.
_TRACKED = "qms_tracked_records"
# definition_id/definition_hash change only in Engine.migrate_records (a signed migration plan)
_WRITABLE = ("title", "state", "state_visit", "data", "version", "updated_at", "closed_at",
             "outcome", "due_current", "audit_seq", "audit_head", "seal",
             "definition_id", "definition_hash")


def _track(session: Session, rec: Record) -> None:
    """Write ``rec``'s later changes back at flush/commit; ``rec`` matches its row now."""
    stored = {k: getattr(rec, k) for k in _WRITABLE}
    session.info.setdefault(_TRACKED, []).append((rec, stored))


def _write_back(session: Session) -> None:
    for rec, stored in session.info.get(_TRACKED, ()):
        changed = {k: v for k in _WRITABLE if (v := getattr(rec, k)) != stored[k]}
        if not changed:
            continue
        rec.seal = changed["seal"] = audit.record_seal(audit.session_key(session), rec)
        conn = session.connection()
        done = conn.execute(_UPDATE_RECORD, {**changed, "_id": rec.id,
                                             "_stored_version": stored["version"]})
        if done.rowcount != 1:
            # cannot happen under the row lock; refuse rather than overwrite
            actual = conn.execute(_RECORD_VERSION, {"_id": rec.id}).scalar_one_or_none()
            raise StaleRecord(rec.number, stored["version"], actual or 0)
        stored.update(changed)


@event.listens_for(Session, "before_flush")
def _records_before_flush(session: Session, _ctx: Any, _instances: Any) -> None:
    _write_back(session)


@event.listens_for(Session, "before_commit")
def _records_before_commit(session: Session) -> None:
    _write_back(session)


@event.listens_for(Session, "after_rollback")
def _records_after_rollback(session: Session) -> None:
    session.info.pop(_TRACKED, None)


@dataclass(frozen=True)
class Result:
    """What a start or fire did, as plain data (safe to use after the session closed)."""

    record_id: int
    number: str
    workflow: str
    state: str
    version: int
    moved: bool = True
    signatures_needed: int = 0
    signature_id: int | None = None
    created: tuple[str, ...] = ()


@dataclass
class _Ctx:
    """Per-unit state: the session, the time of the unit, and what it created."""

    session: Session
    now: datetime
    created: list[str] = field(default_factory=list)
    depth: int = 0
    _roles: dict[int, set[str]] = field(default_factory=dict)

    def roles(self, user: User) -> set[str]:
        """The user's roles at the time of this unit (looked up once per unit)."""
        if user.id not in self._roles:
            self._roles[user.id] = identity.roles_of(self.session, user, self.now)
        return self._roles[user.id]


def _as_actor(session: Session, actor: str | User) -> User:
    if isinstance(actor, User):
        return session.merge(actor, load=False) if actor not in session else actor
    return identity.get_user(session, actor)


class Engine:
    """Runs workflow definitions against the database.

    Args:
        sessions: a sessionmaker; each entry point opens its own session and transaction.
        signing_key: server key for signature MACs (kept outside the database).
        verifier: checks signature credentials; defaults to :class:`VouchingVerifier`.
        registry: compiled definition cache; share one per process.
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        signing_key: bytes,
        verifier: CredentialVerifier | None = None,
        registry: Registry | None = None,
        system_name: str | None = None,
    ) -> None:
        self.sessions = sessions
        #: how this QMS is named in access reviews (QMS_SYSTEM_NAME); its own grants are
        #: revoked by revoke_grants actions of reviews of this system
        self.system_name = system_name or os.environ.get("QMS_SYSTEM_NAME", "QMS")
        self.signing_key = signing_key
        self.verifier: CredentialVerifier = verifier or VouchingVerifier()
        self.registry = registry or Registry()

    # ------------------------------------------------------------------ unit of work

    @contextmanager
    def unit(self) -> Iterator[Session]:
        """One write transaction: commit on success, roll back on any exception."""
        session = self.sessions()
        try:
            # no autoflush: the unit flushes where it needs ids and once at commit, instead
            # of before every query (measured: half the cost of a transition)
            with session.begin(), session.no_autoflush:
                session.connection(execution_options=WRITE)
                session.info[audit.KEY] = self.signing_key
                yield session
        finally:
            session.close()

    @contextmanager
    def reader(self) -> Iterator[Session]:
        """A read-only session (never commits)."""
        session = self.sessions()
        try:
            with session.begin():
                yield session
        finally:
            session.close()

    # ------------------------------------------------------------------ entry points

    def start(
        self,
        workflow: str,
        actor: str | User,
        data: Mapping[str, Any] | None = None,
        *,
        reason: str | None = None,
    ) -> Result:
        """Create a record of ``workflow`` (newest published version) in its initial state.

        Raises:
            UnknownWorkflow, NotAuthorized, ValidationFailed, InactiveUser, UnknownUser.
        """
        with self.unit() as session:
            ctx = _Ctx(session, clock.now())
            user = _as_actor(session, actor)
            compiled = self.registry.latest(session, workflow)
            d = compiled.definition
            roles = ctx.roles(user)
            if not roles & set(d.start_roles):
                raise NotAuthorized(
                    f"Starting a {d.title} needs one of the roles: {', '.join(d.start_roles)}.",
                    required_roles=d.start_roles,
                )
            record = self._create(ctx, compiled, user, dict(data or {}), reason=reason)
            return self._result(record, ctx)

    def start_in(self, session: Session, workflow: str, actor: User, data: Mapping[str, Any],
                 *, reason: str | None = None) -> Record:
        """Create a record inside the caller's unit (``Engine.unit``), for changes that must
        commit together with the record (a job's claim row, a draft's submission). The
        caller has checked the actor may start it. The returned record is tracked by the
        unit: audit events appended to it are written with it at commit."""
        ctx = _Ctx(session, clock.now())
        compiled = self.registry.latest(session, workflow)
        rec = self._create(ctx, compiled, actor, dict(data), reason=reason)
        session.flush()
        return rec

    def start_as_system(self, session: Session, workflow: str, data: Mapping[str, Any], *,
                        reason: str) -> Record:
        """``start_in`` as the system user: scheduled jobs (the reason names the job; start
        roles do not apply to the system acting on a schedule)."""
        return self.start_in(session, workflow, identity.system_user(session), data,
                             reason=reason)

    def fire(
        self,
        record: int | str,
        transition: str,
        actor: str | User,
        data: Mapping[str, Any] | None = None,
        *,
        signature: Any = None,
        reason: str | None = None,
        expected_version: int | None = None,
    ) -> Result:
        """Fire ``transition`` on ``record`` (id or number) as ``actor``.

        With a quorum signature gate the record stays in place until enough signatures are
        collected; ``Result.moved`` tells which happened.

        Raises:
            RecordNotFound, StaleRecord, TransitionNotAvailable, NotAuthorized,
            SegregationOfDuties, ValidationFailed, ReasonRequired, GuardFailed,
            SignatureRequired, SignatureRejected, InactiveUser.
        """
        try:
            with self.unit() as session:
                ctx = _Ctx(session, clock.now())
                user = _as_actor(session, actor)
                rec = self._lock(session, record)
                self._check_visible(ctx, rec, user, record)
                if expected_version is not None and rec.version != expected_version:
                    raise StaleRecord(rec.number, expected_version, rec.version)
                moved, needed, sig_id = self._fire(ctx, rec, transition, user, dict(data or {}),
                                                   signature, reason)
                return self._result(rec, ctx, moved=moved, needed=needed, signature_id=sig_id)
        except CredentialsRejected as exc:
            self._signature_failed(exc)
            raise

    def available_transitions(self, record: int | str, actor: str | User) -> list[TransitionSpec]:
        """Transitions ``actor`` may fire on ``record`` now (by state, role and separation of
        duties; guards and signatures are checked when firing)."""
        with self.reader() as session:
            user = _as_actor(session, actor)
            rec = self._get(session, record)
            d = self.registry.by_hash(session, rec.definition_hash).definition
            roles = identity.roles_of(session, user)
            if not self._visible(session, d, rec, user, roles):
                raise RecordNotFound(record)
            out = []
            for t in d.transitions_from(rec.state):
                try:
                    self._authorise(session, d, rec, t, user, roles)
                except NotAuthorized:
                    continue
                out.append(t)
            return out

    def get(self, record: int | str, viewer: str | User | None = None) -> Record:
        """The record row (detached) by id or number. With ``viewer``, a record that person
        may not see is reported as not found (R-P11-10d-2: no probing by id)."""
        with self.reader() as session:
            rec = self._get(session, record)
            if viewer is not None:
                user = _as_actor(session, viewer)
                d = self.registry.by_hash(session, rec.definition_hash).definition
                if not self._visible(session, d, rec, user, identity.roles_of(session, user)):
                    raise RecordNotFound(record)
            return rec

    def _visible(self, session: Session, d: WorkflowDefinition, rec: Record, user: User,
                 roles: set[str]) -> bool:
        """A user sees a record when they hold a role of its workflow, initiated it, or have
        (had) a task on it assigned to them."""
        if user.is_system or roles & (set(d.roles) | set(d.start_roles)):
            return True
        if rec.created_by_id == user.id:
            return True
        return session.execute(_HAS_TASK, {"rid": rec.id, "uid": user.id}).first() is not None

    def _check_visible(self, ctx: _Ctx, rec: Record, user: User, ref: int | str) -> None:
        d = self.registry.by_hash(ctx.session, rec.definition_hash).definition
        if not self._visible(ctx.session, d, rec, user, ctx.roles(user)):
            raise RecordNotFound(ref)

    def definition_of(self, record: Record) -> WorkflowDefinition:
        with self.reader() as session:
            return self.registry.by_hash(session, record.definition_hash).definition

    # ------------------------------------------------------------------ due-date extensions

    def request_extension(
        self,
        record: int | str,
        actor: str | User,
        new_due: datetime,
        reason: str,
        *,
        expected_version: int | None = None,
    ) -> int:
        """Ask to move a record's current due date; QA decides with a signature.

        The due date itself never changes here. Returns the extension request id.
        """
        if new_due.tzinfo is None:
            raise ValidationFailed({"new_due": "needs a time zone"})
        if not (reason or "").strip():
            raise ReasonRequired("request a due-date extension")
        with self.unit() as session:
            now = clock.now()
            user = _as_actor(session, actor)
            rec = self._lock(session, record)
            if expected_version is not None and rec.version != expected_version:
                raise StaleRecord(rec.number, expected_version, rec.version)
            if rec.closed_at is not None:
                raise DueDateLocked(f"{rec.number} is closed; its due date cannot change.")
            if rec.due_current is None:
                raise DueDateLocked(f"{rec.number} has no due date to extend.")
            if new_due <= rec.due_current:
                raise ValidationFailed({"new_due": "must be later than the current due date "
                                                   f"({rec.due_current:%Y-%m-%d})"})
            pending = session.execute(
                select(func.count()).select_from(DueDateExtension).where(
                    DueDateExtension.record_id == rec.id,
                    DueDateExtension.status == ExtensionStatus.REQUESTED)
            ).scalar_one()
            if pending:
                raise DueDateLocked(f"{rec.number} already has an extension request waiting.")
            d = self.registry.by_hash(session, rec.definition_hash).definition
            roles = identity.roles_of(session, user, now)
            if not (roles & (set(d.roles) | set(d.start_roles))) and user.id != rec.created_by_id:
                raise NotAuthorized("Only people working on this record may request an extension.")
            ext = DueDateExtension(record_id=rec.id, requested_by_id=user.id, requested_at=now,
                                   old_due=rec.due_current, new_due=new_due, reason=reason,
                                   status=ExtensionStatus.REQUESTED)
            session.add(ext)
            session.flush()
            rec.version += 1
            rec.updated_at = now
            audit.record_event(session, rec, at=now, actor=user, action="extension_requested",
                               changes={"due_current": [rec.due_current, new_due],
                                        "extension_id": ext.id},
                               reason=reason)
            return ext.id

    def decide_extension(
        self,
        extension_id: int,
        actor: str | User,
        approve: bool,
        *,
        signature: Any = None,
        reason: str | None = None,
    ) -> Result:
        """Approve (signed) or reject (with a reason) a due-date extension request.

        Both the original and the current due date stay on the record; open tasks whose
        due date followed the record's move with it.
        """
        try:
            return self._decide_extension(extension_id, actor, approve, signature, reason)
        except CredentialsRejected as exc:
            self._signature_failed(exc)
            raise

    def _signature_failed(self, exc: CredentialsRejected) -> None:
        """Record a failed signing in its own transaction (the refused change rolled back)
        so that it counts toward lockout and is a security event (Part 11 §11.300(d))."""
        record = getattr(self.verifier, "record_failure", None)
        if record is None:
            return
        with self.unit() as session:
            locked = record(session, exc)
            username = session.get(User, exc.user_id).username if exc.user_id else ""
        if locked:
            raise AccountLocked(username) from exc

    def _decide_extension(self, extension_id: int, actor: str | User, approve: bool,
                          signature: Any, reason: str | None) -> Result:
        with self.unit() as session:
            ctx = _Ctx(session, clock.now())
            user = _as_actor(session, actor)
            ext = session.get(DueDateExtension, extension_id)
            if ext is None:
                raise WorkflowError(f"There is no extension request #{extension_id}.")
            rec = self._lock(session, ext.record_id)
            if ext.status != ExtensionStatus.REQUESTED:
                raise WorkflowError(f"Extension request #{extension_id} was already {ext.status}.")
            if rec.closed_at is not None and approve:
                raise DueDateLocked(f"{rec.number} is closed; its due date can no longer move "
                                    "(reject the request instead).")
            d = self.registry.by_hash(session, rec.definition_hash).definition
            roles = ctx.roles(user)
            if not roles & set(d.extension_roles):
                raise NotAuthorized(
                    f"Deciding a due-date extension needs one of: {', '.join(d.extension_roles)}.",
                    required_roles=d.extension_roles)
            if user.id == ext.requested_by_id:
                raise SegregationOfDuties("You cannot decide your own extension request.",
                                          rule="not_requester")
            ext.decided_by_id = user.id
            ext.decided_at = ctx.now
            ext.decision_reason = reason
            rec.version += 1
            rec.updated_at = ctx.now
            if not approve:
                if not (reason or "").strip():
                    raise ReasonRequired("reject an extension request")
                ext.status = ExtensionStatus.REJECTED
                audit.record_event(session, rec, at=ctx.now, actor=user,
                                   action="extension_rejected",
                                   changes={"extension_id": ext.id}, reason=reason)
                return self._result(rec, ctx, moved=False)
            if signature is None:
                raise SignatureRequired("approve extension", "Extension approved")
            sig_id, _ = self._sign(ctx, rec, user, signature, transition="approve_extension",
                                   meaning="Extension approved", roles=d.extension_roles,
                                   data=rec.data)
            ext.status = ExtensionStatus.APPROVED
            ext.signature_id = sig_id
            old = rec.due_current
            rec.due_current = ext.new_due
            session.execute(
                update(Task.__table__)
                .where(Task.record_id == rec.id, Task.status == TaskStatus.OPEN,
                       Task.due_at == old)
                .values(due_at=ext.new_due)
            )
            audit.record_event(session, rec, at=ctx.now, actor=user, action="due_date_extended",
                               changes={"due_current": [old, ext.new_due], "extension_id": ext.id},
                               reason=reason or ext.reason)
            return self._result(rec, ctx, moved=False, signature_id=sig_id)

    # ------------------------------------------------------------------ migration (issue 9)

    def migrate_records(
        self,
        moves: list[Mapping[str, Any]],
        *,
        to: Compiled,
        actor: str | User,
        signature: Any,
        meaning: str,
        roles: tuple[str, ...],
        plan: Mapping[str, Any],
        reason: str,
    ) -> list[tuple[str, str | None]]:
        """Move running records to definition version ``to``. Call it through
        :mod:`workflow.migration_plans`, which validates the plan and builds ``moves``
        (R-WF-10).

        Each move is ``{"record": id, "version": the record version validated, "state":
        target state, "drop_fields": [...]}``. The credentials are verified ONCE for the
        whole plan (a TOTP code is single-use); the signer must be ``actor`` and hold one of
        ``roles``. Then each record migrates in its own transaction (its lock stays short; a
        record that changed since validation is skipped, never half-moved): a signature row
        (meaning ``meaning``) bound to the record's content as it was, its open tasks and
        pending timers cancelled, ``drop_fields`` removed, the definition id/hash and the
        state set as a new state visit (quorum signatures given under the old rules do not
        count toward the new version's gate), a "migrated" audit event with both hashes, the
        plan and the signature, then the new state's tasks (an unchanged state keeps its
        tasks' assignee and due date) and its start_timer timers (an unchanged state keeps
        its timer's time). No other on-enter action runs: the record did not arrive by a
        step, so notifications, linked records, due fields and grant revocations must not
        repeat. Returns (number, None) per migrated record, (number, error) per skipped one.
        """
        try:
            with self.unit() as session:
                user = _as_actor(session, actor)
                signer = self.verifier.verify(session, signature, user)
                if signer.user.id != user.id:
                    raise SignatureRejected("The signer must be the person migrating the records.")
                eligible = [r for r in roles if r in identity.roles_of(session, user)]
                if not eligible:
                    raise NotAuthorized(f"Signing {meaning!r} needs one of these roles: "
                                        f"{', '.join(roles)}.", required_roles=roles)
                user_id, method, role = user.id, signer.method, eligible[0]
        except CredentialsRejected as exc:
            self._signature_failed(exc)
            raise
        d = to.definition
        out: list[tuple[str, str | None]] = []
        for move in moves:
            number = str(move["record"])
            try:
                with self.unit() as session:
                    ctx = _Ctx(session, clock.now())
                    user = session.get(User, user_id)
                    rec = self._lock(session, move["record"])
                    number = rec.number
                    if rec.version != move["version"]:
                        raise StaleRecord(rec.number, move["version"], rec.version)
                    if rec.workflow_key != d.key or rec.closed_at is not None:
                        raise WorkflowError(f"{rec.number} is not a running {d.key} record")
                    old = self.registry.by_hash(session, rec.definition_hash)
                    state = d.states[move["state"]]
                    src = rec.state
                    rec.version += 1
                    rec.updated_at = ctx.now
                    content_hash = canonical.sha256(canonical.record_content(
                        rec.number, rec.workflow_key, rec.definition_hash, dict(rec.data)))
                    row = dict(record_id=rec.id, record_version=rec.version,
                               state_visit=rec.state_visit, transition="migrate",
                               meaning=meaning, signer_id=user.id, signer_name=user.full_name,
                               signer_username=user.username, signer_role=role, method=method,
                               signed_at=ctx.now, content_hash=content_hash)
                    row["mac"] = compute_mac(self.signing_key, Signature(**row), rec.number)
                    sig_id = session.execute(_INSERT_SIGNATURE, row).inserted_primary_key[0]
                    audit.record_event(session, rec, at=ctx.now, actor=user, action="sign",
                                       transition="migrate",
                                       changes={"signature": {"id": sig_id, "meaning": meaning,
                                                              "role": role, "method": method,
                                                              "content_hash": content_hash}})
                    before = {t.role: t for t in session.execute(
                        select(_tasks.role, _tasks.assignee_id, _tasks.due_at).where(
                            _tasks.record_id == rec.id, _tasks.status == TaskStatus.OPEN))}
                    session.execute(update(Task.__table__).where(
                        _tasks.record_id == rec.id, _tasks.status == TaskStatus.OPEN).values(
                        status=TaskStatus.CANCELLED, closed_at=ctx.now, closed_by_id=user.id,
                        closed_by_transition="migrate"))
                    timers = dict(session.execute(select(_timers.transition, _timers.fire_at).where(
                        _timers.record_id == rec.id, _timers.status == TimerStatus.PENDING,
                        _timers.state_visit == rec.state_visit)).all())
                    session.execute(_CANCEL_TIMERS, {"rid": rec.id})
                    dropped = {f: [rec.data[f], None] for f in move.get("drop_fields", ())
                               if f in rec.data}
                    if dropped:
                        rec.data = {k: v for k, v in rec.data.items() if k not in dropped}
                    old_hash = rec.definition_hash
                    rec.definition_id, rec.definition_hash = to.id, d.content_hash
                    rec.state = state.name
                    rec.state_visit += 1
                    audit.record_event(
                        session, rec, at=ctx.now, actor=user, action="migrated",
                        transition="migrate", from_state=src, to_state=state.name, reason=reason,
                        changes={"definition_hash": [old_hash, d.content_hash],
                                 "definition_version": [old.version, to.version],
                                 "plan": dict(plan), "signature_id": sig_id, "fields": dropped})
                    same = state.name == src
                    if state.owners or state.assignee_field:
                        due = self._task_due(ctx, rec, state)
                        assignee_id = None
                        if state.assignee_field and rec.data.get(state.assignee_field):
                            assignee_id = session.execute(_USER_ID, {
                                "username": rec.data[state.assignee_field]}).scalar_one_or_none()
                        rows = []
                        for owner in state.owners or (None,):
                            task_role, who = ((None, rec.created_by_id) if owner == "initiator"
                                              else (owner, assignee_id))
                            prev = before.get(task_role) if same else None
                            rows.append({"record_id": rec.id, "state": rec.state,
                                         "state_visit": rec.state_visit, "role": task_role,
                                         "assignee_id": who if who is not None or prev is None
                                         else prev.assignee_id,
                                         "status": TaskStatus.OPEN, "opened_at": ctx.now,
                                         "due_at": prev.due_at if prev is not None else due})
                        session.execute(_INSERT_TASKS, rows)
                    for action in state.on_enter:
                        if action.kind != "start_timer":
                            continue
                        p = action.params
                        if p.get("after_field"):
                            if not rec.data.get(p["after_field"]):
                                continue
                            fire_at = _end_of(rec.data[p["after_field"]])
                        elif same and p["transition"] in timers:
                            fire_at = timers[p["transition"]]
                        else:
                            fire_at = ctx.now + parse_duration(p["after"])
                        session.execute(_INSERT_TIMER, {
                            "record_id": rec.id, "state_visit": rec.state_visit,
                            "transition": p["transition"], "fire_at": fire_at,
                            "status": TimerStatus.PENDING})
                out.append((number, None))
            except WorkflowError as exc:
                log.warning("migration of %s skipped: %s", number, exc)
                out.append((number, str(exc)))
        return out

    # ------------------------------------------------------------------ timers

    def run_due_timers(self, limit: int = 100) -> list[str]:
        """Fire every pending timer that is due, each in its own transaction, as the system
        user. A timer whose transition is refused is marked failed with the reason (it never
        retries silently forever). Returns one line per timer handled."""
        with self.reader() as session:
            ids = session.execute(
                select(Timer.id).where(Timer.status == TimerStatus.PENDING,
                                       Timer.fire_at <= clock.now())
                .order_by(Timer.fire_at).limit(limit)
            ).scalars().all()
        out = []
        for timer_id in ids:
            try:
                out.append(self._fire_timer(timer_id))
            except WorkflowError as exc:
                with self.unit() as session:
                    t = session.get(Timer, timer_id)
                    if t is not None and t.status == TimerStatus.PENDING:
                        t.status = TimerStatus.FAILED
                        t.last_error = str(exc)
                log.warning("timer %s failed: %s", timer_id, exc)
                out.append(f"timer {timer_id}: failed: {exc}")
        return out

    def _fire_timer(self, timer_id: int) -> str:
        with self.unit() as session:
            ctx = _Ctx(session, clock.now())
            t = session.get(Timer, timer_id)
            if t is None or t.status != TimerStatus.PENDING:
                return f"timer {timer_id}: already handled"
            rec = self._lock(session, t.record_id)
            if rec.state_visit != t.state_visit:
                t.status = TimerStatus.CANCELLED
                return f"timer {timer_id}: record moved on"
            system = identity.system_user(session)
            t.status = TimerStatus.FIRED
            self._fire(ctx, rec, t.transition, system, {}, None,
                       f"timer: {t.transition} due at {t.fire_at:%Y-%m-%d %H:%M} UTC",
                       system_actor=True)
            return f"{rec.number}: {t.transition} -> {rec.state}"

    # ------------------------------------------------------------------ internals

    def _get(self, session: Session, ref: int | str) -> Record:
        if isinstance(ref, int):
            rec = session.get(Record, ref)
        else:
            rec = session.execute(_RECORD_BY_NUMBER,
                                  {"ref": str(ref).strip().upper()}).scalar_one_or_none()
        if rec is None:
            raise RecordNotFound(ref)
        return rec

    def _lock(self, session: Session, ref: int | str) -> Record:
        """Load the record for change. PostgreSQL: SELECT ... FOR UPDATE. SQLite: the
        unit already holds the database write lock (BEGIN IMMEDIATE).

        The record comes back detached from the session: change its attributes freely, the
        unit writes what changed at flush/commit (see ``_write_back``)."""
        by_id = isinstance(ref, int)
        if is_sqlite(session):
            stmt = _RECORD_BY_ID if by_id else _RECORD_BY_NUMBER
        else:
            stmt = _LOCK_BY_ID if by_id else _LOCK_BY_NUMBER
        key = ref if by_id else str(ref).strip().upper()
        rec = session.execute(stmt, {"ref": key}).scalar_one_or_none()
        if rec is None:
            raise RecordNotFound(ref)
        session.expunge(rec)
        _track(session, rec)
        return rec

    def _result(self, rec: Record, ctx: _Ctx, *, moved: bool = True, needed: int = 0,
                signature_id: int | None = None) -> Result:
        ctx.session.flush()
        return Result(record_id=rec.id, number=rec.number, workflow=rec.workflow_key,
                      state=rec.state, version=rec.version, moved=moved,
                      signatures_needed=needed, signature_id=signature_id,
                      created=tuple(ctx.created))

    def _next_number(self, session: Session, prefix: str, year: int) -> str:
        """Gap-free per prefix and year: the counter row is bumped in this transaction, so
        concurrent creators queue on its lock and a rollback returns the number."""
        key = {"p": prefix, "y": year}
        session.execute(_COUNTER_ROW[session.get_bind().dialect.name], key)
        value = session.execute(_BUMP_COUNTER, key).scalar_one()
        return f"{prefix}-{year}-{value:04d}"

    def _create(self, ctx: _Ctx, compiled: Compiled, user: User, data: dict[str, Any], *,
                reason: str | None = None, parent: Record | None = None,
                link: str = "spawned_by") -> Record:
        session = ctx.session
        d = compiled.definition
        clean = self._clean(session, d, {}, data, allowed=d.start_edits, what="starting")
        for f in d.fields.values():
            if f.name not in clean and f.default is not None:
                clean[f.name] = coerce(f, f.default)
        missing = [f for f in d.start_requires if is_empty(clean.get(f))]
        if missing:
            raise ValidationFailed({f: "is required" for f in missing})
        if d.start_guards:
            names: dict[str, Any] = {f: clean.get(f) for f in d.fields}
            names.update(now=ctx.now.isoformat(), today=ctx.now.date().isoformat(),
                         number=None, actor=user.username, initiator=user.username,
                         item=None, user=None)
            for g in d.start_guards:
                try:
                    ok = expressions.evaluate(g.when, names)
                except expressions.ExpressionError as exc:
                    raise GuardFailed("start", f"{g.message} (the check could not be "
                                               f"evaluated: {exc})") from None
                if not ok:
                    raise GuardFailed("start", g.message)
        now = ctx.now
        initial = d.initial_state
        row = dict(
            number=self._next_number(session, d.prefix, now.year),
            workflow_key=d.key,
            definition_id=compiled.id,
            definition_hash=d.content_hash,
            title=str(clean.get("title", ""))[:300],
            state=initial,
            state_visit=1,
            data=clean,
            version=1,
            created_by_id=user.id,
            created_at=now,
            updated_at=now,
            closed_at=None,
            outcome=None,
            due_original=now + d.due_in if d.due_in else None,
            due_current=now + d.due_in if d.due_in else None,
            audit_seq=0,
            audit_head="",
            seal="",  # sealed when written back at the end of the unit
        )
        # inserted with Core and kept out of the session; later changes (audit head, state...)
        # are written back at commit like a locked record's
        rec = Record(id=session.execute(_INSERT_RECORD, row).inserted_primary_key[0], **row)
        _track(session, rec)
        ctx.created.append(rec.number)
        changes: dict[str, Any] = {k: [None, v] for k, v in clean.items()}
        audit.record_event(session, rec, at=now, actor=user, action="create",
                           changes=changes, to_state=initial, reason=reason)
        if parent is not None:
            self._link(ctx, rec, parent, link, user)
        self._link_references(ctx, d, rec, {}, clean, user)
        self._enter_state(ctx, compiled, rec, user)
        return rec

    def _clean(self, session: Session, d: WorkflowDefinition, current: dict[str, Any],
               data: Mapping[str, Any], *, allowed: tuple[str, ...], what: str,
               own_number: str | None = None) -> dict[str, Any]:
        """Validate ``data`` against the fields ``allowed`` to change; return the new data."""
        errors: dict[str, str] = {}
        new = dict(current)
        for name, value in data.items():
            spec = d.fields.get(name)
            if spec is None:
                errors[name] = f"is not a field of {d.title}"
                continue
            if name not in allowed:
                errors[name] = f"cannot be changed when {what}"
                continue
            try:
                v = coerce(spec, value)
            except FieldValueError as exc:
                errors[name] = str(exc)
                continue
            if v is None:
                new.pop(name, None)
            else:
                new[name] = v
        if errors:
            raise ValidationFailed(errors)
        self._check_existence(session, d, {k: new[k] for k in data if k in new}, errors,
                              own_number=own_number)
        if errors:
            raise ValidationFailed(errors)
        return new

    def _check_existence(self, session: Session, d: WorkflowDefinition,
                         values: Mapping[str, Any], errors: dict[str, str],
                         own_number: str | None = None) -> None:
        for name, value in values.items():
            spec = d.fields[name]
            names = users_in(spec, value)
            if names:
                found = {n for (n,) in session.execute(_ACTIVE_USERNAMES, {"names": list(names)})}
                bad = [n for n in names if n not in found]
                if bad:
                    errors[name] = f"no active user {', '.join(sorted(set(bad)))}"
            refs = references_in(spec, value)
            if refs:
                numbers = [n for _, n in refs]
                if own_number in numbers:
                    errors[name] = f"{own_number} cannot refer to itself"
                    continue
                found_refs = {num: wf for num, wf in session.execute(
                    _RECORD_WORKFLOWS, {"numbers": numbers})}
                bad = [n for wf, n in refs if found_refs.get(n) != wf]
                if bad:
                    wf = spec.workflow or (spec.item.workflow if spec.item else None) or "such"
                    errors[name] = f"no {wf} record {', '.join(sorted(set(bad)))}"

    def _link(self, ctx: _Ctx, source: Record, target: Record, kind: str, user: User) -> None:
        ctx.session.add(RecordLink(source_id=source.id, target_id=target.id, kind=kind,
                                   created_at=ctx.now, created_by_id=user.id))

    def _link_references(self, ctx: _Ctx, d: WorkflowDefinition, rec: Record,
                         old: Mapping[str, Any], new: Mapping[str, Any], user: User) -> None:
        for spec in d.fields.values():
            if not spec.link and not (spec.item and spec.item.link):
                continue
            kind = spec.link or (spec.item.link if spec.item else None)
            before = {n for _, n in references_in(spec, old.get(spec.name))}
            after = [n for _, n in references_in(spec, new.get(spec.name))]
            for number in dict.fromkeys(after):
                if number in before or number == rec.number:
                    continue
                target = ctx.session.execute(
                    select(Record).where(Record.number == number)).scalar_one()
                exists = ctx.session.execute(
                    select(RecordLink.id).where(RecordLink.source_id == rec.id,
                                                RecordLink.target_id == target.id,
                                                RecordLink.kind == kind)).first()
                if not exists:
                    self._link(ctx, rec, target, kind or "related", user)

    def _authorise(self, session: Session, d: WorkflowDefinition, rec: Record,
                   t: TransitionSpec, user: User, roles: set[str]) -> None:
        if not user.active:
            raise NotAuthorized(f"{user.username} is deactivated.")
        allowed = roles & set(t.roles)
        if not allowed and "initiator" in t.roles and user.id == rec.created_by_id:
            allowed = {"initiator"}
        if not allowed and "assignee" in t.roles and self._is_assignee(session, rec, user):
            allowed = {"assignee"}
        if not allowed and not user.is_system:
            names = ", ".join(_role_label(d, r) for r in t.roles)
            raise NotAuthorized(
                f"{t.label} on {rec.number} needs one of these roles: {names}.",
                required_roles=t.roles)
        self._separation(session, rec, t, user)

    def _training_gate(self, session: Session, d: WorkflowDefinition, rec: Record,
                       t: TransitionSpec, user: User) -> None:
        """Part 11 §11.10(i): refuse, naming the training, when the actor has no completed
        training_assignment for a document (version) the step or the state requires."""
        required = t.training + d.states[rec.state].training
        if not required:
            return
        data = Record.data
        missing = []
        for req in required:
            q = select(Record.id).where(
                Record.workflow_key == "training_assignment", Record.outcome == "done",
                data["trainee"].as_string() == user.username,
                data["document"].as_string() == req.document)
            if req.version:
                q = q.where(data["document_version"].as_string() == req.version)
            if session.execute(q.limit(1)).first() is None:
                missing.append(str(req))
        if missing:
            raise TrainingRequired(user.username, missing)

    def _is_assignee(self, session: Session, rec: Record, user: User) -> bool:
        return session.execute(_HAS_OPEN_TASK, {"rid": rec.id, "uid": user.id}).first() is not None

    def _separation(self, session: Session, rec: Record, t: TransitionSpec, user: User) -> None:
        sep = t.separation
        if sep.not_initiator and user.id == rec.created_by_id:
            raise SegregationOfDuties(
                f"{t.label}: the person who initiated {rec.number} may not also do this step.",
                rule="not_initiator")
        if sep.not_actor_of:
            did = session.execute(_DID_STEP, {"rid": rec.id, "uid": user.id,
                                              "transitions": list(sep.not_actor_of)}
                                  ).scalar_one_or_none()
            if did:
                raise SegregationOfDuties(
                    f"{t.label}: you performed {did!r} on {rec.number}, so someone else must "
                    "do this step.", rule=f"not_actor_of:{did}")

    def _fire(self, ctx: _Ctx, rec: Record, name: str, user: User, data: dict[str, Any],
              signature: Any, reason: str | None, *, system_actor: bool = False
              ) -> tuple[bool, int, int | None]:
        """Returns (moved, signatures still needed, signature id)."""
        session = ctx.session
        compiled = self.registry.by_hash(session, rec.definition_hash)
        d = compiled.definition
        t = d.transitions.get(name)
        dest = compiled.dest(name, rec.state) if t is not None else None
        if t is None:
            known = ", ".join(sorted(d.transitions))
            raise TransitionNotAvailable(
                rec.number, name, rec.state, [],
                message=f"{d.title} has no step called {name!r} (its steps: {known}).")
        if dest is None:
            roles = ctx.roles(user)
            avail = []
            for x in d.transitions_from(rec.state):
                try:
                    self._authorise(session, d, rec, x, user, roles)
                    avail.append(x.name)
                except NotAuthorized:
                    pass
            raise TransitionNotAvailable(rec.number, name, rec.state, avail)
        if not system_actor:
            roles = ctx.roles(user)
            self._authorise(session, d, rec, t, user, roles)
            self._training_gate(session, d, rec, t, user)
        else:
            roles = set()
        old_data = rec.data
        new_data = self._clean(session, d, old_data, data, allowed=t.edits,
                               what=f"doing {t.label!r}", own_number=rec.number)
        missing = [f for f in t.requires if is_empty(new_data.get(f))]
        if missing:
            raise ValidationFailed({f: f"is required to {t.label.lower()}" for f in missing})
        if t.reason_required and not (reason or "").strip():
            raise ReasonRequired(f"{t.label.lower()} {rec.number}")
        self._guards(ctx, d, rec, t, new_data, user)

        changes = {k: [old_data.get(k), new_data.get(k)] for k in
                   sorted(set(old_data) | set(new_data)) if old_data.get(k) != new_data.get(k)}
        rec.version += 1
        rec.updated_at = ctx.now
        if changes:
            rec.data = new_data
            if "title" in changes:
                rec.title = str(new_data.get("title") or "")[:300]
            audit.record_event(session, rec, at=ctx.now, actor=user, action="update",
                               changes=changes, transition=name, reason=reason)
            self._link_references(ctx, d, rec, old_data, new_data, user)

        sig_id = None
        if t.signature is not None:
            if signature is None:
                raise SignatureRequired(name, t.signature.meaning)
            # the signer must be the actor, whose separation of duties _authorise checked
            # above (the system actor skips that, so its signature is checked here)
            sig_id, have = self._sign(ctx, rec, user, signature, transition=name,
                                      meaning=t.signature.meaning, roles=t.signature.roles,
                                      data=new_data, quorum=t.signature,
                                      separation=t if system_actor else None)
            if have < t.signature.quorum:
                # the record stays put until the quorum is met
                return False, t.signature.quorum - have, sig_id
        src = rec.state
        self._leave_state(ctx, compiled, rec, user, name)
        rec.state = dest
        rec.state_visit += 1
        audit.record_event(session, rec, at=ctx.now, actor=user, action="transition",
                           transition=name, from_state=src, to_state=dest, reason=reason,
                           changes={"signature_id": sig_id} if sig_id else None)
        self._enter_state(ctx, compiled, rec, user)
        return True, 0, sig_id

    def _guards(self, ctx: _Ctx, d: WorkflowDefinition, rec: Record, t: TransitionSpec,
                data: Mapping[str, Any], user: User) -> None:
        if not t.guards:
            return
        names = self._names(ctx, d, rec, data, user)
        for g in t.guards:
            try:
                ok = expressions.evaluate(g.when, names)
            except expressions.ExpressionError as exc:
                # fail closed: a guard that cannot be evaluated blocks the transition
                raise GuardFailed(t.name, f"{g.message} (the check could not be evaluated: "
                                          f"{exc})") from None
            if not ok:
                raise GuardFailed(t.name, g.message)

    def _names(self, ctx: _Ctx, d: WorkflowDefinition, rec: Record, data: Mapping[str, Any],
               user: User | None, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        names: dict[str, Any] = {f: data.get(f) for f in d.fields}
        names.update(now=ctx.now.isoformat(), today=ctx.now.date().isoformat(), number=rec.number,
                     actor=user.username if user else None, item=None, user=None)
        names["initiator"] = None
        if rec.created_by_id is not None:
            names["initiator"] = ctx.session.execute(
                _USERNAME, {"user_id": rec.created_by_id}).scalar_one()
        if extra:
            names.update(extra)
        return names

    def _sign(self, ctx: _Ctx, rec: Record, user: User, signature: Any, *, transition: str,
              meaning: str, roles: tuple[str, ...], data: Mapping[str, Any],
              quorum: Any = None, separation: TransitionSpec | None = None) -> tuple[int, int]:
        """Verify, check and store a signature; returns (its id, how many signatures this
        step has now, counting it)."""
        session = ctx.session
        signer = self.verifier.verify(session, signature, user)
        if signer.user.id != user.id:
            raise SignatureRejected(
                "The signer must be the person performing the action; signing on behalf of "
                "someone else is not possible.")
        held = ctx.roles(signer.user)
        eligible = [r for r in roles if r in held]
        if not eligible:
            raise NotAuthorized(
                f"Signing {meaning!r} needs one of these roles: {', '.join(roles)}.",
                required_roles=roles)
        if separation is not None:
            self._separation(session, rec, separation, signer.user)
        earlier = session.execute(_EARLIER_SIGNATURES, {
            "rid": rec.id, "transition": transition, "visit": rec.state_visit}).all()
        if any(s == signer.user.id for s, _ in earlier):
            raise SegregationOfDuties(
                f"You have already signed {transition!r} on {rec.number}; another person "
                "must give the next signature.", rule="distinct_signers")
        role = eligible[0]
        have = len(earlier) + 1
        if quorum is not None and quorum.one_per_role:
            role, have, covered = self._roles_to_fill(transition, rec.number, roles, eligible,
                                                      [r for _, r in earlier])
            if have < quorum.quorum:
                # that role's part is done: its task leaves the inboxes, the others' stay
                session.execute(_CLOSE_ROLE_TASK, {
                    "rid": rec.id, "b_role": covered, "now": ctx.now, "uid": signer.user.id,
                    "transition": transition})
        content_hash = canonical.sha256(canonical.record_content(
            rec.number, rec.workflow_key, rec.definition_hash, dict(data)))
        row = dict(record_id=rec.id, record_version=rec.version, state_visit=rec.state_visit,
                   transition=transition, meaning=meaning, signer_id=signer.user.id,
                   signer_name=signer.user.full_name, signer_username=signer.user.username,
                   signer_role=role, method=signer.method, signed_at=ctx.now,
                   content_hash=content_hash)
        # the MAC covers no row id, so it is computed before the (append-only) insert; the
        # row goes in as one Core INSERT rather than through an ORM flush (which would also
        # write the record row early, and again at commit)
        row["mac"] = compute_mac(self.signing_key, Signature(**row), rec.number)
        sig_id = session.execute(_INSERT_SIGNATURE, row).inserted_primary_key[0]
        audit.record_event(session, rec, at=ctx.now, actor=signer.user, action="sign",
                           transition=transition,
                           changes={"signature": {"id": sig_id, "meaning": meaning,
                                                  "role": role,
                                                  "method": signer.method,
                                                  "content_hash": content_hash}})
        # the record row lock serialises signers, so the count read above is still current
        return sig_id, have

    @staticmethod
    def _roles_to_fill(transition: str, number: str, roles: tuple[str, ...],
                       eligible: list[str], earlier: list[str]) -> tuple[str, int, str]:
        """One signer per role (e.g. QA *and* process owner). Each signature records every
        required role its signer held (``qa+process_owner``); the step is complete when the
        signers can be matched to distinct roles, so someone holding both roles never blocks
        a valid pair. A signer who cannot enlarge the matching is refused. Returns (the role
        text to record, the matching's size with this signer, the role they cover)."""
        sets = [r.split("+") for r in earlier]
        before = _matching(sets)
        after = _matching([*sets, eligible])
        if len(after) <= len(before):
            needed = [r for r in roles if r not in before.values()]
            raise SegregationOfDuties(
                f"The signatures already given on {number} cover the roles you hold; "
                f"{transition!r} still needs a signature as {' or '.join(needed)}, by "
                "another person.", rule="one_per_role")
        return "+".join(eligible), len(after), after[len(sets)]

    # ------------------------------------------------------------------ states, tasks, actions

    def _leave_state(self, ctx: _Ctx, compiled: Compiled, rec: Record, user: User,
                     transition: str) -> None:
        session = ctx.session
        session.execute(_CLOSE_TASKS, {"rid": rec.id, "now": ctx.now, "uid": user.id,
                                       "transition": transition})
        state = compiled.definition.states[rec.state]
        if any(a.kind == "start_timer" for a in state.on_enter):
            session.execute(_CANCEL_TIMERS, {"rid": rec.id})

    def _enter_state(self, ctx: _Ctx, compiled: Compiled, rec: Record, user: User) -> None:
        d = compiled.definition
        state = d.states[rec.state]
        if state.final:
            rec.closed_at = ctx.now
            rec.outcome = state.outcome
        for action in state.on_enter:
            self._act(ctx, compiled, rec, user, action)
        if not (state.owners or state.assignee_field):
            return
        due = self._task_due(ctx, rec, state)
        assignee_id = None
        if state.assignee_field and rec.data.get(state.assignee_field):
            assignee_id = ctx.session.execute(
                _USER_ID, {"username": rec.data[state.assignee_field]}).scalar_one_or_none()
        rows = []
        for owner in state.owners or (None,):
            if owner == "initiator":
                rows.append((None, rec.created_by_id))
            else:
                rows.append((owner, assignee_id))
        ctx.session.execute(_INSERT_TASKS, [
            {"record_id": rec.id, "state": rec.state, "state_visit": rec.state_visit,
             "role": role, "assignee_id": who, "status": TaskStatus.OPEN,
             "opened_at": ctx.now, "due_at": due} for role, who in rows])

    def _task_due(self, ctx: _Ctx, rec: Record, state: Any) -> datetime | None:
        if state.due_in:
            return ctx.now + state.due_in
        if state.due_field and rec.data.get(state.due_field):
            return _end_of(rec.data[state.due_field])
        return rec.due_current

    def _act(self, ctx: _Ctx, compiled: Compiled, rec: Record, user: User, action: Action) -> None:
        d = compiled.definition
        p = action.params
        session = ctx.session
        if action.kind == "create_record":
            names = self._names(ctx, d, rec, rec.data, user)
            if "when" in p and not self._eval(p["when"], names, action):
                return
            items = [None]
            if "for_each" in p:
                items = list(self._eval(p["for_each"], names, action) or [])
            if ctx.depth > 5:
                raise WorkflowError("create_record actions nest too deep (more than 5 levels)")
            child = self.registry.latest(session, p["workflow"])
            # the system initiates linked records, so that whoever's step caused them is not
            # barred from them by "not the initiator" rules; the audit reason names them
            creator = identity.system_user(session)
            why = f"created by {rec.number} on entering {rec.state} (step by {user.full_name})"
            ctx.depth += 1
            try:
                for item in items:
                    values = {k: self._eval(expr, {**names, "item": item}, action)
                              for k, expr in p.get("copy", {}).items()}
                    try:
                        self._create(ctx, child, creator, values, parent=rec,
                                     link=p.get("link", "spawned_by"), reason=why)
                    except ValidationFailed as exc:
                        raise WorkflowError(
                            f"{rec.number} could not create its linked {child.definition.title}: "
                            f"{exc.message}") from exc
            finally:
                ctx.depth -= 1
        elif action.kind == "set_due":
            days = None
            if p.get("after_days_field"):
                days = rec.data.get(p["after_days_field"])
            delta = timedelta(days=int(days)) if days else parse_duration(p["after"])
            value = (ctx.now + delta).date().isoformat()
            old = rec.data.get(p["field"])
            if old != value:
                rec.data = {**rec.data, p["field"]: value}
                audit.record_event(session, rec, at=ctx.now, actor=user, action="update",
                                   changes={p["field"]: [old, value]},
                                   reason=f"set on entering {rec.state}")
        elif action.kind == "start_timer":
            if p.get("after_field"):
                raw = rec.data.get(p["after_field"])
                if not raw:
                    return
                fire_at = _end_of(raw)
            else:
                fire_at = ctx.now + parse_duration(p["after"])
            session.execute(_INSERT_TIMER, {
                "record_id": rec.id, "state_visit": rec.state_visit,
                "transition": p["transition"], "fire_at": fire_at,
                "status": TimerStatus.PENDING})
        elif action.kind == "notify":
            names = self._names(ctx, d, rec, rec.data, user)
            if "when" in p and not self._eval(p["when"], names, action):
                return
            recipient_user = None
            if p.get("field") and rec.data.get(p["field"]):
                recipient_user = session.execute(
                    _USER_ID, {"username": rec.data[p["field"]]}).scalar_one_or_none()
            role = p.get("role") if p.get("role") not in ("initiator", "assignee") else None
            if p.get("role") == "initiator":
                recipient_user = rec.created_by_id
            session.execute(_INSERT_OUTBOX, {
                "created_at": ctx.now, "record_id": rec.id, "recipient_role": role,
                "recipient_user_id": recipient_user, "subject": f"{rec.number}: {p['subject']}",
                "body": f"{rec.number} ({rec.title}) is now {rec.state}.",
                "status": "pending", "attempts": 0,
                # the message kind picks its template (notifications/templates/KIND.txt)
                "kind": p.get("kind") or "generic"})
        elif action.kind == "revoke_grants":
            # only grants of this system are revoked here; an access review of another
            # system lists revocations that its administrator executes there and confirms
            system_field = p.get("system_field")
            if system_field and str(rec.data.get(system_field, "")).strip().lower() \
                    != self.system_name.lower():
                return
            items = rec.data.get(p["items"]) or []
            for item in items:
                if item.get("decision") != "revoke":
                    continue
                target = identity.find_user(session, item.get("user", ""))
                if target is None:
                    continue
                identity.revoke_role(session, target, item.get("role", ""), actor=user,
                                     reason=f"access review {rec.number}")
        elif action.kind == "publish_draft":
            # change-controlled publishing (workflow/drafts.py): the draft whose id and
            # content hash this record holds becomes the next version, in this transaction;
            # refused (and the step rolled back) when the draft changed since submission
            from workflow.change_control import publishing

            publishing.publish_from_record(session, self.registry, rec, user, p, at=ctx.now)
        else:  # pragma: no cover - the schema admits no other kind
            raise WorkflowError(f"unknown action {action.kind!r}")

    def _eval(self, text: str, names: Mapping[str, Any], action: Action) -> Any:
        try:
            return expressions.evaluate(text, names)
        except expressions.ExpressionError as exc:
            raise WorkflowError(f"{action.kind} action could not evaluate {text!r}: {exc}") from None


def _matching(sets: list[list[str]]) -> dict[int, str]:
    """Maximum matching of signers (by index) to distinct roles (augmenting paths; the sets
    are tiny)."""
    owner: dict[str, int] = {}

    def place(i: int, seen: set[str]) -> bool:
        for r in sets[i]:
            if r in seen:
                continue
            seen.add(r)
            if r not in owner or place(owner[r], seen):
                owner[r] = i
                return True
        return False

    for i in range(len(sets)):
        place(i, set())
    return {i: r for r, i in owner.items()}


def _role_label(d: WorkflowDefinition, role: str) -> str:
    return {"initiator": "the record's initiator",
            "assignee": "the person the task is assigned to"}.get(role, d.roles.get(role, role))


def _end_of(value: str) -> datetime:
    """A date field's deadline is the end of that day (UTC); a datetime is itself."""
    if "T" in value:
        return datetime.fromisoformat(value).astimezone(UTC)
    return datetime.combine(date.fromisoformat(value) + timedelta(days=1), time(0), tzinfo=UTC)
