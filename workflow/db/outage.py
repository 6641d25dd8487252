"""Database outages: recognised, logged once, and recovered from without a restart.

An outage is the database being *unreachable* (refused or dropped connections, a server
shutting down) or *read-only* (a read-only file system or file, a standby, a read-only
transaction). :func:`kind` tells them from ordinary errors (a bug, a constraint) by the
driver's error class, SQLSTATE or SQLite message.

:func:`watch` hooks an engine:

- every error of an outage marks the connection as gone (SQLAlchemy then invalidates it and
  the pool's older connections), so the next unit of work opens a fresh connection: a
  database that comes back, or a file that becomes writable again, is used without a restart
  (and without ``pool_pre_ping``'s extra round trip per checkout);
- the first error of an outage logs ONE line (warning); later ones are only counted;
- the first new connection afterwards (the server answers; for a read-only outage, it takes a
  write, probed on that connection) or a passing readiness check logs one summary line: how
  long, how many failed statements and (counted by the web app,
  :meth:`Outage.request_failed`) failed requests. Nothing runs per statement: a database
  that works costs nothing.

Each process logs its own outage (several web workers: one line each).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, event
from sqlalchemy import exc as sa_exc

log = logging.getLogger(__name__)

UNREACHABLE = "unreachable"
READ_ONLY = "read_only"

#: SQLSTATE classes/codes of PostgreSQL that mean the server cannot be used right now
_PG_UNREACHABLE = ("08", "57P01", "57P02", "57P03", "53300")  # connection, shutdown, too many
_PG_READ_ONLY = ("25006",)  # read_only_sql_transaction (hot standby, read-only database)
_SQLITE_UNREACHABLE = ("unable to open database file", "disk i/o error")
_SQLITE_READ_ONLY = ("readonly database", "read-only database", "read-only file system")


def kind(error: BaseException) -> str | None:
    """``unreachable``, ``read_only`` or None (not an outage: a bug or a refused row)."""
    orig = getattr(error, "orig", None) or error
    # by the driver's error first: connection_invalidated is also set for the outages
    # that :func:`watch` drops the connection for (a read-only one included)
    if isinstance(orig, sqlite3.Error):
        text = str(orig).lower()
        if any(t in text for t in _SQLITE_READ_ONLY):
            return READ_ONLY
        if isinstance(orig, sqlite3.OperationalError) and any(t in text
                                                               for t in _SQLITE_UNREACHABLE):
            return UNREACHABLE
        return UNREACHABLE if _invalidated(error) else None
    sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if sqlstate:
        if sqlstate in _PG_READ_ONLY:
            return READ_ONLY
        if sqlstate.startswith(_PG_UNREACHABLE[0]) or sqlstate in _PG_UNREACHABLE:
            return UNREACHABLE
        return UNREACHABLE if _invalidated(error) else None
    # a driver's OperationalError without a SQLSTATE: the connection failed (refused, reset,
    # closed by the server) before the server could answer
    if isinstance(error, sa_exc.OperationalError) or type(orig).__name__ == "OperationalError":
        return UNREACHABLE
    if isinstance(error, sa_exc.InterfaceError) or _invalidated(error):
        return UNREACHABLE
    return None


def _invalidated(error: BaseException) -> bool:
    """SQLAlchemy found the connection gone (its dialect's disconnect detection)."""
    return isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated


@dataclass
class Outage:
    """The outage state of one engine in this process (thread-safe)."""

    url: str
    current: str | None = None  # the kind of the outage in progress
    started: float = 0.0
    failed_statements: int = 0
    failed_requests: int = 0
    outages: int = 0  # how many began since the process started
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def down(self) -> bool:
        return self.current is not None

    def failed(self, what: str, error: BaseException) -> None:
        """An error of kind ``what``: the first of an outage is logged, later ones counted."""
        with self._lock:
            self.failed_statements += 1
            if self.current is not None:
                if what == UNREACHABLE:  # worse than read-only: reported in the summary
                    self.current = UNREACHABLE
                return
            self.current, self.started = what, time.monotonic()
            self.failed_statements, self.failed_requests = 1, 0
            self.outages += 1
        first = str(getattr(error, "orig", None) or error).strip().splitlines()
        log.warning("database %s (%s): %s; further failures are counted, not logged, until "
                    "it recovers", "unreachable" if what == UNREACHABLE else "read-only",
                    self.url, f"{type(getattr(error, 'orig', None) or error).__name__}: "
                    f"{first[0] if first else ''}", extra={"kind": what})

    def request_failed(self) -> None:
        """A request answered 503 because of the outage in progress."""
        with self._lock:
            self.failed_requests += 1

    def succeeded(self, write: bool) -> None:
        """A statement (``write``: one that changes rows) went through: ends an outage it can
        end (a read-only outage only a write)."""
        if self.current is None or (self.current == READ_ONLY and not write):
            return
        with self._lock:
            if self.current is None:
                return
            what, seconds = self.current, time.monotonic() - self.started
            statements, requests = self.failed_statements, self.failed_requests
            self.current = None
        log.warning("database available again after %.1f s (%s): %d failed requests, %d failed "
                    "statements", seconds, what.replace("_", "-"), requests, statements,
                    extra={"kind": what, "outage_seconds": round(seconds, 1),
                           "failed_requests": requests, "failed_statements": statements})


_watched: weakref.WeakKeyDictionary[Engine, Outage] = weakref.WeakKeyDictionary()


def watch(engine: Engine) -> Outage:
    """Hook ``engine`` (once): outage errors invalidate the connection and are logged once;
    success after an outage is logged once."""
    found = _watched.get(engine)
    if found is not None:
        return found
    outage = Outage(engine.url.render_as_string(hide_password=True))
    _watched[engine] = outage

    @event.listens_for(engine, "handle_error")
    def _on_error(ctx: Any) -> None:
        what = kind(ctx.sqlalchemy_exception or ctx.original_exception)
        if what is None:
            return
        # drop the connection (and the pool's older ones): the next unit opens a new one,
        # which sees the database as it is now (reachable again, writable again)
        if not ctx.is_pre_ping:
            ctx.is_disconnect = True
        outage.failed(what, ctx.sqlalchemy_exception or ctx.original_exception)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, record: Any) -> None:
        record.info["qms_fresh"] = True
        # a new connection is the first sign of recovery: the server answers again (an
        # unreachable outage is over) and, probed on the raw connection, takes writes (a
        # read-only one is over). Checked here, once per connection, not on every statement.
        if outage.current == UNREACHABLE:
            outage.succeeded(write=False)
        elif outage.current == READ_ONLY and _raw_writable(dbapi_conn, engine.dialect.name):
            outage.succeeded(write=True)

    @event.listens_for(engine, "checkout")
    def _on_checkout(_dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        # during a read-only outage no connection is used twice: one opened while the
        # database was read-only stays read-only (SQLite opens it so for good), so each
        # checkout gets a new one, which sees the database as it is now
        fresh = record.info.pop("qms_fresh", False)
        if outage.current == READ_ONLY and not fresh:
            raise sa_exc.DisconnectionError("read-only outage: use a new connection")

    return outage


def _raw_writable(dbapi_conn: Any, dialect: str) -> bool:
    """:func:`writable` on a new DBAPI connection (inside the pool's connect event)."""
    try:
        if dialect == "postgresql":
            try:
                return dbapi_conn.execute("SHOW transaction_read_only").fetchone()[0] == "off"
            finally:
                dbapi_conn.rollback()
        if dialect == "sqlite":
            timeout = dbapi_conn.execute("PRAGMA busy_timeout").fetchone()[0]
            dbapi_conn.execute("PRAGMA busy_timeout = 200")  # never wait on a writer here
            try:
                dbapi_conn.execute("BEGIN IMMEDIATE")
                try:
                    version = int(dbapi_conn.execute("PRAGMA user_version").fetchone()[0])
                    dbapi_conn.execute(f"PRAGMA user_version = {version}")
                finally:
                    dbapi_conn.execute("ROLLBACK")
            finally:
                dbapi_conn.execute(f"PRAGMA busy_timeout = {int(timeout)}")
        return True
    except sqlite3.OperationalError as exc:
        # "database is locked": another connection is writing, so it takes writes
        return "locked" in str(exc).lower()
    except Exception:  # noqa: BLE001 - cannot tell: the outage goes on
        return False


def writable(conn: Connection) -> bool:
    """Whether the database takes writes now, asked without changing anything. PostgreSQL:
    the session is not read-only (a standby, default_transaction_read_only). SQLite: a write
    of the header's user_version to its own value, in the caller's transaction, which it
    rolls back (waits for other writers: call it only when an outage is suspected)."""
    if conn.dialect.name == "postgresql":
        return conn.exec_driver_sql("SHOW transaction_read_only").scalar() == "off"
    if conn.dialect.name != "sqlite":
        return True
    version = conn.exec_driver_sql("PRAGMA user_version").scalar()
    try:  # inside the connection's transaction, which the caller rolls back
        conn.exec_driver_sql(f"PRAGMA user_version = {int(version or 0)}")
    except sa_exc.DBAPIError as exc:
        if kind(exc) == READ_ONLY:
            return False
        raise
    return True


def outage_of(engine: Engine) -> Outage | None:
    """The outage state :func:`watch` keeps for ``engine`` (None: not watched)."""
    return _watched.get(engine)
