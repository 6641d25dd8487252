"""The unit of work: the ONLY place a database transaction begins.

Every command (a transition, a login, a grant, a job's claim) runs in one ``write()`` unit:
commit on success, roll back on any exception, nothing half-done. Reads use ``read()``
(one snapshot, never commits). Nothing else in the code base calls ``session.begin()``;
tests/unit/test_architecture.py checks it.

Rows that a unit builds up in memory and writes in bulk - the queued audit events and the
tracked record rows (see workflow/db/records.py) - are written by *write-back hooks*. They
are registered on this unit of work's own sessionmaker (not on every Session in the
process), and run in the order given: before every flush and before commit; on rollback
their queues are discarded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol, TypeVar

from sqlalchemy import Connection, event
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from workflow.db.engines import WRITE
from workflow.keyring import Key, KeyRing, as_ring

#: where a write unit puts the server key on its session, for keyed hashes
KEY = "qms_key"
#: marks a read unit's session: it must never write
READ_ONLY = "qms_read_only"
#: where a read unit puts the server key, to check seals (never to write)
CHECK_KEY = "qms_check_key"
#: where a write unit puts its attribution: appended to the reason of every audit event the
#: unit writes (the command line's "qms CLI, OS user ..."; workflow/audit/trail.py)
ATTRIBUTION = "qms_attribution"
#: the unit's connection (:func:`connection`)
_CONNECTION = "qms_connection"

Hook = Callable[[Session], None]
T = TypeVar("T")
#: set on a database error raised while the unit committed (its outcome is unknown)
AT_COMMIT = "qms_at_commit"
log = logging.getLogger(__name__)


def session_key(session: Session) -> KeyRing:
    """The server keys of the write unit ``session`` belongs to (the current one writes)."""
    key = session.info.get(KEY)
    if not key:
        # fail closed: an audit event or a seal must never be written unkeyed
        raise RuntimeError("audit events are written only inside a write unit (UnitOfWork.write)")
    return as_ring(key)


def connection(session: Session) -> Connection:
    """The unit's connection, for the Core statements of the engine's hot path: executing a
    statement on it skips the ORM session's own work per statement (resolving the bind,
    the ORM execute events: ~20 % of a small statement's cost, issue 18). The session holds
    this one connection for the whole unit (its transaction), so statements run on it and
    through the session see and write the same transaction."""
    conn: Connection | None = session.info.get(_CONNECTION)
    if conn is None or conn.closed:
        # (closed: the session's transaction ended, e.g. rolled back; the session would
        # begin a new one for its next statement, and so does this)
        conn = session.info[_CONNECTION] = session.connection()
    return conn


def attributed(session: Session, reason: str | None) -> str | None:
    """``reason`` with the unit's attribution appended (``reason [attribution]``), or as it
    is when the unit has none."""
    extra = session.info.get(ATTRIBUTION)
    if not extra:
        return reason
    return f"{reason} [{extra}]" if reason else f"[{extra}]"


def check_key(session: Session) -> KeyRing:
    """The server keys to check seals with, in a write or a read unit's session."""
    key = session.info.get(KEY) or session.info.get(CHECK_KEY)
    if not key:
        # fail closed: no seal is trusted unchecked
        raise RuntimeError("seals are checked only in a unit of work's session "
                           "(UnitOfWork.write or read)")
    return as_ring(key)


class Units(Protocol):
    """What a command below the engine needs of it (the Engine provides it): write and read
    units and the server key. Typing commands with this instead of the Engine keeps the
    layers pointing one way (identity never imports the engine)."""

    @property
    def signing_key(self) -> KeyRing: ...

    def unit(self) -> AbstractContextManager[Session]: ...

    def reader(self) -> AbstractContextManager[Session]: ...


