"""Web UI server time: inbox, record and transition pages on a database of 50,000 records.

The database (bench/datagen.py: bulk-inserted clones of engine-made records, verifiable by
``qms verify-audit``) has 50,000 records; one user, olga (capa_owner), has 500 open tasks.
Each page is requested --n times with Flask's test client, logged in (a real login, so
every request also refreshes the server-side session row, as in production); the time is
the whole in-process WSGI request: routing, session, queries, template rendering.

Search and trail pages (issue 17): /records with words, a record number, words and filters,
a "recently updated" sort, the unfiltered list; the audit trail's second page and a user
filter. ``--info FILE`` measures an existing database instead of generating one;
``--pages a,b`` measures only those pages.

Pages (olga): the inbox's first page, a filtered page (workflow + overdue), a search, a
record page (CAPA in action plan), a record with a signature and a longer history, and the
form of a transition. Extra (qa00, holding the QA role: ~15,000 tasks claimable by QA):
the QA inbox and the system-wide audit trail page.

Targets (issue 4, on the 2-core reference machine): p95 < 100 ms for every page.

Runs on a fresh SQLite file, or on PostgreSQL when QMS_BENCH_DATABASE_URL is set (wiped).
Prints one JSON object on its last line.

    python bench/web.py                # 50,000 records, 50 requests a page
    python bench/web.py --records 5000 --n 20
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.datagen import generate  # noqa: E402
from workflow.identity.policy import Policy

TARGET_MS = 100.0


def _login(app, username: str, password: str):  # type: ignore[no-untyped-def]
    c = app.test_client()
    html = c.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html).group(1)
    r = c.post("/login", data={"username": username, "password": password,
                               "csrf_token": token})
    assert r.status_code == 302 and "/login" not in r.headers["Location"], r.status_code
    return c


def _measure(client, path: str, n: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    r = client.get(path)  # warm-up (template compilation, statement caches)
    assert r.status_code == 200, (path, r.status_code)
    times, cpu = [], []
    for _ in range(n):
        t0, c0 = time.perf_counter(), time.process_time()
        r = client.get(path)
        times.append((time.perf_counter() - t0) * 1000)
        cpu.append((time.process_time() - c0) * 1000)
        assert r.status_code == 200, (path, r.status_code)
    times.sort()
    # cpu: this process's CPU time (on SQLite that includes the database's work; on
    # PostgreSQL the server's is not in it): less sensitive to a loaded machine than wall time
    return {"p50_ms": round(statistics.median(times), 1),
            "p95_ms": round(times[max(0, int(len(times) * 0.95) - 1)], 1),
            "max_ms": round(times[-1], 1), "cpu_p50_ms": round(statistics.median(cpu), 1)}


def _existing(url: str, info_file: str) -> dict:  # type: ignore[type-arg]
    """What datagen returned for an existing database (its JSON), with an Engine on it."""
    from bench.datagen import KEY
    from workflow.db import engines as db
    from workflow.engine.core import Engine
    from workflow.registry import Registry

    info = json.loads(Path(info_file).read_text())
    info["engine"] = Engine(db.make_sessionmaker(db.make_engine(url)), KEY, registry=Registry())
    info.setdefault("password", "Bench-Password-2026!")
    return info


def _older(client, path: str) -> str:  # type: ignore[no-untyped-def]
    """The "Older events" link of a trail page (its second page)."""
    html = client.get(path).get_data(as_text=True)
    m = re.search(r'rel="next" href="([^"]+)"', html)
    return m.group(1).replace("&amp;", "&") if m else path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=50_000)
    ap.add_argument("--tasks", type=int, default=500, help="open tasks of the measured user")
    ap.add_argument("--n", type=int, default=50, help="requests per page")
    ap.add_argument("--info", help="measure the existing database of QMS_BENCH_DATABASE_URL "
                    "(not wiped, not generated) described by this JSON file: what datagen "
                    "returned (hot_user, password, people, samples, records)")
    ap.add_argument("--pages", help="comma-separated page names to measure (default: all)")
    args = ap.parse_args()
    url = os.environ.get("QMS_BENCH_DATABASE_URL")
    tmp = tempfile.mkdtemp(prefix="qms-bench-web-")
    if not url:
        url = f"sqlite:///{tmp}/bench.db"
    t0 = time.perf_counter()
    if args.info:
        info = _existing(url, args.info)
        args.records = info.get("records", args.records)
    else:
        info = generate(url, records=args.records, hot_tasks=args.tasks,
                        log=lambda m: print(m, flush=True))
    gen_s = time.perf_counter() - t0
    print(f"generated in {gen_s:.1f} s", flush=True)

    os.environ.setdefault("QMS_INSTANCE_DIR", tmp)
    from webapp import create_app

    policy = Policy(totp_required_roles=())
    app = create_app({"SECRET_KEY": "bench", "QMS_ENGINE": info["engine"],
                      "QMS_POLICY": policy})
    hot = _login(app, info["hot_user"], info["password"])
    qa = _login(app, info["people"]["qa"][0], info["password"])
    s = info["samples"]
    pages = {
        "inbox": (hot, "/"),
        "inbox_filtered": (hot, "/?scope=all&workflow=capa&overdue=1"),
        "inbox_search": (hot, "/?q=pump"),
        "record": (hot, f"/records/{s['hot_action_plan']}"),
        "record_signed": (hot, f"/records/{s['signed']}"),
        "transition_form": (hot, f"/records/{s['hot_investigation']}/do/submit_root_cause"),
        "qa_inbox": (qa, "/"),
        "audit_trail": (qa, "/audit/"),
        # record search (issue 17 item 1): words, a record number, words + filters, the
        # unfiltered list, a rare word; the trail's second page and a user filter
        "record_search": (hot, "/records/?q=pump"),
        "record_search_number": (hot, f"/records/?q={s['hot_action_plan']}"),
        "record_search_filtered": (qa, "/records/?q=pump+valve&workflow=capa&status=open"),
        "record_search_updated": (qa, "/records/?q=sensor&sort=updated"),
        "record_list": (qa, "/records/"),
        "audit_trail_older": (qa, _older(qa, "/audit/")),
        "audit_trail_user": (qa, "/audit/?user=owner0"),
    }
    if args.pages:
        pages = {k: v for k, v in pages.items() if k in args.pages.split(",")}
    html = hot.get("/").get_data(as_text=True)
    shown = re.search(r"<strong>(\d+)</strong> task", html)
    figures = {}
    for name, (client, path) in pages.items():
        figures[name] = _measure(client, path, args.n)
        print(f"{name:16s} {path:60s} {figures[name]}", flush=True)
    core = tuple(k for k in ("inbox", "inbox_filtered", "inbox_search", "record",
                             "record_signed", "transition_form") if k in figures)
    result = {
        "db": "postgresql" if url.startswith("postgresql") else "sqlite",
        "records": args.records,
        "hot_user_open_tasks": int(shown.group(1)) if shown else None,
        "requests_per_page": args.n,
        "generate_s": round(gen_s, 1),
        **{f"{k}_{m}": v[m] for k, v in figures.items()
           for m in ("p50_ms", "p95_ms", "cpu_p50_ms")},
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "target_p95_ms": TARGET_MS,
        "target_met": all(figures[k]["p95_ms"] < TARGET_MS for k in core),
        "extra_target_met": all(v["p95_ms"] < TARGET_MS for v in figures.values()),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
