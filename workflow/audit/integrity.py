"""``qms verify-audit``: "OK" only when nothing the engine relies on was changed behind its
back. What is checked, in the order problems are reported (every problem is reported, the
first one first, each with its kind, where and a message):

1. every record: its chain (sequence, links, keyed hashes), the replay of its events against
   its row, its seal, its signatures' MACs and content hashes; events or signatures of a
   record id without a row (a deleted record) - :mod:`workflow.audit.chains`, in parallel
   worker processes on large databases (record chains are independent);
2. every non-record chain (``system``...) and its head's seal (a cut tail with a rewound
   head); events filed under another record's chain, events of an unknown chain;
3. every published definition version: its source still has its content hash;
4. every users, role_grants and api_tokens row: its keyed seal;
5. the system chain replayed against those tables (grants, revocations, tokens, accounts,
   passwords, locks, deactivations: each row explained by its event and back);
6. record numbers against the counters (a gap is a deleted record);
7. the protections: the append-only triggers (and whatever :func:`add_check` registered,
   e.g. the runtime role's privileges on PostgreSQL).

Checks 2-7 are in :mod:`workflow.audit.checks`.
"""

from __future__ import annotations

import multiprocessing
import os
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, String, cast, func, literal, select
from sqlalchemy.orm import Session

from workflow import blobs, clock
from workflow.audit import checks
from workflow.audit import trail as audit
from workflow.audit.chains import Counts, ranges, verify_range
from workflow.audit.trail import ChainProblem, VerifyReport
from workflow.config import settings
from workflow.db import engines as db
from workflow.db import roles
from workflow.db.models import AuditChain, AuditEvent, JobRun, Record
from workflow.db.seals import seal_unsealed
from workflow.db.uow import UnitOfWork, Units
from workflow.keyring import Key

#: the JobRun.job name under which integrity verification results are stored
VERIFY_JOB = "verify_audit"
#: below this many audit events, "automatic" workers means one (starting processes costs
#: more than it saves)
PARALLEL_FROM = 200_000
#: at most this many problems are kept with a stored result (all are in the report)
STORED_PROBLEMS = 50

Check = Callable[[Connection, Any], Iterable[ChainProblem]]
#: ``progress(events_checked, events_total)``, called as verification goes on
Progress = Callable[[int, int], None]
_CHECKS: list[Check] = []


def add_check(check: Check) -> None:
    """Register another check run at the end of every verification (after the triggers),
    e.g. the runtime role's privileges on PostgreSQL: ``check(connection, key)`` yields
    :class:`~workflow.audit.trail.ChainProblem` s (pick a ``kind`` of your own)."""
    if check not in _CHECKS:
        _CHECKS.append(check)


def runtime_role(conn: Connection, key: Key) -> Iterable[ChainProblem]:
    """PostgreSQL: the role the application runs as (``current_user``) must not be able to
    change, delete or truncate the append-only tables or drop their triggers (a superuser,
    the schema's or a table's owner, or such privileges); :mod:`workflow.db.roles`.
    Registered with :func:`add_check` below."""
    if not roles.is_postgres(conn):
        return
    report = roles.check(conn)
    for message in report.problems:
        yield ChainProblem(f"role {report.role}", None, None,
                           f"{message} (run the application as a runtime role: "
                           "docs/operations.md, `qms db check-roles`)", kind="protection")


def protections(conn: Connection, key: Key) -> Iterable[ChainProblem]:
    """The protections verify-audit itself relies on: the append-only triggers, then every
    check registered with :func:`add_check`."""
    yield from checks.triggers(conn)
    for check in list(_CHECKS):
        yield from check(conn, key)


