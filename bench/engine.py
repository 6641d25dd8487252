"""Engine throughput: drive N CAPA records through their whole life.

Each CAPA takes 10 transitions (assign, root cause, plan, reject plan, plan again, approve
(signed), implement, verify (signed), effectiveness, close (signed)), each in its own
transaction and commit, with its audit events, task changes and signatures.

Targets (issue 2, on the 2-core reference machine):
  * >= 1,000 complete transitions per second on the SQLite file database;
  * peak RSS that does not grow with N (compare --n 1000 with --n 10000).

Runs on a fresh SQLite file by default, or on PostgreSQL when QMS_BENCH_DATABASE_URL is set
(the schema there is dropped and recreated). Prints one JSON object on its last line.

    python bench/engine.py --n 1000
    QMS_BENCH_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1/bench python bench/engine.py
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import create_engine, text  # noqa: E402

from bench.lifecycles import give_training  # noqa: E402
from workflow.db import engines as db
from workflow.engine.core import Engine  # noqa: E402
from workflow.identity import enablement
from workflow.identity import users as identity
from workflow.signatures.mac import VouchedSignature  # noqa: E402
from workflow.spec.load import load_directory  # noqa: E402

KEY = bytes.fromhex("22" * 32)


def setup(url: str) -> Engine:
    if url.startswith("postgresql"):
        admin = create_engine(url, isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            c.execute(text("CREATE SCHEMA public"))
        admin.dispose()
    dbe = db.make_engine(url)
    db.upgrade(dbe)
    engine = Engine(db.make_sessionmaker(dbe), KEY)
    defs = load_directory()
    with engine.unit() as s:
        system = identity.system_user(s)
        for d in defs.values():
            engine.registry.publish(s, d, system)
        for name, roles in [("emma", ["employee"]), ("quinn", ["qa"]),
                            ("quentin", ["qa", "employee"]), ("olga", ["capa_owner"]),
                            ("tess", ["trainer", "training_coordinator"])]:
            u = identity.create_user(s, name, name.title() + " Bench", actor=system, reason="bench")
            for r in roles:
                identity.grant_role(s, u, r, actor=system, reason="bench")
            enablement.enable_for_system(s, u, reason="bench")
    give_training(engine, "quentin", "tess")  # the closer (the training gate), not measured
    return engine


def life(engine: Engine) -> int:
    """One CAPA from start to closed; returns the number of transitions fired."""
    r = engine.start("capa", "emma", {"title": "Bench CAPA", "description": "benchmark"})
    n = r.number
    acts = [{"description": "fix", "responsible": "olga", "due": "2026-12-31"}]
    f = engine.fire
    f(n, "assign", "quinn", {"owner": "olga"})
    f(n, "submit_root_cause", "olga", {"root_cause_category": "method", "root_cause": "rc"})
    f(n, "submit_plan", "olga", {"actions": acts, "effectiveness_criteria": "none again"})
    f(n, "reject_plan", "quinn", {"plan_rejection_reason": "vague"}, reason="too vague")
    f(n, "submit_plan", "olga", {"actions": acts, "effectiveness_criteria": "none in 90 days"})
    f(n, "approve_plan", "quinn", signature=VouchedSignature("quinn", "bench"))
    f(n, "complete_implementation", "olga",
      {"implementation_summary": "done", "actions": [{**acts[0], "done": True}]})
    f(n, "verify", "quinn", {"verification_evidence": "ok"},
      signature=VouchedSignature("quinn", "bench"))
    # judged before the effectiveness due date: with a reason, flagged as taken early
    f(n, "record_effectiveness", "quinn",
      {"effectiveness_result": "effective", "effectiveness_evidence": "ok"},
      reason="bench: judged early")
    r = f(n, "close", "quentin", signature=VouchedSignature("quentin", "bench"))
    assert r.state == "closed", r
    return 10


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000, help="CAPA records to drive")
    args = ap.parse_args()
    url = os.environ.get("QMS_BENCH_DATABASE_URL")
    tmp = None
    if not url:
        tmp = tempfile.mkdtemp(prefix="qms-bench-")
        url = f"sqlite:///{tmp}/bench.db"
    engine = setup(url)
    transitions = 0
    starts = 0
    t0 = time.perf_counter()
    c0 = time.process_time()
    for i in range(args.n):
        transitions += life(engine)
        starts += 1
        if (i + 1) % max(1, args.n // 10) == 0:
            el = time.perf_counter() - t0
            print(f"{i + 1}/{args.n} records, {transitions / el:.0f} transitions/s", flush=True)
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - c0
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = {
        "n": args.n,
        "db": "postgresql" if url.startswith("postgresql") else "sqlite",
        "transitions": transitions,
        "records_started": starts,
        "seconds": round(elapsed, 2),
        "transitions_per_s": round(transitions / elapsed, 1),
        "units_per_s": round((transitions + starts) / elapsed, 1),
        "ms_per_transition": round(1000 * elapsed / (transitions + starts), 3),
        # this process's CPU time: on a shared machine less load-dependent than the clock
        # (on PostgreSQL the server's CPU is not in it)
        "cpu_seconds": round(cpu, 2),
        "transitions_per_cpu_s": round(transitions / cpu, 1),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "peak_rss_mb": round(peak_kb / 1024, 1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
