"""Honest test data for benchmarks, fast enough for a million records.

``generate(url, records=50_000)`` builds the schema with ``alembic upgrade head``, publishes
the shipped definitions and creates users, then runs *template* records through their real
lifecycles with the real engine (``Engine.start`` / ``Engine.fire``, bench/lifecycles.py):
CAPAs to closure (plan approval, implementation, verification, an effectiveness check 30-90
days later, signed closure; sometimes a rejected plan or an early check), deviations that
close or raise a CAPA, change requests through the two-person approval and their training
assignments, standalone trainings (some overdue first), audit trail reviews, and records left
in every open state. The clock is moved between the steps by realistic durations, so each
variant of a scenario has its own cycle times.

Every other record is a clone of a template *group* (a record with the records it raised)
written with bulk Core inserts: records, tasks, signatures, timers, links and audit events.
A clone is what the engine would have written for the same steps with other people, another
title and another time, spread over the last 14 months (a clone is never dated so late that
its last step would lie in the future):

* ids, numbers (``PREFIX-YEAR-NNNN``, gap-free, ``record_counters`` bumped), the people and
  the numbers of linked records are substituted in rows, data and events; dates in the data
  move with the clone;
* audit events are re-chained (``record:<id>``, seq, prev_hash, keyed hash), each signature
  is re-bound to the clone's content at that step (content hash from the replayed data, MAC)
  and the record row is re-sealed, with the same key as the engine: ``qms verify-audit``
  passes.

Outbox rows are not cloned (no page reads them).

Reusable by other benchmarks::

    from bench.datagen import generate
    info = generate("sqlite:////tmp/x.db", records=50_000)
    info["engine"]            # an Engine on that database, same key
    info["hot_user"]          # "olga": 500 open tasks (default)
    info["samples"]           # record numbers worth measuring

From the command line (a shared dataset; prints one JSON line)::

    python -m bench.datagen --records 1000000 --url sqlite:////work/benchdata/bench_1m.db
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from sqlalchemy import func, insert, select, text
from sqlalchemy.orm import Session

from bench.lifecycles import MIX, P, give_training
from workflow import canonical, clock
from workflow.audit import trail as audit
from workflow.db import engines as db
from workflow.db import seals
from workflow.db.models import (
    AuditEvent,
    Record,
    RecordCounter,
    RecordLink,
    Signature,
    Task,
    Timer,
    User,
)
from workflow.engine.core import Engine
from workflow.identity import enablement, passwords
from workflow.identity import users as identity
from workflow.identity.policy import Policy
from workflow.registry import Registry
from workflow.spec.content import covered_now
from workflow.spec.load import load_directory

KEY = bytes.fromhex("22" * 32)
PASSWORD = "Bench-Password-2026!"
BATCH = 5000
SPREAD_DAYS = 425  # clones are created over the last 14 months

WORDS = ("pump", "label", "filter", "mixer", "sensor", "valve", "batch", "cleaning", "tablet",
         "vial", "seal", "pressure", "temperature", "calibration", "deviation", "training",
         "document", "supplier", "software", "humidity", "capsule", "sterile", "audit", "line")


def _title(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(3)).capitalize() + f" issue {rng.randint(1, 999)}"


# --------------------------------------------------------------------------- setup


def _fresh(url: str) -> Engine:
    from sqlalchemy import create_engine

    if url.startswith("postgresql"):
        admin = create_engine(url, isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            c.execute(text("CREATE SCHEMA public"))
        admin.dispose()
    elif url.startswith("sqlite:///") and ":memory:" not in url:
        path = Path(url.removeprefix("sqlite:///"))
        for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            p.unlink(missing_ok=True)
    dbe = db.make_engine(url)
    db.upgrade(dbe)
    return Engine(db.make_sessionmaker(dbe), KEY, registry=Registry())


#: people by kind, the roles each kind holds, and which template person a kind stands in for
KINDS = {
    "qa": (("qa", "employee"), 10),
    "owner": (("capa_owner", "change_owner", "deviation_owner", "employee"), 30),
    "po": (("process_owner", "employee"), 5),
    "trainer": (("trainer", "training_coordinator", "employee"), 10),
    "employee": (("employee",), 200),
}
PREFIX = {"qa": "qa", "owner": "owner", "po": "po", "trainer": "trn", "employee": "emp"}


def _people(engine: Engine, hot_user: str) -> dict[str, list[str]]:
    """Users by kind; the hot user holds capa_owner and employee only (no QA role: her inbox
    is her 500 tasks, not the claimable QA tasks)."""
    kinds: dict[str, list[str]] = {"hot": [hot_user]}
    roles = {"hot": ("capa_owner", "employee")}
    for kind, (held, n) in KINDS.items():
        width = 3 if n > 99 else 2
        kinds[kind] = [f"{PREFIX[kind]}{i:0{width}d}" for i in range(n)]
        roles[kind] = held
    with engine.unit() as s:
        system = identity.system_user(s)
        for d in load_directory().values():
            engine.registry.publish(s, d, system, reason="benchmark data")
        for kind, names in kinds.items():
            for name in names:
                u = identity.create_user(s, name, f"{name.title()} Bench", actor=system,
                                         reason="benchmark data")
                for r in roles[kind]:
                    identity.grant_role(s, u, r, actor=system, reason="benchmark data")
                enablement.enable_for_system(s, u, reason="benchmark data")
    give_training(engine, P.Q2, P.TR)  # the template CAPAs' closer (the training gate)
    return kinds


def _passwords(engine: Engine, names: list[str]) -> None:
    """Only the people a benchmark logs in as get a (slow to hash) password; set at the real
    time, so no password policy sees it as old."""
    with engine.unit() as s:
        system = identity.system_user(s)
        for name in names:
            passwords.set_password(s, identity.get_user(s, name), PASSWORD, actor=system,
                                   policy=Policy(totp_required_roles=()))


# --------------------------------------------------------------------------- templates


def _load_group(s: Session, numbers: list[str]) -> dict[str, Any]:
    """The rows of a template group: records (root first), their tasks, signatures, timers,
    links and audit events."""
    recs = [dict(s.execute(select(Record.__table__).where(Record.number == n)).mappings().one())
            for n in numbers]
    ids = [r["id"] for r in recs]

    def rows(model: Any, *where: Any, order: Any = None) -> list[dict[str, Any]]:
        q = select(model.__table__).where(*where)
        return [dict(r) for r in s.execute(q.order_by(order) if order is not None else q)
                .mappings()]

    links = rows(RecordLink, RecordLink.source_id.in_(ids) | RecordLink.target_id.in_(ids))
    for link in links:
        if link["source_id"] not in ids or link["target_id"] not in ids:
            raise ValueError(f"{numbers}: a link leaves the template group")
    events = rows(AuditEvent, AuditEvent.record_id.in_(ids), order=AuditEvent.id)
    at = [e["at"] for e in events] + [r["created_at"] for r in recs]
    return {"records": recs, "links": links,
            "tasks": rows(Task, Task.record_id.in_(ids), order=Task.id),
            "signatures": {x["id"]: x for x in rows(Signature, Signature.record_id.in_(ids))},
            "timers": rows(Timer, Timer.record_id.in_(ids), order=Timer.id),
            "events": {rid: [e for e in events if e["record_id"] == rid] for rid in ids},
            "span": max(at) - recs[0]["created_at"], "size": len(recs)}


# --------------------------------------------------------------------------- cloning

_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_MOMENT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}")


class _Subst:
    """Replace template people, numbers and title inside JSON values; move dates."""

    def __init__(self, strings: dict[str, str], shift: timedelta) -> None:
        self.strings = strings
        self.shift = shift
        self.days = timedelta(days=round(shift.total_seconds() / 86400))

    def __call__(self, value: Any) -> Any:
        if isinstance(value, str):
            hit = self.strings.get(value)
            if hit is not None:
                return hit
            if len(value) == 10 and _DAY.match(value):
                return (date.fromisoformat(value) + self.days).isoformat()
            if len(value) > 18 and _MOMENT.match(value):
                try:
                    return (datetime.fromisoformat(value) + self.shift).isoformat()
                except ValueError:
                    return value
            return value
        if isinstance(value, list):
            return [self(v) for v in value]
        if isinstance(value, dict):
            return {k: self(v) for k, v in value.items()}
        return value


class _Ids:
    def __init__(self, s: Session) -> None:
        def top(col: Any) -> int:
            return s.execute(select(func.max(col))).scalar() or 0

        self.record, self.task, self.event = top(Record.id), top(Task.id), top(AuditEvent.id)
        self.sig, self.timer, self.link = top(Signature.id), top(Timer.id), top(RecordLink.id)
        self.counters = {(c.prefix, c.year): c.last_value
                         for c in s.execute(select(RecordCounter)).scalars()}

    def number(self, prefix: str, year: int) -> str:
        v = self.counters.get((prefix, year), 0) + 1
        self.counters[(prefix, year)] = v
        return f"{prefix}-{year}-{v:04d}"


Rows = dict[str, list[dict[str, Any]]]


def clone(g: dict[str, Any], ids: _Ids, *, created_at: datetime, title: str,
           users: dict[str, int], names: dict[str, str], full_names: dict[int, str],
           extra_updates: int = 0) -> Rows:
    """One clone of template group ``g``, created at ``created_at``: rows by table.

    ``extra_updates`` appends that many ``update`` events to the root record (its creator
    editing the description, one minute apart after its last event): each bumps the record
    version, is chained like any other event, and the record row's data, version and seal
    reflect the last one (a cheap way to reach a million audit events)."""
    root = g["records"][0]
    shift = created_at - root["created_at"]
    uid = {users[k]: users[v] for k, v in names.items()}  # template user id -> clone user id

    def mv(value: Any) -> Any:
        return value + shift if value is not None else None

    def who(value: int | None) -> int | None:
        return uid.get(value, value) if value is not None else None

    rid: dict[int, int] = {}
    numbers: dict[str, str] = {}
    for r in g["records"]:
        ids.record += 1
        rid[r["id"]] = ids.record
        prefix, _year, _n = r["number"].rsplit("-", 2)
        numbers[r["number"]] = ids.number(prefix, mv(r["created_at"]).year)
    sub = _Subst({**names, **numbers, root["title"]: title}, shift)
    out: Rows = {"records": [], "tasks": [], "signatures": [], "timers": [], "links": [],
                 "events": []}
    for r in g["records"]:
        new_id, number = rid[r["id"]], numbers[r["number"]]
        rec = dict(r, id=new_id, number=number, title=sub(r["title"]), data=sub(r["data"]),
                   created_by_id=who(r["created_by_id"]), created_at=mv(r["created_at"]),
                   updated_at=mv(r["updated_at"]), closed_at=mv(r["closed_at"]),
                   due_original=mv(r["due_original"]), due_current=mv(r["due_current"]))
        prev, data = audit.GENESIS, {}
        events = out["events"]
        for ev in g["events"][r["id"]]:
            changes = sub(ev["changes"])
            if ev["action"] in ("create", "update"):
                for name, (_old, new) in changes.items():
                    if new is None:
                        data.pop(name, None)
                    else:
                        data[name] = new
            elif ev["action"] == "sign":
                changes = _resign(g["signatures"], changes, out, ids, rec, data, ev, sub, mv,
                                  who, full_names)
            ids.event += 1
            actor = who(ev["actor_id"])
            row = dict(ev, chain=audit.record_chain(new_id), record_id=new_id, at=mv(ev["at"]),
                       actor_id=actor, actor_name=full_names.get(actor, ev["actor_name"]),
                       changes=changes, prev_hash=prev)
            row.pop("id")
            row.pop("hash")
            row["hash"] = prev = canonical.keyed_hash(KEY, row)
            row["id"] = ids.event
            events.append(row)
        if extra_updates and r is root:
            prev = _updates(rec, events[-1], extra_updates, ids, events, full_names)
        rec["audit_head"] = prev
        rec["audit_seq"] = events[-1]["seq"]
        rec["seal"] = seals.record_seal(KEY, SimpleNamespace(**rec))
        out["records"].append(rec)
    for t in g["tasks"]:
        ids.task += 1
        out["tasks"].append(dict(t, id=ids.task, record_id=rid[t["record_id"]],
                                 assignee_id=who(t["assignee_id"]),
                                 closed_by_id=who(t["closed_by_id"]),
                                 opened_at=mv(t["opened_at"]), due_at=mv(t["due_at"]),
                                 closed_at=mv(t["closed_at"])))
    for t in g["timers"]:
        ids.timer += 1
        out["timers"].append(dict(t, id=ids.timer, record_id=rid[t["record_id"]],
                                  fire_at=mv(t["fire_at"])))
    for link in g["links"]:
        ids.link += 1
        out["links"].append(dict(link, id=ids.link, source_id=rid[link["source_id"]],
                                 target_id=rid[link["target_id"]],
                                 created_at=mv(link["created_at"]),
                                 created_by_id=who(link["created_by_id"])))
    return out


def _resign(sigs: dict[int, Any], changes: dict[str, Any], out: Rows, ids: _Ids,
            rec: dict[str, Any], data: dict[str, Any], ev: dict[str, Any], sub: _Subst,
            mv: Any, who: Any, full_names: dict[int, str]) -> dict[str, Any]:
    """The clone's signature for a ``sign`` event: bound to the clone's content at that step
    (as the engine binds it), MAC'd with the clone's number; returns the event's changes."""
    info = dict(changes["signature"])
    t = sigs[info["id"]]
    ids.sig += 1
    content = canonical.sha256(canonical.record_content(
        rec["number"], rec["workflow_key"], ev["definition_hash"] or rec["definition_hash"],
        data))
    signer = who(t["signer_id"])
    row = dict(t, id=ids.sig, record_id=rec["id"], signer_id=signer,
               signer_name=full_names[signer], signer_username=sub(t["signer_username"]),
               signed_at=mv(t["signed_at"]), content_hash=content)
    row["mac"] = seals.compute_mac(KEY, SimpleNamespace(**row), rec["number"])
    out["signatures"].append(row)
    info.update(id=ids.sig, content_hash=content)
    if "covered_hash" in info:
        info["covered_hash"] = covered_now(info["covers"], info["free"], data)
    return {**changes, "signature": info}