def verify(session: Session, key: Key, *, workers: int = 1,
           url: str | None = None, progress: Progress | None = None) -> VerifyReport:
    """Verify everything (see the module's docstring) in ``session``'s transaction, or, with
    ``workers`` > 1 and the database ``url``, the record chains in that many processes (each
    range of records in a read transaction of its own).

    ``progress(checked, total)`` is called after each range of records and after the other
    chains, with the audit events checked so far and the number there are (the background
    run shows it, :mod:`workflow.audit.runs`)."""
    report = VerifyReport()
    conn = session.connection()
    total = 0
    if progress is not None:
        total = conn.execute(select(func.count()).select_from(AuditEvent.__table__)).scalar() or 0
        progress(0, total)
    parts = ranges(conn)
    if workers > 1 and url and len(parts) > 1:
        ctx = multiprocessing.get_context("spawn")  # no fork of a process with threads
        pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init,
                                   initargs=(url, key))
        try:
            # results in range order (so problems come first one first); the other checks
            # run in this process meanwhile, while the workers start and verify
            futures = [pool.submit(_worker_range, key, lo, hi) for lo, hi in parts]
            rest = _others(conn, key)
            for f in futures:
                _merge(report, f.result())
                if progress is not None:
                    progress(report.events, total)
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
    else:
        for lo, hi in parts:
            _merge(report, verify_range(conn, key, lo, hi))
            if progress is not None:
                progress(report.events, total)
        rest = _others(conn, key)
    _merge(report, rest)
    if progress is not None:
        progress(report.events, total)
    return report


def _others(conn: Connection, key: Key) -> Counts:
    """Checks 2-7 (see the module's docstring), their problems in that order."""
    out = Counts()
    replayed: list[Any] = []
    found = checks.system_chains(conn, key, replayed)
    out.chains, out.events = next(found)
    out.problems.extend(found)
    out.problems.extend(_misfiled(conn))
    out.problems.extend(checks.definitions(conn))
    tables = checks.security_tables(conn)
    out.problems.extend(checks.seals(key, tables))
    out.problems.extend(checks.replay(tables, replayed))
    out.problems.extend(checks.numbering(conn))
    out.problems.extend(protections(conn, key))
    return out


def _merge(report: VerifyReport, counts: Counts) -> None:
    report.chains += counts.chains
    report.events += counts.events
    report.signatures += counts.signatures
    report.problems.extend(counts.problems)


def _misfiled(conn: Connection) -> Iterable[ChainProblem]:
    # an event filed under one record but chained under another (or none) would be shown
    # in that record's trail without ever being verified
    e = AuditEvent.__table__.c
    for row in conn.execute(
            select(e.id, e.chain, e.record_id).where(
                e.record_id.is_not(None), e.chain != literal("record:") + cast(e.record_id, String))
            .order_by(e.id).limit(20)):
        yield ChainProblem(row.chain, None, row.id,
                           f"event belongs to record id {row.record_id} but is filed in another "
                           "chain (inserted outside the application)")
    for (chain,) in conn.execute(
            select(e.chain).where(e.record_id.is_(None),
                                  e.chain.not_in(select(AuditChain.__table__.c.name)))
            .distinct().order_by(e.chain).limit(20)):
        yield ChainProblem(chain, None, None, "events of an unknown chain (no chain head)")


# --------------------------------------------------------------------------- workers

_worker_units: UnitOfWork | None = None


def _worker_init(url: str, key: Key) -> None:
    global _worker_units
    _worker_units = UnitOfWork(db.make_sessionmaker(db.make_engine(url)), key)


def _worker_range(key: Key, lo: int, hi: int) -> Counts:
    assert _worker_units is not None
    with _worker_units.read() as session:  # one read transaction per range
        return verify_range(session.connection(), key, lo, hi)


def _url(session: Session) -> str:
    bind = session.get_bind()
    dbe = bind.engine if isinstance(bind, Connection) else bind
    return str(dbe.url.render_as_string(hide_password=False))


def worker_count(session: Session, configured: int | None = None) -> int:
    """How many processes verify the record chains: the setting (``QMS_VERIFY_WORKERS``),
    or, when it is 0 (automatic), one for small databases and one per CPU (at most 8)
    from :data:`PARALLEL_FROM` audit events up. SQLite in memory always uses one."""
    n = settings().verify_workers if configured is None else configured
    bind = session.get_bind()
    if isinstance(bind, Connection):
        return 1  # a session joined to an outer transaction: other processes cannot see it
    url = getattr(bind, "url", None)
    if url is None:
        return 1
    if url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"):
        return 1
    if n > 0:
        return n
    events = session.execute(select(func.max(AuditEvent.__table__.c.id))).scalar() or 0
    return 1 if events < PARALLEL_FROM else max(1, min(8, os.cpu_count() or 1))


