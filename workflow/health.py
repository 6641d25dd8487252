"""Readiness: can this process serve? (the web app's ``/readyz``; docs/operations.md)

Each check is a function of a :class:`Probe` returning a :class:`Check`. :data:`CHECKS` lists
them in order; a new one (e.g. the age of the newest backup) is a function added there. A
check's ``detail`` and ``values`` are shown to anyone who asks (``/readyz`` needs no login):
never a URL, a host, a revision id, a path or an exception text, only a short reason and
figures. A check that is not ``critical`` reports without making the process unready.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, text
from sqlalchemy import Engine as DBEngine

from workflow import backup as backups
from workflow import config
from workflow.db import engines as db
from workflow.db import outage
from workflow.engine.core import Engine

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Probe:
    """What a check may look at: the Engine, its database bind (an engine, or in tests a
    connection) and the settings."""

    engine: Engine
    dbe: DBEngine | Connection
    settings: config.Settings

    def connect(self) -> AbstractContextManager[Connection]:
        """A connection to the database (the bind itself when it is one)."""
        if isinstance(self.dbe, Connection):
            return nullcontext(self.dbe)
        return self.dbe.connect()


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    #: a short reason when not ok (no secrets, hosts, paths or versions)
    detail: str = ""
    #: figures worth showing (e.g. {"backup_age_hours": 5.2})
    values: dict[str, Any] = field(default_factory=dict)
    #: False: reported, but does not make the process unready
    critical: bool = True

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ok": self.ok}
        if self.detail:
            out["detail"] = self.detail
        out.update(self.values)
        return out


@functools.lru_cache(maxsize=1)
def _head() -> str | None:
    return db.head_revision()


def database(p: Probe) -> Check:
    """The database answers a query and takes writes (not read-only)."""
    state = outage.outage_of(p.dbe.engine)
    try:
        with p.connect() as conn:
            conn.execute(text("SELECT 1"))
            # on SQLite the write probe waits for other writers: only during an outage
            suspect = state is not None and state.current == outage.READ_ONLY
            if (conn.dialect.name != "sqlite" or suspect) and not outage.writable(conn):
                return Check("database", False, "read-only")
    except Exception as exc:  # any failure to answer means: not ready
        what = outage.kind(exc) or "error"
        log.debug("readiness: database check failed", exc_info=True)
        return Check("database", False, "unreachable" if what == outage.UNREACHABLE else
                     "read-only" if what == outage.READ_ONLY else "query failed")
    if state is not None and state.current is not None:
        state.succeeded(write=True)  # writable and answering: the outage is over
    return Check("database", True)


def schema(p: Probe) -> Check:
    """The schema is at the revision this code needs (Alembic head)."""
    from alembic.runtime.migration import MigrationContext

    try:
        with p.connect() as conn:
            current = MigrationContext.configure(conn).get_current_revision()
    except Exception:
        return Check("schema", False, "unknown (database unreachable)")
    head = _head()
    if current == head:
        return Check("schema", True)
    return Check("schema", False, "not initialised" if current is None else
                 "not at the revision this version needs: run qms db upgrade")


def keys(p: Probe) -> Check:
    """The server keys are loaded (the current key signs new entries)."""
    ring = p.engine.signing_key
    ok = bool(ring.ids) and ring.current_id in ring.ids
    return Check("keys", ok, "" if ok else "no current server key")


def backup(p: Probe) -> Check:
    """The age of the newest backup in QMS_BACKUP_DIR (``backup_age_hours``; workflow/backup.py):
    flagged when there is none or it is older than QMS_BACKUP_MAX_AGE_HOURS, never making
    the process unready (a late backup is the operator's to fix, not a reason to stop)."""
    now = backups.status(p.settings)
    return Check("backup", now.ok, now.problem, {"backup_age_hours": now.age_hours},
                 critical=False)


#: the checks ``/readyz`` runs, in order: add a function here to add a check
CHECKS: list[Callable[[Probe], Check]] = [database, schema, keys, backup]


def readiness(probe: Probe) -> tuple[bool, list[Check]]:
    """Run every check; ready when no critical check failed. A check that raises counts as
    failed (logged), never as passed."""
    results = []
    for fn in CHECKS:
        try:
            results.append(fn(probe))
        except Exception:
            log.exception("readiness check %s raised", fn.__name__)
            results.append(Check(fn.__name__, False, "check failed"))
    return all(c.ok for c in results if c.critical), results