def _updates(rec: dict[str, Any], last: dict[str, Any], n: int, ids: _Ids,
             events: list[dict[str, Any]], full_names: dict[int, str]) -> str:
    creator = rec["created_by_id"]
    data = dict(rec["data"])
    version = rec["version"]
    prev = last["hash"]
    for k in range(1, n + 1):
        ids.event += 1
        version += 1
        old = data.get("description")
        data["description"] = f"{old or ''} (rev {k})" if k == 1 else \
            f"{str(old).rsplit(' (rev ', 1)[0]} (rev {k})"
        row = {"chain": last["chain"], "seq": last["seq"] + k,
               "at": last["at"] + timedelta(minutes=k), "actor_id": creator,
               "actor_name": full_names.get(creator, ""), "action": "update",
               "record_id": rec["id"], "record_version": version,
               "definition_hash": last["definition_hash"], "transition": None,
               "from_state": None, "to_state": None,
               "changes": {"description": [old, data["description"]]},
               "reason": "benchmark edit", "prev_hash": prev}
        row["hash"] = prev = canonical.keyed_hash(KEY, row)
        row["id"] = ids.event
        events.append(row)
    rec.update(data=data, version=version, updated_at=events[-1]["at"])
    return prev


# --------------------------------------------------------------------------- entry point

