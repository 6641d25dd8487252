"""Fast, consistent test data for benchmarks: tens of thousands of records in seconds.

``generate(url, records=50_000)`` builds the schema with ``alembic upgrade head``, publishes
the shipped definitions, creates users, then runs a handful of *template* records through the
real engine (``Engine.start`` / ``Engine.fire``). Every other record is a clone of a template
written with bulk Core inserts: its record row, its tasks (open for the current state, done
for the states it left) and its audit events. A clone is what the engine would have written
for the same steps with other people, another title and another time:

* ids, numbers (``PREFIX-YEAR-NNNN``, gap-free, ``record_counters`` bumped) and the people
  (creator, owner) are substituted in the record row, its data, its tasks and its events;
* every datetime is shifted to the clone's creation time (so due dates and overdue tasks
  spread over the past year);
* audit events are re-chained (``record:<id>``, seq, prev_hash, keyed hash) and the record
  row is re-sealed, with the same key as the engine: ``qms verify-audit`` passes.

Templates with signatures, links or timers are kept as real records but not cloned (their
MACs and links name the record); outbox rows are not cloned (no page reads them).

Reusable by other benchmarks::

    from bench.datagen import generate
    info = generate("sqlite:////tmp/x.db", records=50_000)
    info["engine"]            # an Engine on that database, same key
    info["hot_user"]          # "olga": 500 open tasks (default)
    info["samples"]           # record numbers worth measuring
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

from sqlalchemy import func, insert, select, text
from sqlalchemy.orm import Session

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
from workflow.signatures.mac import VouchedSignature
from workflow.spec.load import load_directory

KEY = bytes.fromhex("22" * 32)
PASSWORD = "Bench-Password-2026!"
BATCH = 5000

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
    dbe = db.make_engine(url)
    db.upgrade(dbe)
    return Engine(db.make_sessionmaker(dbe), KEY, registry=Registry())


def _people(engine: Engine, hot_user: str, rng: random.Random) -> dict[str, list[str]]:
    """Users by kind; the hot user holds capa_owner and employee only (no QA role: her inbox
    is her 500 tasks, not the thousands of claimable QA tasks)."""
    kinds: dict[str, list[str]] = {
        "hot": [hot_user],
        "qa": [f"qa{i:02d}" for i in range(10)],
        "owner": [f"owner{i:02d}" for i in range(30)],
        "employee": [f"emp{i:03d}" for i in range(200)],
    }
    roles = {"hot": ("capa_owner", "employee"), "qa": ("qa", "employee"),
             "owner": ("capa_owner", "change_owner", "deviation_owner", "employee"),
             "employee": ("employee",)}
    policy = Policy(totp_required_roles=())
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
        # only the people a benchmark logs in as get a (slow to hash) password
        for name in (hot_user, kinds["qa"][0]):
            passwords.set_password(s, identity.get_user(s, name), PASSWORD, actor=system,
                                   policy=policy)
    return kinds


# --------------------------------------------------------------------------- templates
# Template people: TC creates, TQ does the QA steps, TO owns. Clones substitute TC and TO.
TC, TQ, TO = "emp000", "qa00", "owner00"


def _templates(engine: Engine) -> dict[str, str]:
    """Template records made by the real engine; returns kind -> record number."""
    capa = {"title": "Template CAPA", "description": "Template description"}
    out: dict[str, str] = {}
    f = engine.fire

    def new(kind: str, wf: str, data: dict[str, Any], who: str = TC) -> str:
        out[kind] = engine.start(wf, who, data).number
        return out[kind]

    new("capa_open", "capa", capa)
    n = new("capa_investigation", "capa", capa)
    f(n, "assign", TQ, {"owner": TO})
    n = new("capa_action_plan", "capa", capa)
    f(n, "assign", TQ, {"owner": TO})
    f(n, "submit_root_cause", TO, {"root_cause_category": "method",
                                   "root_cause": "The work instruction was ambiguous."})
    new("deviation_reported", "deviation", {
        "title": "Template deviation", "description": "Observed during the shift.",
        "occurred_on": "2026-01-05", "discovered_on": "2026-01-05", "area": "Packaging",
        "immediate_actions": "Line stopped, material quarantined."})
    new("cr_draft", "change_request", {"title": "Template change",
                                       "description": "Replace the filter housing."})
    n = new("cr_withdrawn", "change_request", {"title": "Template change",
                                               "description": "No longer needed."})
    f(n, "withdraw", TC, reason="Superseded by another change.")
    # a real signed record for record-page benchmarks (not cloned: its MAC names it)
    n = engine.start("capa", TC, {**capa, "title": "Signed CAPA with a longer history"}).number
    f(n, "assign", TQ, {"owner": TO})
    f(n, "submit_root_cause", TO, {"root_cause_category": "method", "root_cause": "rc"})
    acts = [{"description": "Rewrite WI-12", "responsible": TO, "due": "2026-12-31"}]
    f(n, "submit_plan", TO, {"actions": acts, "effectiveness_criteria": "no recurrence"})
    f(n, "reject_plan", TQ, {"plan_rejection_reason": "vague"}, reason="too vague")
    f(n, "submit_plan", TO, {"actions": acts, "effectiveness_criteria": "none in 90 days"})
    f(n, "approve_plan", TQ, signature=VouchedSignature(TQ, "benchmark"))
    out["signed"] = n
    return out


def _load_template(s: Session, number: str) -> dict[str, Any]:
    rec = s.execute(select(Record.__table__).where(Record.number == number)).mappings().one()
    rid = rec["id"]
    for model in (Signature, Timer):
        if s.execute(select(func.count()).select_from(model).where(
                model.record_id == rid)).scalar():
            raise ValueError(f"{number}: templates with {model.__tablename__} are not cloned")
    if s.execute(select(func.count()).select_from(RecordLink).where(
            (RecordLink.source_id == rid) | (RecordLink.target_id == rid))).scalar():
        raise ValueError(f"{number}: templates with links are not cloned")
    tasks = s.execute(select(Task.__table__).where(Task.record_id == rid).order_by(Task.id)
                      ).mappings().all()
    events = s.execute(select(AuditEvent.__table__).where(AuditEvent.record_id == rid)
                       .order_by(AuditEvent.seq)).mappings().all()
    return {"record": dict(rec), "tasks": [dict(t) for t in tasks],
            "events": [dict(e) for e in events]}


# --------------------------------------------------------------------------- cloning


def _subst(value: Any, names: dict[str, str], title: tuple[str, str]) -> Any:
    """Replace template usernames and the template title inside a JSON value."""
    if isinstance(value, str):
        if value == title[0]:
            return title[1]
        return names.get(value, value)
    if isinstance(value, list):
        return [_subst(v, names, title) for v in value]
    if isinstance(value, dict):
        return {k: _subst(v, names, title) for k, v in value.items()}
    return value


class _Ids:
    def __init__(self, s: Session) -> None:
        self.record = s.execute(select(func.max(Record.id))).scalar() or 0
        self.task = s.execute(select(func.max(Task.id))).scalar() or 0
        self.event = s.execute(select(func.max(AuditEvent.id))).scalar() or 0
        self.counters = {(c.prefix, c.year): c.last_value
                         for c in s.execute(select(RecordCounter)).scalars()}

    def number(self, prefix: str, year: int) -> str:
        v = self.counters.get((prefix, year), 0) + 1
        self.counters[(prefix, year)] = v
        return f"{prefix}-{year}-{v:04d}"


def _clone(t: dict[str, Any], ids: _Ids, prefix: str, *, created_at: Any, title: str,
           users: dict[str, int], names: dict[str, str], full_names: dict[int, str],
           extra_updates: int = 0
           ) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    """One clone of template ``t``: (record row, task rows, event rows).

    ``extra_updates`` appends that many ``update`` events (the record's creator editing its
    description, one minute apart after the last template event): each bumps the record
    version, is chained like any other event, and the record row's data, version and seal
    reflect the last one (a cheap way to reach a million audit events)."""
    src = t["record"]
    shift = created_at - src["created_at"]
    uid = {users[k]: users[v] for k, v in names.items()}  # template user id -> clone user id
    ttl = (src["title"], title)

    def mv(value: Any) -> Any:
        return value + shift if value is not None else None

    ids.record += 1
    rid = ids.record
    rec = dict(src, id=rid, number=ids.number(prefix, created_at.year),
               title=title, data=_subst(src["data"], names, ttl),
               created_by_id=uid.get(src["created_by_id"], src["created_by_id"]),
               created_at=mv(src["created_at"]), updated_at=mv(src["updated_at"]),
               closed_at=mv(src["closed_at"]), due_original=mv(src["due_original"]),
               due_current=mv(src["due_current"]))
    tasks = []
    for task in t["tasks"]:
        ids.task += 1
        tasks.append(dict(task, id=ids.task, record_id=rid,
                          assignee_id=uid.get(task["assignee_id"], task["assignee_id"]),
                          closed_by_id=uid.get(task["closed_by_id"], task["closed_by_id"]),
                          opened_at=mv(task["opened_at"]), due_at=mv(task["due_at"]),
                          closed_at=mv(task["closed_at"])))
    events = []
    prev = audit.GENESIS
    for ev in t["events"]:
        ids.event += 1
        actor = uid.get(ev["actor_id"], ev["actor_id"])
        row = dict(ev, chain=audit.record_chain(rid), record_id=rid, at=mv(ev["at"]),
                   actor_id=actor, actor_name=full_names.get(actor, ev["actor_name"]),
                   changes=_subst(ev["changes"], names, ttl), prev_hash=prev)
        row.pop("id")
        row.pop("hash")
        row["hash"] = prev = canonical.keyed_hash(KEY, row)
        row["id"] = ids.event
        events.append(row)
    if extra_updates and events:
        last = events[-1]
        creator = rec["created_by_id"]
        data = dict(rec["data"])
        version = rec["version"]
        for k in range(1, extra_updates + 1):
            ids.event += 1
            version += 1
            old = data.get("description")
            data["description"] = f"{old or ''} (rev {k})" if k == 1 else \
                f"{str(old).rsplit(' (rev ', 1)[0]} (rev {k})"
            row = {"chain": last["chain"], "seq": last["seq"] + k,
                   "at": last["at"] + timedelta(minutes=k), "actor_id": creator,
                   "actor_name": full_names.get(creator, ""), "action": "update",
                   "record_id": rid, "record_version": version,
                   "definition_hash": last["definition_hash"], "transition": None,
                   "from_state": None, "to_state": None,
                   "changes": {"description": [old, data["description"]]},
                   "reason": "benchmark edit", "prev_hash": prev}
            row["hash"] = prev = canonical.keyed_hash(KEY, row)
            row["id"] = ids.event
            events.append(row)
        rec.update(data=data, version=version, updated_at=events[-1]["at"])
    rec["audit_head"] = prev
    rec["audit_seq"] = len(events)
    rec["seal"] = seals.record_seal(KEY, SimpleNamespace(**rec))
    return rec, tasks, events


def _batched(rows: Iterable[dict[str, Any]], n: int = BATCH) -> Iterator[list[dict[str, Any]]]:
    buf: list[dict[str, Any]] = []
    for r in rows:
        buf.append(r)
        if len(buf) >= n:
            yield buf
            buf = []
    if buf:
        yield buf


# --------------------------------------------------------------------------- entry point


def generate(url: str, *, records: int = 50_000, hot_user: str = "olga", hot_tasks: int = 500,
             seed: int = 1, log: Any = None, audit_events: int | None = None
             ) -> dict[str, Any]:
    """Build a database at ``url`` (wiped) with ``records`` records in total, where
    ``hot_user`` has exactly ``hot_tasks`` open tasks (80 % CAPAs she owns, 20 % change
    requests she drafts). Returns the engine, the people and sample record numbers.

    ``audit_events``: aim for about that many record audit events in total by appending
    ``update`` events to clones (see :func:`_clone`); by default only the templates' events
    are cloned (about 2-3 per record)."""
    rng = random.Random(seed)
    engine = _fresh(url)
    people = _people(engine, hot_user, rng)
    tpl_numbers = _templates(engine)
    now = clock.now()
    with engine.reader() as s:
        templates = {k: _load_template(s, n) for k, n in tpl_numbers.items() if k != "signed"}
        prefixes = {k: s.execute(select(Record.number).where(Record.number == n)).scalar()
                    .split("-")[0] for k, n in tpl_numbers.items()}
        users = {u.username: u.id for u in s.execute(select(User)).scalars()}
        full_names = {u.id: u.full_name for u in s.execute(select(User)).scalars()}
        ids = _Ids(s)

    # the plan: (template kind, creator, owner) per clone
    plan: list[tuple[str, str, str]] = []
    hot_capa = hot_tasks * 4 // 5
    for i in range(hot_capa):
        plan.append(("capa_investigation" if i % 2 else "capa_action_plan",
                     rng.choice(people["employee"]), hot_user))
    for _ in range(hot_tasks - hot_capa):
        plan.append(("cr_draft", hot_user, rng.choice(people["owner"])))
    mix = [("cr_withdrawn", 40), ("capa_open", 15), ("capa_investigation", 10),
           ("capa_action_plan", 10), ("deviation_reported", 15), ("cr_draft", 10)]
    kinds = [k for k, w in mix for _ in range(w)]
    rest = records - len(tpl_numbers) - len(plan)
    for _ in range(max(0, rest)):
        plan.append((rng.choice(kinds), rng.choice(people["employee"]),
                     rng.choice(people["owner"])))
    # numbers grow with creation time, as the engine hands them out
    ages = sorted((rng.randint(3600, 365 * 86400) for _ in plan), reverse=True)
    rng.shuffle(plan)

    # extra update events per clone, spread so the total comes close to audit_events
    extra = [0] * len(plan)
    if audit_events:
        base = sum(len(templates[k]["events"]) for k, _, _ in plan)
        missing = max(0, audit_events - base)
        if plan:
            q, r = divmod(missing, len(plan))
            extra = [q + (1 if i < r else 0) for i in range(len(plan))]
            rng.shuffle(extra)

    def rows() -> Iterator[tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]]:
        for (kind, creator, owner), age, more in zip(plan, ages, extra, strict=True):
            created = now - timedelta(seconds=age)
            yield _clone(templates[kind], ids, prefixes[kind], created_at=created,
                         title=_title(rng), users=users,
                         names={TC: creator, TO: owner}, full_names=full_names,
                         extra_updates=more)

    samples: dict[str, str] = dict(tpl_numbers)
    with engine.unit() as s:
        conn = s.connection()
        recs, tasks, events = [], [], []
        done = 0
        for (rec, ts, evs), (kind, _creator, owner) in zip(rows(), plan, strict=True):
            recs.append(rec)
            tasks += ts
            events += evs
            if owner == hot_user and kind == "capa_investigation":
                samples.setdefault("hot_investigation", rec["number"])
            if owner == hot_user and kind == "capa_action_plan":
                samples.setdefault("hot_action_plan", rec["number"])
            if len(recs) >= BATCH:
                conn.execute(insert(Record.__table__), recs)
                conn.execute(insert(Task.__table__), tasks)
                conn.execute(insert(AuditEvent.__table__), events)
                done += len(recs)
                recs, tasks, events = [], [], []
                if log:
                    log(f"{done + len(tpl_numbers)}/{records} records")
        if recs:
            conn.execute(insert(Record.__table__), recs)
            conn.execute(insert(Task.__table__), tasks)
            conn.execute(insert(AuditEvent.__table__), events)
        for (prefix, year), value in ids.counters.items():
            conn.execute(RecordCounter.__table__.delete().where(
                RecordCounter.prefix == prefix, RecordCounter.year == year))
            conn.execute(insert(RecordCounter.__table__),
                         {"prefix": prefix, "year": year, "last_value": value})
        if conn.dialect.name == "postgresql":
            for table in ("records", "tasks", "audit_events"):
                conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                  f"(SELECT max(id) FROM {table}))"))
    if conn.dialect.name == "sqlite":
        with engine.sessions.kw["bind"].connect() as c:
            c.exec_driver_sql("ANALYZE")
    else:
        with engine.sessions.kw["bind"].connect() as c:
            c.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("ANALYZE")
    return {"engine": engine, "people": people, "hot_user": hot_user, "password": PASSWORD,
            "samples": samples, "records": records}
