"""KPI dashboard computation on 100,000 records and about 1,000,000 audit events.

The database comes from bench/datagen.py (bulk clones of engine-made records, with extra
``update`` events on the clones so the audit trail holds ~1,000,000 record events, all
chained and sealed: ``qms verify-audit`` passes). The measured unit is what the dashboard
page computes for a quality leader (a qa user) for the last 12 months: every metric
(workflow.kpi.SPECS), the deviations-by-classification and CAPA-flow series, security events
per month, training per document and per role, and the stored verification result, all in
one read session. It is repeated --n times (after a warm-up); each metric is also timed on
its own so a slow one is named. --page also times GET /dashboard/ (the whole request).

Targets (issue 6): the dashboard computes in under 1 second (p95 of --n runs) on SQLite and
on PostgreSQL.

Runs on a fresh SQLite file, or on PostgreSQL when QMS_BENCH_DATABASE_URL is set (wiped).
Prints one JSON object on its last line.

    python bench/kpi.py                          # 100,000 records, ~1,000,000 events
    python bench/kpi.py --records 5000 --events 50000 --n 3
    python bench/kpi.py --db URL --info INFO.json --statements 10   # where the time goes
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import event, func, select  # noqa: E402

from bench.datagen import generate, load  # noqa: E402
from workflow.db.models import AuditEvent, Record  # noqa: E402
from workflow.kpi import SPECS, Kpi, Period  # noqa: E402

TARGET_S = 1.0


def dashboard(engine, viewer: str, each: bool = False) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Everything the dashboard page computes (built-in and declared metrics); returns
    seconds per part. The metrics are computed together as the page does (Kpi.metrics);
    ``each``: one by one (Kpi.metric), to name a slow one."""
    parts: dict[str, float] = {}
    with engine.reader() as s:
        k = Kpi(s, engine.registry, viewer, Period.last_months(12))
        if each:
            for key in k.specs():
                t0 = time.perf_counter()
                k.metric(key)
                parts[key] = time.perf_counter() - t0
        else:
            t0 = time.perf_counter()
            k.metrics()
            parts["metrics"] = time.perf_counter() - t0
        for name, fn in (("series.deviations", k.deviations_by_class),
                         ("series.capa_flow", lambda: k.flow("capa")),
                         ("series.security", k.security_by_month),
                         ("series.training_documents", k.training_by_document),
                         ("series.training_roles", getattr(k, "training_by_role", None)),
                         ("integrity.last", k.last_verification)):
            if fn is None:
                continue
            t0 = time.perf_counter()
            fn()
            parts[name] = time.perf_counter() - t0
    return parts