TABLES = (("records", Record), ("links", RecordLink), ("tasks", Task),
          ("signatures", Signature), ("timers", Timer), ("events", AuditEvent))


def _cast(people: dict[str, list[str]], rng: random.Random, hot: str | None,
          hot_as: str) -> dict[str, str]:
    """Other people for a clone: template person -> clone person (never one person twice)."""
    c, t = rng.sample(people["employee"], 2)
    q, q2 = rng.sample(people["qa"], 2)
    names = {P.C: c, P.T: t, P.O: rng.choice(people["owner"]), P.Q: q, P.Q2: q2,
             P.PO: rng.choice(people["po"]), P.TR: rng.choice(people["trainer"])}
    if hot:
        names[hot_as] = hot
    return names


def generate(url: str, *, records: int = 50_000, hot_user: str = "olga", hot_tasks: int = 500,
             seed: int = 1, log: Any = None, audit_events: int | None = None,
             workers: int | None = None) -> dict[str, Any]:
    """Build a database at ``url`` (wiped) with about ``records`` records in total (a clone
    group may overshoot by a record or two), where ``hot_user`` has exactly ``hot_tasks``
    open tasks (80 % CAPAs she owns, 20 % change requests she drafts). Returns the engine,
    the people and sample record numbers.

    ``workers``: on SQLite, the clones are built by that many processes (default: up to 4,
    one a core; bench/bulkload.py); 1 keeps the sequential path.

    ``audit_events``: aim for about that many record audit events in total by appending
    ``update`` events to clones (see :func:`clone`)."""
    rng = random.Random(seed)
    real_now = clock.now()
    start = real_now - timedelta(days=SPREAD_DAYS + 30)
    clock.set(start)
    try:
        engine = _fresh(url)
        people = _people(engine, hot_user)
        groups: dict[str, list[list[str]]] = {}
        for kind, (scenario, _w, variants) in MIX.items():
            for _ in range(variants):
                clock.set(start + timedelta(hours=rng.randint(0, 72)))
                groups.setdefault(kind, []).append(scenario(engine, rng))
    finally:
        clock.reset()
    _passwords(engine, [hot_user, people["qa"][0]])
    with engine.reader() as s:
        templates = {k: [_load_group(s, g) for g in v] for k, v in groups.items()}
        users = {u.username: u.id for u in s.execute(select(User)).scalars()}
        full_names = {u.id: u.full_name for u in s.execute(select(User)).scalars()}
        ids = _Ids(s)
    made = sum(len(g) for v in groups.values() for g in v)

    # the plan: (kind, variant, cast) per clone, then a creation time each
    plan: list[tuple[str, int, dict[str, str]]] = []
    hot_capa = hot_tasks * 4 // 5
    for i in range(hot_tasks):
        kind = ("capa_investigation" if i % 2 else "capa_action_plan") if i < hot_capa \
            else "cr_draft"
        plan.append((kind, rng.randrange(len(templates[kind])),
                     _cast(people, rng, hot_user, P.O if i < hot_capa else P.C)))
    kinds, weights = zip(*((k, w) for k, (_s, w, _v) in MIX.items()), strict=True)
    total = made + sum(templates[k][v]["size"] for k, v, _ in plan)
    while total < records:
        kind = rng.choices(kinds, weights)[0]
        v = rng.randrange(len(templates[kind]))
        plan.append((kind, v, _cast(people, rng, None, "")))
        total += templates[kind][v]["size"]
    latest = real_now - timedelta(hours=1)
    when = []
    for kind, v, _ in plan:
        span = templates[kind][v]["span"].total_seconds()
        room = max(0.0, SPREAD_DAYS * 86400 - span)
        when.append(latest - timedelta(seconds=span + rng.random() * room))
    order = sorted(range(len(plan)), key=when.__getitem__)  # numbers grow with time

    extra = [0] * len(plan)
    if audit_events:
        base = sum(sum(len(e) for e in templates[k][v]["events"].values()) for k, v, _ in plan)
        q, r = divmod(max(0, audit_events - base), len(plan))
        extra = [q + (1 if i < r else 0) for i in range(len(plan))]
        rng.shuffle(extra)

    def clones() -> Iterator[tuple[int, Rows]]:
        for i in order:
            kind, v, names = plan[i]
            yield i, clone(templates[kind][v], ids, created_at=when[i], title=_title(rng),
                            users=users, names=names, full_names=full_names,
                            extra_updates=extra[i])

    samples: dict[str, str] = {"signed": groups["capa_closed"][0][0]}
    for kind, gs in groups.items():
        samples.setdefault(kind, gs[0][0])
    t0 = time.perf_counter()
    if url.startswith("sqlite") and workers != 1:
        return _generate_parallel(engine, url, templates=templates, plan=plan, when=when,
                                  order=order, extra=extra, rng=rng, users=users,
                                  full_names=full_names, ids=ids, samples=samples,
                                  made=made, people=people, hot_user=hot_user,
                                  workers=workers, log=log)
    with engine.unit() as s:
        conn = s.connection()
        buf: Rows = {k: [] for k, _ in TABLES}
        done = made

        def flush() -> None:
            for k, model in TABLES:
                if buf[k]:
                    conn.execute(insert(model.__table__), buf[k])
                    buf[k] = []

        for i, rows in clones():
            kind, _v, names = plan[i]
            for k, _m in TABLES:
                buf[k] += rows[k]
            if names.get(P.O) == hot_user and kind in ("capa_investigation", "capa_action_plan"):
                samples.setdefault("hot_" + kind.removeprefix("capa_"),
                                   rows["records"][0]["number"])
            done += len(rows["records"])
            if len(buf["records"]) >= BATCH:
                flush()
                if log:
                    rate = (done - made) / (time.perf_counter() - t0)
                    log(f"{done}/{records} records ({rate:.0f}/s)")
        flush()
        for (prefix, year), value in ids.counters.items():
            conn.execute(RecordCounter.__table__.delete().where(
                RecordCounter.prefix == prefix, RecordCounter.year == year))
            conn.execute(insert(RecordCounter.__table__),
                         {"prefix": prefix, "year": year, "last_value": value})
        if conn.dialect.name == "postgresql":
            for table in ("records", "tasks", "audit_events", "signatures", "timers",
                          "record_links"):
                conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                  f"(SELECT max(id) FROM {table}))"))
    dialect = conn.dialect.name
    with engine.sessions.kw["bind"].connect() as c:
        if dialect == "sqlite":
            c.exec_driver_sql("ANALYZE")
        else:
            c.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("ANALYZE")
    return {"engine": engine, "people": people, "hot_user": hot_user, "password": PASSWORD,
            "samples": samples, "records": done}