def result_of(report: VerifyReport) -> dict[str, Any]:
    """A verification's result as stored for the dashboard: the counts, the first problem
    and the first :data:`STORED_PROBLEMS` problems (kind, where, message)."""
    return {"ok": report.ok, "chains": report.chains, "events": report.events,
            "signatures": report.signatures, "problems": len(report.problems),
            "first_problem": str(report.problems[0]) if report.problems else None,
            "problem_list": [p.as_dict() for p in report.problems[:STORED_PROBLEMS]]}


def verify_all(engine: Units, *, workers: int | None = None,
               progress: Progress | None = None) -> VerifyReport:
    """Verify everything in a read transaction (writers are not held up meanwhile), the
    record chains in ``workers`` processes (default: the ``QMS_VERIFY_WORKERS`` setting);
    ``progress`` as for :func:`verify`. Stores nothing."""
    with engine.reader() as session:
        n = worker_count(session, workers)
        url = None if n == 1 else _url(session)
        return verify(session, engine.signing_key, workers=n, url=url, progress=progress)


def store_verification(session: Session, report: VerifyReport, started: datetime,
                       runner: str) -> JobRun:
    """Keep a verification result (``integrity.verify``) for the dashboard. The caller's unit
    commits it."""
    now = clock.now()
    # each run is its own "period": the time plus a nonce (two runs can share a clock tick)
    run = JobRun(job=VERIFY_JOB,
                 period_key=f"{now.isoformat(timespec='microseconds')}#{uuid.uuid4().hex[:8]}",
                 started_at=started, finished_at=now, status="done" if report.ok else "failed",
                 result=result_of(report), runner=runner)
    session.add(run)
    session.flush()
    return run


#: who may run verify-audit from the dashboard (``qms verify-audit`` is the operator's)
VERIFY_ROLES = ("qa", "admin")


def verify_and_store(engine: Units, runner: str, *, workers: int | None = None
                     ) -> VerifyReport:
    """Verify everything in a read transaction (writers are not held up meanwhile), the
    record chains in ``workers`` processes (default: the ``QMS_VERIFY_WORKERS`` setting),
    then keep the result for the dashboard's data-integrity tile in a unit of its own
    (``qms verify-audit`` and the dashboard's verify button)."""
    started = clock.now()
    report = verify_all(engine, workers=workers)
    with engine.unit() as session:
        store_verification(session, report, started, runner)
    return report


def seal_existing(engine: Units, runner: str) -> dict[str, list[str]]:
    """Seal the security rows written before seals existed (after upgrading to migration
    0008), in one unit; what was sealed is recorded on the system chain (``rows_sealed``),
    so verify-audit and an inspector can see when each row got its seal. Idempotent."""
    with engine.unit() as session:
        done = seal_unsealed(session)
        if done:
            audit.system_event(session, at=clock.now(), actor=None, action="rows_sealed",
                               changes={"by": runner, "rows": done},
                               reason="rows written before the security seals existed")
    return done


# the runtime role's privileges are one of the protections verify-audit relies on (issue 13)
add_check(runtime_role)


def attachments(conn: Connection, key: Key) -> Iterable[ChainProblem]:
    """Every file a record holds is stored and its bytes still hash to the SHA-256 the
    record (sealed, covered by its chain and signatures) names: a file replaced or changed
    in the attachment store, or removed from it, is named here (workflow/blobs.py).
    Registered with :func:`add_check` below."""
    store = blobs.store()
    rows = conn.execute(select(Record.id, Record.number, Record.data).where(
        cast(Record.data, String).like('%"sha256"%')).order_by(Record.id))
    for rid, number, data in rows:
        for field, value in (data or {}).items():
            for f in blobs.files_in(value):
                why = blobs.intact(store, f["sha256"], f["size"])
                if why:
                    yield ChainProblem(audit.record_chain(rid), None, None,
                                       f"{number} {field}: attachment {f['name']} (sha256 "
                                       f"{f['sha256']}): {why}", kind="attachment")


add_check(attachments)