def _slowest_statements(engine, viewer: str, n: int) -> list[list]:  # type: ignore[no-untyped-def]
    """The ``n`` slowest statements of one dashboard: [ms, the statement's first words],
    each also printed with more of its text (the time from sending it to its rows)."""
    bind = engine.sessions.kw["bind"]
    timed: list[tuple[float, str]] = []
    started: list[float] = []

    def before(*_a: object) -> None:
        started.append(time.perf_counter())

    def after(_c: object, _cur: object, statement: str, *_a: object) -> None:
        timed.append((time.perf_counter() - started.pop(), " ".join(statement.split())))

    event.listen(bind, "before_cursor_execute", before)
    event.listen(bind, "after_cursor_execute", after)
    try:
        dashboard(engine, viewer)
    finally:
        event.remove(bind, "before_cursor_execute", before)
        event.remove(bind, "after_cursor_execute", after)
    timed.sort(reverse=True)
    for sec, sql in timed[:n]:
        print(f"statement {sec * 1000:8.1f} ms  {sql[:400]}", flush=True)
    return [[round(sec * 1000, 1), sql[:120]] for sec, sql in timed[:n]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--events", type=int, default=1_000_000, help="record audit events")
    ap.add_argument("--n", type=int, default=5, help="dashboard computations measured")
    ap.add_argument("--page", action="store_true", help="also time GET /dashboard/")
    ap.add_argument("--each", action="store_true",
                    help="compute the metrics one by one (Kpi.metric) and time each")
    ap.add_argument("--statements", type=int, default=0, metavar="N",
                    help="after the runs, time each statement of one more dashboard and "
                         "print the N slowest (where the time goes)")
    ap.add_argument("--db", help="use this generated dataset instead of generating one")
    ap.add_argument("--info", help="the dataset's --info JSON file (with --db)")
    args = ap.parse_args()
    url = os.environ.get("QMS_BENCH_DATABASE_URL")
    tmp = tempfile.mkdtemp(prefix="qms-bench-kpi-")
    if not url:
        url = f"sqlite:///{tmp}/bench.db"
    t0 = time.perf_counter()
    if args.db:
        url = args.db
        info = load(url, args.info)
    else:
        info = generate(url, records=args.records, audit_events=args.events,
                        log=lambda m: print(m, flush=True))
    gen_s = time.perf_counter() - t0
    engine = info["engine"]
    with engine.reader() as s:
        n_records = s.execute(select(func.count()).select_from(Record)).scalar()
        n_events = s.execute(select(func.count()).select_from(AuditEvent)).scalar()
        n_closed = s.execute(select(func.count()).select_from(Record)
                             .where(Record.closed_at.is_not(None))).scalar()
    closed_share = round(n_closed / max(1, n_records), 3)
    print(f"generated {n_records} records, {n_events} audit events in {gen_s:.1f} s",
          flush=True)
    viewer = info["people"]["qa"][0]

    dashboard(engine, viewer, args.each)  # warm-up: definitions, statement caches, page cache
    # load-independent evidence beside the wall time: this process's CPU time (on SQLite the
    # queries run in-process) and the number of SQL statements one dashboard runs
    bind = engine.sessions.kw["bind"]
    seen: list[str] = []
    event.listen(bind, "before_cursor_execute",
                 lambda _c, _cur, statement, *_a: seen.append(statement))
    totals, cpus, per_part = [], [], {}
    for _ in range(args.n):
        seen.clear()
        c0 = time.process_time()
        parts = dashboard(engine, viewer, args.each)
        cpus.append(time.process_time() - c0)
        totals.append(sum(parts.values()))
        for k, v in parts.items():
            per_part.setdefault(k, []).append(v)
    totals.sort()
    parts = sorted(((statistics.median(v), k) for k, v in per_part.items()), reverse=True)
    slowest = parts[:3]
    for sec, k in slowest:
        print(f"slowest: {k:28s} {sec * 1000:8.1f} ms", flush=True)

    page = None
    if args.page:
        os.environ.setdefault("QMS_INSTANCE_DIR", tmp)
        from bench.web import _login
        from webapp import create_app
        from workflow.identity.policy import Policy

        app = create_app({"SECRET_KEY": "bench", "QMS_ENGINE": engine,
                          "QMS_POLICY": Policy(totp_required_roles=())})
        c = _login(app, viewer, info["password"])
        assert c.get("/dashboard/").status_code == 200
        times = []
        for _ in range(args.n):
            t0 = time.perf_counter()
            r = c.get("/dashboard/")
            times.append(time.perf_counter() - t0)
            assert r.status_code == 200
        page = round(statistics.median(times), 3)

    n_statements = len(seen)  # of the last measured dashboard
    slow_statements = _slowest_statements(engine, viewer, args.statements) \
        if args.statements else []

    p95 = totals[max(0, int(len(totals) * 0.95) - 1)]
    result = {
        "db": "postgresql" if url.startswith("postgresql") else "sqlite",
        "records": n_records,
        "audit_events": n_events,
        "viewer": viewer,
        "measured_parts": len(parts),
        "metrics_each": args.each,
        "builtin_metrics": len(SPECS),
        "statements": n_statements,
        "cpu_p50_s": round(statistics.median(cpus), 3),
        "runs": args.n,
        "generate_s": round(gen_s, 1),
        "dashboard_p50_s": round(statistics.median(totals), 3),
        "dashboard_p95_s": round(p95, 3),
        "dashboard_max_s": round(totals[-1], 3),
        **({"page_p50_s": page} if page is not None else {}),
        "slowest": {k: round(v * 1000, 1) for v, k in slowest},
        "parts_ms": {k: round(v * 1000, 1) for v, k in parts},
        **({"slowest_statements_ms": slow_statements} if slow_statements else {}),
        "closed_share": closed_share,
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "target_s": TARGET_S,
        "target_met": p95 < TARGET_S,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