def _generate_parallel(engine: Engine, url: str, *, templates: Any, plan: Any, when: Any,
                       order: list[int], extra: list[int], rng: random.Random, users: Any,
                       full_names: Any, ids: _Ids, samples: dict[str, str], made: int,
                       people: Any, hot_user: str, workers: int | None, log: Any
                       ) -> dict[str, Any]:
    from bench import bulkload

    titles = [_title(rng) for _ in order]  # drawn in the order the sequential path draws
    dbe = engine.sessions.kw["bind"]
    dbe.dispose()
    numbers, ids = bulkload.load(dbe, templates=templates, plan=plan, when=when, order=order,
                                 extra=extra, titles=titles, users=users,
                                 full_names=full_names, ids=ids, tables=TABLES,
                                 workers=workers, log=log)
    done = made
    for i in order:
        kind, v, names = plan[i]
        if names.get(P.O) == hot_user and kind in ("capa_investigation", "capa_action_plan"):
            samples.setdefault("hot_" + kind.removeprefix("capa_"), numbers[i])
        done += templates[kind][v]["size"]
    with engine.unit() as s:
        conn = s.connection()
        for (prefix, year), value in ids.counters.items():
            conn.execute(RecordCounter.__table__.delete().where(
                RecordCounter.prefix == prefix, RecordCounter.year == year))
            conn.execute(insert(RecordCounter.__table__),
                         {"prefix": prefix, "year": year, "last_value": value})
    with dbe.connect() as c:
        c.exec_driver_sql("ANALYZE")
    return {"engine": engine, "people": people, "hot_user": hot_user, "password": PASSWORD,
            "samples": samples, "records": done}


