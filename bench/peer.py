"""The peer comparison: this engine against a bare ``transitions`` + SQLAlchemy Core baseline
doing the same CAPA process, interleaved in the same run.

The baseline (written for this benchmark, no code of another project) is what a stateless
worker with no Part 11 controls does per step: load the record row, bind it to one compiled
``transitions.Machine``, fire the trigger, write the row back (version-checked) and append
ONE audit row, then commit - no authorisation, validation, tasks, chained hashes, seals or
signatures. Each CAPA takes the same 10 steps as bench/engine.py (start + assign, root cause,
plan, reject plan, plan again, approve, implement, verify, effectiveness, close), one
transaction and one commit per step, on a SQLite file in WAL mode with synchronous=NORMAL
like the engine's (or on PostgreSQL with ``QMS_BENCH_DATABASE_URL``: both then share that
database, the peer in tables of its own).

Rounds alternate engine and peer (engine first in odd rounds, peer first in even ones), each
on a fresh database, and the medians are compared: the issue's target is that the engine
reaches at least half of the peer's transitions per second.

    python bench/peer.py --n 300 --rounds 3
    python bench/peer.py --only peer --n 1000
    QMS_BENCH_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1/bench python bench/peer.py

The last line printed is one JSON object.
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
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import (  # noqa: E402
    JSON,
    Column,
    DateTime,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    create_engine,
    event,
    insert,
    select,
    text,
    update,
)
from transitions import Machine  # noqa: E402

STATES = ["open", "investigation", "action_plan", "plan_approval", "implementation",
          "verification", "effectiveness_check", "qa_closure", "closed"]
STEPS = [  # (trigger, source, dest) as in definitions/capa.yaml
    ("assign", "open", "investigation"),
    ("submit_root_cause", "investigation", "action_plan"),
    ("submit_plan", "action_plan", "plan_approval"),
    ("reject_plan", "plan_approval", "action_plan"),
    ("approve_plan", "plan_approval", "implementation"),
    ("complete_implementation", "implementation", "verification"),
    ("verify", "verification", "effectiveness_check"),
    ("record_effectiveness", "effectiveness_check", "qa_closure"),
    ("close", "qa_closure", "closed"),
]
#: the bench's life of a CAPA: (trigger, actor, data)
LIFE = [
    ("assign", "quinn", {"owner": "olga"}),
    ("submit_root_cause", "olga", {"root_cause_category": "method", "root_cause": "rc"}),
    ("submit_plan", "olga", {"actions": [{"description": "fix", "responsible": "olga"}]}),
    ("reject_plan", "quinn", {"plan_rejection_reason": "vague"}),
    ("submit_plan", "olga", {"effectiveness_criteria": "none in 90 days"}),
    ("approve_plan", "quinn", {}),
    ("complete_implementation", "olga", {"implementation_summary": "done"}),
    ("verify", "quinn", {"verification_evidence": "ok"}),
    ("record_effectiveness", "quinn", {"effectiveness_result": "effective"}),
    ("close", "quentin", {}),
]

meta = MetaData()
peer_records = Table(
    "peer_records", meta,
    Column("id", Integer, primary_key=True),
    Column("state", String(40), nullable=False),
    Column("data", JSON, nullable=False),
    Column("version", Integer, nullable=False),
    Column("created_by", String(64), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
peer_audit = Table(
    "peer_audit", meta,
    Column("id", Integer, primary_key=True),
    Column("record_id", Integer, nullable=False, index=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor", String(64), nullable=False),
    Column("trigger", String(64)),
    Column("from_state", String(40)),
    Column("to_state", String(40)),
    Column("changes", JSON),
)

_c = peer_records.c
LOAD = select(_c.state, _c.data, _c.version).where(_c.id == bindparam("rid"))
SAVE = update(peer_records).where(_c.id == bindparam("rid"), _c.version == bindparam("v0"))
AUDIT = insert(peer_audit)


class Row:
    """The record as the machine sees it (the model the machine is bound to for one step)."""

    def __init__(self, state: str) -> None:
        self.state = state


def peer_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        dbe = create_engine(url)

        @event.listens_for(dbe, "connect")
        def _connect(dbapi_conn: Any, _rec: Any) -> None:
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        @event.listens_for(dbe, "begin")
        def _begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        dbe = create_engine(url)
    with dbe.begin() as conn:
        meta.drop_all(conn)
        meta.create_all(conn)
    return dbe


def peer_round(url: str, n: int) -> dict[str, Any]:
    """Drive ``n`` CAPAs through their life with the bare baseline."""
    from datetime import UTC, datetime

    dbe = peer_engine(url)
    machine = Machine(model=None, states=STATES, initial="open", auto_transitions=False)
    for trig, src, dest in STEPS:
        machine.add_transition(trig, src, dest)
    transitions = 0
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(n):
        with dbe.begin() as conn:
            now = datetime.now(UTC)
            rid = conn.execute(insert(peer_records).values(
                state="open", data={"title": "Bench CAPA"}, version=1, created_by="emma",
                updated_at=now)).inserted_primary_key[0]
            conn.execute(AUDIT, {"record_id": rid, "at": now, "actor": "emma",
                                 "trigger": None, "from_state": None, "to_state": "open",
                                 "changes": {"title": [None, "Bench CAPA"]}})
        for trig, actor, data in LIFE:
            with dbe.begin() as conn:  # one stateless step: load, fire, write back, audit
                state, stored, version = conn.execute(LOAD, {"rid": rid}).one()
                model = Row(state)
                machine.add_model(model, initial=state)
                try:
                    getattr(model, trig)()
                finally:
                    machine.remove_model(model)
                now = datetime.now(UTC)
                done = conn.execute(SAVE, {"rid": rid, "v0": version, "state": model.state,
                                           "data": {**stored, **data}, "version": version + 1,
                                           "updated_at": now})
                assert done.rowcount == 1
                conn.execute(AUDIT, {"record_id": rid, "at": now, "actor": actor,
                                     "trigger": trig, "from_state": state,
                                     "to_state": model.state, "changes": data or None})
            transitions += 1
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    with dbe.connect() as conn:
        closed = conn.execute(select(peer_records.c.id).where(
            peer_records.c.state == "closed")).all()
    assert len(closed) == n, "the peer did not close every CAPA"
    dbe.dispose()
    return {"transitions": transitions, "seconds": elapsed,
            "transitions_per_s": transitions / elapsed, "transitions_per_cpu_s": transitions / cpu}


def engine_round(url: str, n: int) -> dict[str, Any]:
    """Drive ``n`` CAPAs with this engine (bench/engine.py's workload)."""
    from bench import engine as bench_engine

    engine = bench_engine.setup(url)
    transitions = 0
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(n):
        transitions += bench_engine.life(engine)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    engine.sessions.kw["bind"].dispose()
    return {"transitions": transitions, "seconds": elapsed,
            "transitions_per_s": transitions / elapsed, "transitions_per_cpu_s": transitions / cpu}


def fresh_url(base: str | None) -> str:
    if base:
        if base.startswith("postgresql"):
            admin = create_engine(base, isolation_level="AUTOCOMMIT")
            with admin.connect() as c:
                c.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
                c.execute(text("CREATE SCHEMA public"))
            admin.dispose()
        return base
    return f"sqlite:///{tempfile.mkdtemp(prefix='qms-peer-')}/peer.db"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=300, help="CAPA records per round")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of each (medians reported)")
    ap.add_argument("--only", choices=("engine", "peer"), help="run one side only")
    args = ap.parse_args()
    base = os.environ.get("QMS_BENCH_DATABASE_URL")
    sides = [args.only] if args.only else ["engine", "peer"]
    rates: dict[str, list[float]] = {s: [] for s in sides}
    cpu_rates: dict[str, list[float]] = {s: [] for s in sides}
    for i in range(args.rounds):
        order = sides if i % 2 == 0 else list(reversed(sides))
        for side in order:
            url = fresh_url(base)
            r = (engine_round if side == "engine" else peer_round)(url, args.n)
            rates[side].append(r["transitions_per_s"])
            cpu_rates[side].append(r["transitions_per_cpu_s"])
            print(f"round {i + 1} {side}: {r['transitions_per_s']:.0f} transitions/s, "
                  f"{r['transitions_per_cpu_s']:.0f} per CPU-second", flush=True)
    result: dict[str, Any] = {
        "n": args.n, "rounds": args.rounds,
        "db": "postgresql" if (base or "").startswith("postgresql") else "sqlite",
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    for side in sides:
        result[f"{side}_transitions_per_s"] = round(statistics.median(rates[side]), 1)
        result[f"{side}_runs"] = [round(x, 1) for x in rates[side]]
        result[f"{side}_transitions_per_cpu_s"] = round(statistics.median(cpu_rates[side]), 1)
    if len(sides) == 2:
        result["engine_to_peer"] = round(
            result["engine_transitions_per_s"] / result["peer_transitions_per_s"], 3)
        # the same ratio in this process's CPU time (less dependent on the machine's load)
        result["engine_to_peer_cpu"] = round(
            result["engine_transitions_per_cpu_s"] / result["peer_transitions_per_cpu_s"], 3)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