class UnitOfWork:
    """Opens read and write units on its own sessionmaker.

    Args:
        sessions: a sessionmaker whose configuration (bind, join mode...) is copied; the
            hooks are registered on the copy only.
        key: the server keys (kept outside the database) for audit hashes and record seals:
            a :class:`~workflow.keyring.KeyRing` (the current key writes, every key checks)
            or one raw key (the legacy key ``k1``).
        before_write: hooks run, in this order, before every flush and before commit.
        on_rollback: hooks run after a rollback (they forget what was queued).
        after_flush: hooks run after each flush, before its objects leave ``session.new``
            (the seals of rows that got their id from the database).
    """

    def __init__(self, sessions: sessionmaker[Session], key: Key, *,
                 before_write: Sequence[Hook] = (), on_rollback: Sequence[Hook] = (),
                 after_flush: Sequence[Hook] = ()) -> None:
        self.sessions: sessionmaker[Session] = sessionmaker(class_=sessions.class_, **sessions.kw)
        self.key = as_ring(key)
        self.before_write = tuple(before_write)
        self.on_rollback = tuple(on_rollback)
        self.after_flush = tuple(after_flush)
        #: set by the command line (workflow/cli/common.py): every audit event of every
        #: write unit then says where the change came from, in its reason
        self.attribution: str | None = None
        event.listen(self.sessions, "before_flush", self._before_flush)
        event.listen(self.sessions, "after_flush", self._after_flush)
        event.listen(self.sessions, "before_commit", self._before_commit)
        event.listen(self.sessions, "after_rollback", self._after_rollback)

    # the hooks, in the order given
    def _before_flush(self, session: Session, _ctx: Any, _instances: Any) -> None:
        if session.info.get(READ_ONLY):
            # fail closed: a change made to an object read for display must not be written
            # when the read unit ends (a web request's read session lives the whole request)
            raise RuntimeError("a read unit never writes; change data through a command")
        for hook in self.before_write:
            hook(session)

    def _after_flush(self, session: Session, _ctx: Any) -> None:
        for hook in self.after_flush:
            hook(session)

    def _before_commit(self, session: Session) -> None:
        for hook in self.before_write:
            hook(session)

    def _after_rollback(self, session: Session) -> None:
        for hook in self.on_rollback:
            hook(session)

    @contextmanager
    def write(self) -> Iterator[Session]:
        """One write transaction: commit on success, roll back on any exception. On SQLite
        it starts with BEGIN IMMEDIATE (workflow/db/engines.py)."""
        session = self.sessions()
        committing = False
        try:
            # no autoflush: the unit flushes where it needs ids and once at commit, instead
            # of before every query (measured: half the cost of a transition)
            with session.begin(), session.no_autoflush:
                session.info[_CONNECTION] = session.connection(execution_options=WRITE)
                session.info[KEY] = self.key
                if self.attribution:
                    session.info[ATTRIBUTION] = self.attribution
                yield session
                committing = True
        except DBAPIError as exc:
            if committing:
                # lost during the final flush or the COMMIT: whether it committed is not
                # known, so it is never run again (see retrying)
                setattr(exc, AT_COMMIT, True)
            raise
        finally:
            session.close()

    def retrying(self, work: Callable[[], T]) -> T:
        """Run ``work`` (which opens its own write unit) once more when the database
        connection it used was found dead before its commit - e.g. a pooled connection the
        server closed while it was idle (there is no ``pool_pre_ping``). That is safe: a
        transaction whose connection is gone before COMMIT never committed, and the unit
        runs again from the start on a fresh connection (the dead one was invalidated with
        the pool's older ones). A connection lost at commit, any other error, or a second
        loss is raised as it is (workflow/db/outage.py tells an outage from a bug)."""
        try:
            return work()
        except DBAPIError as exc:
            if not exc.connection_invalidated or getattr(exc, AT_COMMIT, False):
                raise
            log.warning("the database connection was lost before the unit committed "
                        "(%s); running it once more on a new connection",
                        type(exc.orig).__name__)
        return work()

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only snapshot (never commits; under WAL it never blocks writers)."""
        session = self.sessions()
        session.info[READ_ONLY] = True
        session.info[CHECK_KEY] = self.key  # to check seals, never to write
        try:
            with session.begin():
                yield session
        finally:
            session.close()

    @contextmanager
    def sandbox(self) -> Iterator[UnitOfWork]:
        """A unit of work whose every commit is a SAVEPOINT inside one outer transaction that
        is always rolled back: a dry run writes as usual and leaves nothing behind."""
        session = self.sessions()
        try:
            with session.begin() as outer:
                conn = session.connection(execution_options=WRITE)
                yield UnitOfWork(
                    sessionmaker(bind=conn, join_transaction_mode="create_savepoint",
                                 expire_on_commit=False),
                    self.key, before_write=self.before_write, on_rollback=self.on_rollback,
                    after_flush=self.after_flush)
                outer.rollback()
        finally:
            session.close()
