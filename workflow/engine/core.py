"""The engine facade: the one transactional path every change takes.

``Engine.start``, ``Engine.fire``, the due-date extension calls and ``Engine.run_due_timers``
each run in ONE database transaction (a write unit of workflow/db/uow.py): lock the record,
authorise, validate, check the signature gate, move the state, open and close tasks, run the
on-enter actions, append audit events, commit. Any exception rolls everything back; nothing
is half-done. The web UI, the API, the CLI and the scheduler all call these same methods.

The work itself lives in the modules beside this one: ``lifecycle`` (create, fire),
``access`` (visibility, roles, separation of duties, training gate), ``inputs`` (fields,
references, guards), ``signing`` (the Part 11 signature gate), ``states`` (tasks, timers,
on-enter actions), ``actions`` (the built-in action kinds), ``extensions``, ``timers``.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from workflow import clock, config, rules
from workflow.audit import trail as audit
from workflow.db import records, seals
from workflow.db.models import DueDateExtension, ExtensionStatus, Record, User
from workflow.db.uow import UnitOfWork
from workflow.engine import access, actions, extensions, gates, lifecycle, timers
from workflow.engine.context import ActionKind, Ctx, RoleHook, as_actor, result_of
from workflow.engine.context import Result as Result  # re-exported: callers import it from here
from workflow.errors import (
    AccountLocked,
    CredentialsRejected,
    NotAuthorized,
    RecordNotFound,
    StaleRecord,
    WorkflowError,
)
from workflow.identity import users as identity
from workflow.keyring import Key, KeyRing, as_ring
from workflow.registry import Registry
from workflow.signatures.mac import CredentialVerifier, VouchingVerifier
from workflow.spec.model import TransitionSpec, WorkflowDefinition

log = logging.getLogger(__name__)


def unit_of_work(sessions: sessionmaker[Session], signing_key: Key) -> UnitOfWork:
    """The engine's unit of work: queued audit events are inserted first, then the changed
    record rows are written back (sealed over their final audit head), then the changed rows
    of the security tables (users, grants, tokens, chain heads) are sealed; rows inserted
    with a database-assigned id are sealed right after their flush."""
    return UnitOfWork(sessions, signing_key,
                      before_write=(audit.flush_pending, records.write_back, seals.seal_changed),
                      on_rollback=(audit.discard_pending, records.discard),
                      after_flush=(seals.seal_inserted,))


class Engine:
    """Runs workflow definitions against the database.

    Args:
        sessions: a sessionmaker (wrapped in the engine's unit of work) or a UnitOfWork
            built by :func:`unit_of_work`; each entry point opens its own unit.
        signing_key: server key for signature MACs, audit hashes and seals (kept outside
            the database).
        verifier: checks signature credentials; defaults to :class:`VouchingVerifier`.
        registry: compiled definition cache; share one per process.
        system_name: how this QMS is named in access reviews (QMS_SYSTEM_NAME).
        actions: extra on-enter action kinds (e.g. ``publish_draft``), by name.
        role_hooks: run inside the unit that grants or revokes a role (the training matrix).
    """

    def __init__(
        self,
        sessions: sessionmaker[Session] | UnitOfWork,
        signing_key: Key,
        verifier: CredentialVerifier | None = None,
        registry: Registry | None = None,
        system_name: str | None = None,
        actions: Mapping[str, ActionKind] | None = None,
        role_hooks: Sequence[RoleHook] = (),
    ) -> None:
        self.uow = sessions if isinstance(sessions, UnitOfWork) \
            else unit_of_work(sessions, signing_key)
        #: how this QMS is named in access reviews (QMS_SYSTEM_NAME); its own grants are
        #: revoked by revoke_grants actions of reviews of this system
        self.system_name = system_name or config.settings().system_name
        #: the server keys by id (workflow/keyring.py): the current one signs, all verify
        self.signing_key: KeyRing = as_ring(signing_key)
        self.verifier: CredentialVerifier = verifier or VouchingVerifier()
        self.registry = registry or Registry()
        self.actions: dict[str, ActionKind] = {**actions_builtin(), **(actions or {})}
        #: run in the same unit when a role is granted or revoked (e.g. the training matrix)
        self.role_hooks: tuple[RoleHook, ...] = tuple(role_hooks)

    # ------------------------------------------------------------------ units of work

    @property
    def sessions(self) -> sessionmaker[Session]:
        """The unit of work's sessionmaker (for a caller that needs the bind)."""
        return self.uow.sessions

    @contextmanager
    def unit(self) -> Iterator[Session]:
        """One write transaction: commit on success, roll back on any exception."""
        with self.uow.write() as session:
            if self.role_hooks:
                session.info[identity.ROLE_CHANGED] = functools.partial(self._role_changed,
                                                                        session)
            yield session

    def _role_changed(self, session: Session, change: identity.RoleChange) -> None:
        ctx = self.context(session)
        for hook in self.role_hooks:
            hook(ctx, change)

    @contextmanager
    def reader(self) -> Iterator[Session]:
        """A read-only session (never commits)."""
        with self.uow.read() as session:
            yield session

    def context(self, session: Session) -> Ctx:
        """The per-unit context for work done inside ``session`` (a write unit)."""
        return Ctx(session, clock.now(), self.registry, self.verifier, self.signing_key,
                   self.system_name, self.actions, spawn=lifecycle.create)

    # ------------------------------------------------------------------ entry points

    def start(self, workflow: str, actor: str | User, data: Mapping[str, Any] | None = None,
              *, reason: str | None = None) -> Result:
        """Create a record of ``workflow`` (newest published version) in its initial state.

        Raises:
            UnknownWorkflow, NotAuthorized, ValidationFailed, InactiveUser, UnknownUser.
        """
        return self.uow.retrying(lambda: self._start(workflow, actor, data, reason))

    def _start(self, workflow: str, actor: str | User, data: Mapping[str, Any] | None,
               reason: str | None) -> Result:
        with self.unit() as session:
            ctx = self.context(session)
            user = ctx.actor(actor)
            compiled = self.registry.latest(session, workflow)
            d = compiled.definition
            if not ctx.roles(user) & set(d.start_roles):
                raise NotAuthorized(
                    f"Starting a {d.title} needs one of the roles: {', '.join(d.start_roles)}.",
                    required_roles=d.start_roles,
                )
            record = lifecycle.create(ctx, compiled, user, dict(data or {}), reason=reason)
            return result_of(record, ctx)

    def start_in(self, session: Session, workflow: str, actor: User, data: Mapping[str, Any],
                 *, reason: str | None = None) -> Record:
        """Create a record inside the caller's unit, for changes that must commit together
        with the record (a job's claim row, a draft's submission). The caller has checked
        the actor may start it. The returned record is tracked by the unit: audit events
        appended to it are written with it at commit."""
        ctx = self.context(session)
        compiled = self.registry.latest(session, workflow)
        rec = lifecycle.create(ctx, compiled, actor, dict(data), reason=reason)
        session.flush()
        return rec

    def start_as_system(self, session: Session, workflow: str, data: Mapping[str, Any], *,
                        reason: str) -> Record:
        """``start_in`` as the system user: scheduled jobs (the reason names the job; start
        roles do not apply to the system acting on a schedule)."""
        return self.start_in(session, workflow, identity.system_user(session), data,
                             reason=reason)

    def fire(self, record: int | str, transition: str, actor: str | User,
             data: Mapping[str, Any] | None = None, *, signature: Any = None,
             reason: str | None = None, expected_version: int | None = None) -> Result:
        """Fire ``transition`` on ``record`` (id or number) as ``actor``.

        With a quorum signature gate the record stays in place until enough signatures are
        collected; ``Result.moved`` tells which happened.

        Raises:
            RecordNotFound, StaleRecord, TransitionNotAvailable, NotAuthorized,
            SegregationOfDuties, ValidationFailed, ReasonRequired, GuardFailed,
            SignatureRequired, SignatureRejected, InactiveUser.
        """
        return self.uow.retrying(lambda: self._fire(record, transition, actor, data,
                                                    signature, reason, expected_version))

    def _fire(self, record: int | str, transition: str, actor: str | User,
              data: Mapping[str, Any] | None, signature: Any, reason: str | None,
              expected_version: int | None) -> Result:
        try:
            with self.unit() as session:
                ctx = self.context(session)
                user = ctx.actor(actor)
                rec = records.lock(session, record, with_tasks=True)
                access.check_visible(ctx, rec, user, record)
                if expected_version is not None and rec.version != expected_version:
                    raise StaleRecord(rec.number, expected_version, rec.version)
                moved, needed, sig_id = lifecycle.fire(ctx, rec, transition, user,
                                                       dict(data or {}), signature, reason)
                return result_of(rec, ctx, moved=moved, needed=needed, signature_id=sig_id)
        except CredentialsRejected as exc:
            self.signature_failed(exc)
            raise

    def available_transitions(self, record: int | str, actor: str | User, *,
                              session: Session | None = None) -> list[TransitionSpec]:
        """Transitions ``actor`` may fire on ``record`` now (by state, role and separation of
        duties; guards and signatures are checked when firing). ``session``: the caller's
        read session (one per web request), else a read unit of its own."""
        with self._reading(session) as s:
            user = as_actor(s, actor)
            rec = records.get(s, record)
            d = self.registry.by_hash(s, rec.definition_hash).definition
            roles = identity.roles_of(s, user)
            if not rules.can_see(s, d, rec, user, roles):
                raise RecordNotFound(record)
            return access.available(self.context(s), d, rec, user)

    def step_options(self, record: int | str, actor: str | User, *,
                     session: Session | None = None) -> list[access.Option]:
        """The steps from ``record``'s state that are ``actor``'s (by role), each with the
        rule that would refuse it now (``Option.refused``) or None: the record page offers
        the same steps the engine accepts, and shows the others disabled with the reason."""
        with self._reading(session) as s:
            user = as_actor(s, actor)
            rec = records.get(s, record)
            d = self.registry.by_hash(s, rec.definition_hash).definition
            if not rules.can_see(s, d, rec, user, identity.roles_of(s, user)):
                raise RecordNotFound(record)
            return access.options(self.context(s), d, rec, user)

    def waiting_for(self, record: Record, transition: TransitionSpec, *,
                    session: Session | None = None) -> list[tuple[Any, Any, bool]]:
        """The linked records ``transition`` waits for (``waits_for``), each with whether it
        is closed as needed: the record page and the signing dialog show them."""
        with self._reading(session) as s:
            return gates.waiting(self.context(s), record, transition)

    def get(self, record: int | str, viewer: str | User | None = None, *,
            session: Session | None = None) -> Record:
        """The record row by id or number. With ``viewer``, a record that person may not see
        is reported as not found (R-P11-10d-2: no probing by id)."""
        with self._reading(session) as s:
            rec = records.get(s, record)
            if viewer is not None:
                user = as_actor(s, viewer)
                d = self.registry.by_hash(s, rec.definition_hash).definition
                if not rules.can_see(s, d, rec, user, identity.roles_of(s, user)):
                    raise RecordNotFound(record)
            return rec

    def definition_of(self, record: Record, *, session: Session | None = None
                      ) -> WorkflowDefinition:
        with self._reading(session) as s:
            return self.registry.by_hash(s, record.definition_hash).definition

    # ------------------------------------------------------------------ due-date extensions

    def request_extension(self, record: int | str, actor: str | User, new_due: datetime,
                          reason: str, *, expected_version: int | None = None) -> int:
        """Ask to move a record's current due date; QA decides with a signature.

        The due date itself never changes here. Returns the extension request id.
        """
        extensions.check_request(new_due, reason)
        with self.unit() as session:
            ctx = self.context(session)
            return extensions.request(ctx, record, as_actor(session, actor), new_due, reason,
                                      expected_version)

    def decide_extension(self, extension_id: int, actor: str | User, approve: bool, *,
                         signature: Any = None, reason: str | None = None) -> Result:
        """Approve (signed) or reject (with a reason) a due-date extension request.

        Both the original and the current due date stay on the record; open tasks whose
        due date followed the record's move with it.
        """
        try:
            with self.unit() as session:
                ctx = self.context(session)
                return extensions.decide(ctx, extension_id, as_actor(session, actor), approve,
                                         signature, reason)
        except CredentialsRejected as exc:
            self.signature_failed(exc)
            raise

    def extension_options(self, record: Record, actor: str | User, *,
                          session: Session | None = None
                          ) -> tuple[str | None, dict[int, str | None]]:
        """What ``actor`` may do about ``record``'s due date now: why they may not request an
        extension (None: they may), and per waiting request id why they may not decide it
        (None: they may). The record page offers exactly what these allow."""
        with self._reading(session) as s:
            ctx = self.context(s)
            user = as_actor(s, actor)
            try:
                extensions.check_may_request(ctx, record, user)
                may_request = None
            except WorkflowError as exc:
                may_request = exc.message
            decide: dict[int, str | None] = {}
            for ext in s.execute(select(DueDateExtension).where(
                    DueDateExtension.record_id == record.id,
                    DueDateExtension.status == ExtensionStatus.REQUESTED)).scalars():
                try:
                    extensions.check_may_decide(ctx, ext, record, user)
                    decide[ext.id] = None
                except WorkflowError as exc:
                    decide[ext.id] = exc.message
            return may_request, decide

    def signature_failed(self, exc: CredentialsRejected) -> None:
        """Record a failed signing in its own transaction (the refused change rolled back)
        so that it counts toward lockout and is a security event (Part 11 §11.300(d))."""
        record = getattr(self.verifier, "record_failure", None)
        if record is None:
            return
        with self.unit() as session:
            locked = record(session, exc)
            username = session.get_one(User, exc.user_id).username if exc.user_id else ""
        if locked:
            raise AccountLocked(username) from exc

    # ------------------------------------------------------------------ timers

    def run_due_timers(self, limit: int = 100) -> list[str]:
        """Fire every pending timer that is due, each in its own transaction, as the system
        user. A timer whose transition is refused is marked failed with the reason (it never
        retries silently forever). Returns one line per timer handled."""
        with self.reader() as session:
            ids = timers.due(session, limit)
        out = []
        for timer_id in ids:
            try:
                with self.unit() as session:
                    out.append(timers.fire(self.context(session), timer_id))
            except WorkflowError as exc:
                with self.unit() as session:
                    timers.mark_failed(session, timer_id, str(exc))
                log.warning("timer %s failed: %s", timer_id, exc)
                out.append(f"timer {timer_id}: failed: {exc}")
        return out

    # ------------------------------------------------------------------ internals

    @contextmanager
    def _reading(self, session: Session | None) -> Iterator[Session]:
        if session is not None:
            yield session
        else:
            with self.reader() as s:
                yield s


def actions_builtin() -> dict[str, ActionKind]:
    return dict(actions.BUILTIN)
