"""JSON API throughput on PostgreSQL: gunicorn with 4 workers, a bounded loopback load.

The database comes from bench/datagen.py (``--records``, default 20,000; ``--reuse`` keeps
an existing one). Each client is a thread with its own API token (a bench user holding qa,
capa_owner and employee) and its own ``http.client`` connection, in a closed loop (a client
sends its next request when the last one answered: the load is bounded by --clients):

* ``--mode write``: transitions only. A client starts a CAPA (POST /records), assigns it to
  itself, submits the root cause and the plan, then rejects and resubmits the plan (none of
  these is signed) until the record has 12 steps, then starts the next one.
* ``--mode mixed``: per write, two reads: the client's inbox (GET /tasks) and the record
  (GET /records/{number}).

Every response must be 2xx (anything else is an error and counted). Afterwards
``qms verify-audit`` runs over the whole database as the runtime role (the database is
handed to the schema owner qms_owner and granted to qms_runtime first, as in production)
and must pass. The API rate limit is off for the run (QMS_API_RATE_PER_MINUTE=0).

Targets (issue 18): >= 300 requests/s mixed and >= 400 transitions/s write-only, 8 and 32
clients, 30 s, 0 errors, verify-audit clean.

    python -m bench.api --url postgresql+psycopg://postgres@127.0.0.1:5432/bench_api \\
        --clients 8 --seconds 30 --mode mixed
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.datagen import KEY, generate  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


def _setup(url: str, records: int, clients: int, reuse: bool) -> list[tuple[str, str]]:
    """The database (generated unless reused) and one (username, token) per client."""
    from workflow.db import engines as db
    from workflow.engine.core import Engine
    from workflow.identity import enablement, tokens
    from workflow.identity import users as identity
    from workflow.registry import Registry

    if not reuse:
        generate(url, records=records, log=lambda m: print(m, file=sys.stderr, flush=True))
    bind = db.make_engine(url)
    if reuse:
        # a dataset generated before the newest migration: the app's /readyz answers 503
        # until the schema is at head, so gunicorn would never be ready
        db.upgrade(bind)
        print(f"schema at {db.head_revision()}", file=sys.stderr, flush=True)
    engine = Engine(db.make_sessionmaker(bind), KEY, registry=Registry())
    out = []
    stamp = int(time.time())
    with engine.unit() as s:
        system = identity.system_user(s)
        for i in range(clients):
            name = f"api{stamp % 100000}x{i:02d}"
            u = identity.create_user(s, name, f"Api Client {i}", actor=system, reason="bench")
            for role in ("qa", "capa_owner", "employee"):
                identity.grant_role(s, u, role, actor=system, reason="bench")
            enablement.enable_for_system(s, u, reason="bench")
            made = tokens.create_token(s, u, actor=u, name="bench", scopes=["read", "write"])
            out.append((name, made.secret))
    engine.sessions.kw["bind"].dispose()
    return out


def _hand_to_runtime(url: str, env: dict[str, str]) -> tuple[str, str]:
    """(runtime URL, owner URL): the schema handed to qms_owner, qms_runtime granted."""
    dbname = url.rsplit("/", 1)[1]
    host = url.split("@", 1)[1].rsplit("/", 1)[0]
    sql = """ALTER SCHEMA public OWNER TO qms_owner;
DO $$ DECLARE r record; BEGIN
  FOR r IN SELECT tablename FROM pg_tables WHERE schemaname='public' LOOP
    EXECUTE format('ALTER TABLE public.%I OWNER TO qms_owner', r.tablename); END LOOP;
  FOR r IN SELECT sequencename FROM pg_sequences WHERE schemaname='public' LOOP
    EXECUTE format('ALTER SEQUENCE public.%I OWNER TO qms_owner', r.sequencename); END LOOP;
  FOR r IN SELECT p.oid::regprocedure AS f FROM pg_proc p JOIN pg_namespace n
           ON n.oid = p.pronamespace WHERE n.nspname = 'public' LOOP
    EXECUTE format('ALTER FUNCTION %s OWNER TO qms_owner', r.f); END LOOP;
