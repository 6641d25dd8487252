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

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol

from sqlalchemy import event
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

Hook = Callable[[Session], None]


def session_key(session: Session) -> KeyRing:
    """The server keys of the write unit ``session`` belongs to (the current one writes)."""
    key = session.info.get(KEY)
    if not key:
        # fail closed: an audit event or a seal must never be written unkeyed
        raise RuntimeError("audit events are written only inside a write unit (UnitOfWork.write)")
    return as_ring(key)


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
        try:
            # no autoflush: the unit flushes where it needs ids and once at commit, instead
            # of before every query (measured: half the cost of a transition)
            with session.begin(), session.no_autoflush:
                session.connection(execution_options=WRITE)
                session.info[KEY] = self.key
                if self.attribution:
                    session.info[ATTRIBUTION] = self.attribution
                yield session
        finally:
            session.close()

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
