"""verify-audit throughput: build (or reuse) a database of about a million audit events and
time ``qms verify-audit``'s verification over it.

    python -m bench.verify --events 1000000 --records 50000 [--db FILE_OR_URL] [--reuse]

The data comes from :mod:`bench.datagen` (template records run through the real engine, clones
written with bulk inserts, validly chained and sealed with the engine's key), so the
verification finds no problem. ``QMS_BENCH_DATABASE_URL`` (or ``--db``) points at PostgreSQL;
the default is a SQLite file in a temporary directory. ``--reuse`` skips the build when the
database already holds data. The last line printed is one JSON object (events/s).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time

from sqlalchemy import func, select

from bench.datagen import KEY, generate
from workflow.audit import integrity
from workflow.db import engines as db
from workflow.db.models import AuditEvent
from workflow.engine.core import Engine
from workflow.registry import Registry


def _cpu() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(
        resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1_000_000, help="record audit events to build")
    ap.add_argument("--records", type=int, default=50_000)
    ap.add_argument("--db", default=os.environ.get("QMS_BENCH_DATABASE_URL"),
                    help="database URL (default: a SQLite file in a temporary directory)")
    ap.add_argument("--reuse", action="store_true", help="keep an already built database")
    ap.add_argument("--workers", type=int, default=None,
                    help="verification processes (default: the QMS_VERIFY_WORKERS setting)")
    args = ap.parse_args()
    url = args.db or f"sqlite:///{tempfile.mkdtemp(prefix='qms-bench-')}/verify.db"
    built = 0.0
    dbe = db.make_engine(url)
    engine = Engine(db.make_sessionmaker(dbe), KEY, registry=Registry())
    have = 0
    if args.reuse:
        try:
            with engine.reader() as s:
                have = s.execute(select(func.count()).select_from(AuditEvent)).scalar_one()
        except Exception:  # noqa: BLE001 - no schema yet: build it
            have = 0
    if have:
        # a database built by an older version: bring it to the schema and seals of this one
        db.upgrade(dbe)
        integrity.seal_existing(engine, "bench")
    else:
        t0 = time.perf_counter()
        generate(url, records=args.records, audit_events=args.events,
                 log=lambda m: print(m, flush=True))
        built = time.perf_counter() - t0
        # the probe above may have opened the file generate() replaced (SQLite): a pooled
        # connection would still read the old, empty one
        dbe.dispose()
    kwargs = {} if args.workers is None else {"workers": args.workers}
    load = os.getloadavg()
    cpu0 = _cpu()
    t0 = time.perf_counter()
    report = integrity.verify_and_store(engine, "bench", **kwargs)
    elapsed = time.perf_counter() - t0
    cpu = _cpu() - cpu0
    result = {
        "db": "postgresql" if url.startswith("postgresql") else "sqlite",
        "ok": report.ok,
        "problems": len(report.problems),
        "chains": report.chains,
        "events": report.events,
        "signatures": report.signatures,
        "workers": args.workers,
        "build_seconds": round(built, 1),
        "seconds": round(elapsed, 2),
        "events_per_s": round(report.events / elapsed, 1),
        # CPU seconds of this process and of the worker processes (they have ended)
        "cpu_seconds": round(cpu, 2),
        "events_per_cpu_s": round(report.events / cpu, 1) if cpu else None,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "peak_rss_worker_mb": round(
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
        "loadavg_before": [round(x, 2) for x in load],
        "first_problems": [str(p) for p in report.problems[:3]],
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