def load(url: str, info_file: str) -> dict[str, Any]:
    """A dataset generated earlier (``--info`` file beside it), opened as :func:`generate`
    returns it: the engine on ``url`` (same key), the people, the password and the samples.
    The database is used as it is (run ``qms db upgrade`` on it after a migration)."""
    info = json.loads(Path(info_file).read_text())
    engine = Engine(db.make_sessionmaker(db.make_engine(url)), KEY, registry=Registry())
    return {"engine": engine, "people": info["people"], "hot_user": info["hot_user"],
            "password": info["password"], "samples": info["samples"],
            "records": info["records"]}


def copy_to_postgresql(sqlite_path: str, url: str, log: Any = None) -> int:
    """Copy a generated SQLite database into PostgreSQL (wiped, schema from ``alembic upgrade
    head``) with COPY: the same rows, ids, hashes and seals, so both databases hold the same
    dataset. The SQLite file must be at the same schema revision (``qms db upgrade`` it
    first). Returns the number of rows copied."""
    import sqlite3

    import psycopg

    _fresh(url)
    src = sqlite3.connect(sqlite_path)
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    n = 0
    with psycopg.connect(dsn) as pg:
        # the copy is not the application: append-only triggers and foreign keys are not
        # fired for it (as in a restore); SQLite stores naive UTC, so the session is in UTC
        pg.execute("SET session_replication_role = replica")
        pg.execute("SET TIME ZONE 'UTC'")
        tables = [t.name for t in Record.metadata.sorted_tables]
        for table in tables:  # the schema was just built: nothing to replace
            if pg.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone():
                raise RuntimeError(f"{table} is not empty after the schema was built")
        # secondary indexes are built once after the copy (a sort each), not row by row
        indexes = pg.execute(
            "SELECT indexname, indexdef FROM pg_indexes i WHERE schemaname = 'public' AND "
            "NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)"
        ).fetchall()
        for name, _ddl in indexes:
            pg.execute(f'DROP INDEX "{name}"')
        for table in tables:
            cols = [c.name for c in Record.metadata.tables[table].columns]
            names = ", ".join(f'"{c}"' for c in cols)
            with pg.cursor().copy(f"COPY {table} ({names}) FROM STDIN") as cp:
                for row in src.execute(f"SELECT {names} FROM {table}"):
                    cp.write_row(row)
                    n += 1
            if log:
                log(f"copied {table} ({n} rows so far)")
            if "id" in cols:
                pg.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                           f"coalesce((SELECT max(id) FROM {table}), 1))")
        # derived tables the triggers fill (skipped by the replica role): the record search
        if (pg.execute("SELECT to_regclass('record_search')").fetchone() or [None])[0]:
            pg.execute("INSERT INTO record_search (record_id, doc) "
                       "SELECT id, record_search_doc(number, title, data) FROM records")
        pg.execute("SET maintenance_work_mem = '512MB'")
        for name, ddl in indexes:
            pg.execute(ddl)
            if log:
                log(f"index {name} built")
        pg.commit()
    # VACUUM as well as ANALYZE: a freshly copied table has no visibility map, so every
    # index-only scan (the capped search count, the KPI counts) would fetch the heap too,
    # and the figures measured on the copy would be worse than on a database in service
    with psycopg.connect(dsn, autocommit=True) as pg:
        pg.execute("VACUUM (ANALYZE)")
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description="Generate a benchmark database (wiped first).")
    ap.add_argument("--url", required=True, help="sqlite:////path.db or postgresql+psycopg://...")
    ap.add_argument("--records", type=int, default=50_000)
    ap.add_argument("--tasks", type=int, default=500, help="open tasks of the hot user")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workers", type=int, help="processes building clones (SQLite; "
                    "default: one a core, up to 4; 1: sequential)")
    ap.add_argument("--info", help="also write the JSON line to this file (see load())")
    ap.add_argument("--copy-from", help="a generated SQLite file: copy it to --url "
                    "(PostgreSQL) instead of generating")
    args = ap.parse_args()
    if args.copy_from:
        t0 = time.perf_counter()
        rows = copy_to_postgresql(args.copy_from, args.url,
                                  log=lambda m: print(m, file=sys.stderr, flush=True))
        print(json.dumps({"url": args.url, "copied_from": args.copy_from, "rows": rows,
                          "seconds": round(time.perf_counter() - t0, 1)}))
        return
    t0 = time.perf_counter()
    info = generate(args.url, records=args.records, hot_tasks=args.tasks, seed=args.seed,
                    workers=args.workers, log=lambda m: print(m, file=sys.stderr, flush=True))
    line = json.dumps({"url": args.url, "records": info["records"],
                       "seconds": round(time.perf_counter() - t0, 1),
                       "hot_user": info["hot_user"], "people": info["people"],
                       "password": info["password"], "samples": info["samples"],
                       "seed": args.seed, "hot_tasks": args.tasks,
                       "at": datetime.now(UTC).isoformat(timespec="seconds")})
    if args.info:
        Path(args.info).write_text(line + "\n")
    print(line)


if __name__ == "__main__":
    main()