END $$;"""
    hostname, port = host.split(":")
    subprocess.run(["psql", "-q", "-h", hostname, "-p", port, "-U", "postgres", "-d", dbname,
                    "-c", sql], check=True)
    runtime = f"postgresql+psycopg://qms_runtime@{host}/{dbname}"
    owner = f"postgresql+psycopg://qms_owner@{host}/{dbname}"
    subprocess.run([PY, "-m", "webapp.cli", "db", "grant-runtime", "qms_runtime"], check=True,
                   cwd=ROOT, env={**env, "QMS_DATABASE_URL": runtime,
                                  "QMS_MIGRATION_DATABASE_URL": owner},
                   stdout=subprocess.DEVNULL)
    return runtime, owner


class Client(threading.Thread):
    def __init__(self, port: int, username: str, token: str, mode: str, since: float,
                 until: float) -> None:
        super().__init__(daemon=True)
        self.port, self.username, self.mode = port, username, mode
        self.since, self.until = since, until  # measured from ``since`` (after a warm-up)
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self.lat: dict[str, list[float]] = {"read": [], "write": []}
        self.errors: list[str] = []
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.number: str | None = None
        self.version = 0
        self.steps = 0

    def call(self, kind: str, method: str, path: str, body: Any = None) -> Any:
        t0 = time.perf_counter()
        try:
            self.conn.request(method, path, body=json.dumps(body) if body is not None else None,
                              headers=self.headers)
            r = self.conn.getresponse()
            data = r.read()
        except (OSError, http.client.HTTPException) as exc:
            self.conn.close()
            self.errors.append(f"{method} {path}: {exc!r}")
            return None
        if t0 >= self.since:
            self.lat[kind].append(time.perf_counter() - t0)
        if r.getheader("Connection", "").lower() == "close":
            self.conn.close()
        if not 200 <= r.status < 300:
            self.errors.append(f"{method} {path}: {r.status} {data[:200]!r}")
            return None
        return json.loads(data) if data else None

    def fire(self, transition: str, data: dict[str, Any], reason: str | None = None) -> None:
        body = {"expected_version": self.version, "data": data}
        if reason:
            body["reason"] = reason
        out = self.call("write", "POST", f"/api/v1/records/{self.number}/transitions/{transition}",
                        body)
        if out is None:
            self.number = None  # start over on a fresh record
            return
        self.version = out["record"]["version"]

    def write(self) -> None:
        me = self.username
        if self.number is None or self.steps >= 12:
            out = self.call("write", "POST", "/api/v1/records", {"workflow": "capa", "data": {
                "title": f"API bench CAPA of {me}", "description": "Load test."}})
            if out is None:
                return
            self.number, self.version, self.steps = out["number"], out["version"], 1
            return
        plan = {"actions": [{"description": "Fix it", "responsible": me, "due": "2027-12-31"}],
                "effectiveness_criteria": "no recurrence"}
        step = self.steps
        if step == 1:
            self.fire("assign", {"owner": me})
        elif step == 2:
            self.fire("submit_root_cause", {"root_cause_category": "method",
                                            "root_cause": "Ambiguous instruction."})
        elif step % 2 == 1:
            self.fire("submit_plan", plan)
        else:
            self.fire("reject_plan", {"plan_rejection_reason": "More detail."},
                      reason="Too vague.")
        self.steps += 1

    def run(self) -> None:
        while time.perf_counter() < self.until:
            if self.mode == "mixed":
                self.call("read", "GET", "/api/v1/tasks?limit=25")
                if self.number:
                    self.call("read", "GET", f"/api/v1/records/{self.number}")
            self.write()


def _wait_ready(port: int, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(300):
        if proc.poll() is not None:
            raise SystemExit("gunicorn exited")
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/readyz")
            if c.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit("gunicorn did not get ready")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default=os.environ.get("QMS_BENCH_DATABASE_URL"),
                    help="PostgreSQL database (superuser URL; wiped unless --reuse)")
    ap.add_argument("--records", type=int, default=20_000)
    ap.add_argument("--reuse", action="store_true", help="keep the database's data")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--mode", choices=("mixed", "write"), default="mixed")
    ap.add_argument("--warmup", type=float, default=5, help="seconds not measured first")
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--port", type=int, default=8741)
    args = ap.parse_args()
    if not args.url or not args.url.startswith("postgresql"):
        raise SystemExit("--url postgresql+psycopg://postgres@HOST:PORT/DB is required")
    inst = tempfile.mkdtemp(prefix="qms-bench-api-")
    env = {**os.environ, "QMS_SIGNATURE_KEY": KEY.hex(), "QMS_INSTANCE_DIR": inst,
           "QMS_API_RATE_PER_MINUTE": "0", "QMS_LOG_LEVEL": "warning"}
    users = _setup(args.url, args.records, args.clients, args.reuse)
    runtime, _owner = _hand_to_runtime(args.url, env)
    env.update(QMS_DATABASE_URL=runtime, WEB_CONCURRENCY=str(args.workers),
               GUNICORN_BIND=f"127.0.0.1:{args.port}")
    proc = subprocess.Popen([PY, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py")],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=open(Path(inst) / "gunicorn.log", "wb"))
    try:
        _wait_ready(args.port, proc)
        load0 = os.getloadavg()[0]
        since = time.perf_counter() + args.warmup
        until = since + args.seconds
        clients = [Client(args.port, u, t, args.mode, since, until) for u, t in users]
        for c in clients:
            c.start()
        for c in clients:
            c.join()
        elapsed = time.perf_counter() - since
        load1 = os.getloadavg()[0]
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    reads = [x for c in clients for x in c.lat["read"]]
    writes = [x for c in clients for x in c.lat["write"]]
    both = sorted(reads + writes)
    errors = [e for c in clients for e in c.errors]
    for e in errors[:5]:
        print("error:", e, file=sys.stderr)
    verify = subprocess.run([PY, "-m", "webapp.cli", "verify-audit"], cwd=ROOT, env=env,
                            capture_output=True, text=True)
    verdict = (verify.stdout.strip().splitlines() or ["?"])[-1]

    def pct(xs: list[float], p: float) -> float | None:
        xs = sorted(xs)
        return round(xs[min(len(xs) - 1, int(len(xs) * p))] * 1000, 1) if xs else None

    print(json.dumps({
        "db": "postgresql", "mode": args.mode, "clients": args.clients,
        "workers": args.workers, "seconds": round(elapsed, 1),
        "requests": len(both), "requests_per_s": round(len(both) / elapsed, 1),
        "transitions": len(writes), "transitions_per_s": round(len(writes) / elapsed, 1),
        "reads_per_s": round(len(reads) / elapsed, 1),
        "p50_ms": pct(both, 0.5), "p99_ms": pct(both, 0.99),
        "write_p50_ms": pct(writes, 0.5), "read_p50_ms": pct(reads, 0.5),
        "errors": len(errors), "verify_audit_ok": verify.returncode == 0,
        "verify_audit": verdict[:200], "load_avg_1m": [round(load0, 2), round(load1, 2)],
        "median_client_requests": statistics.median(
            [len(c.lat["read"]) + len(c.lat["write"]) for c in clients]),
    }))


if __name__ == "__main__":
    main()
