"""verify-audit's checks beyond the record chains: everything else the engine relies on.

* the non-record chains (``system``...): links and hashes, and the chain head's seal, so a cut
  tail with a rewound head is named;
* published definitions: each version's source still has its recorded content hash;
* users, role grants and API tokens: each row's keyed seal;
* the system chain replayed against those tables: every grant and revocation, token and
  revocation, account, password change, lock and unlock, deactivation is explained by its
  event, and every such event by its row;
* record numbers: gap-free per prefix and year, and the counters agree with the records;
* the protections themselves: the append-only triggers (on PostgreSQL enabled ALWAYS, so
  ``session_replication_role = replica`` does not bypass them).

Each check yields :class:`~workflow.audit.trail.ChainProblem` s (kind, where, message) and
keeps going after a problem.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, text

from workflow import canonical
from workflow.audit.chains import STREAM
from workflow.audit.trail import EVENT_COLUMNS, ChainProblem, row_payload, verify_chain
from workflow.db import roles
from workflow.db.models import (
    ApiToken,
    AuditChain,
    AuditEvent,
    DefinitionVersion,
    Record,
    RecordCounter,
    RoleGrant,
    SigningEnablement,
    User,
)
from workflow.db.seals import seal_ok, where
from workflow.errors import DefinitionTampered
from workflow.keyring import Key
from workflow.spec.load import published

_events = AuditEvent.__table__
_chains = AuditChain.__table__

#: the append-only tables (their one catalogue: workflow/db/roles.py) and the triggers
#: protecting them (migrations 0001, 0003, 0008)
APPEND_ONLY = roles.APPEND_ONLY
SQLITE_TRIGGERS = tuple(f"{t}_no_{verb}" for t in APPEND_ONLY for verb in ("update", "delete"))
POSTGRES_TRIGGERS = tuple(f"{t}_{kind}" for t in APPEND_ONLY
                          for kind in ("append_only", "no_truncate"))
#: the system events the security tables are replayed from
REPLAYED = ("user_created", "user_deactivated", "role_granted", "role_revoked",
            "password_changed", "password_reset", "account_locked", "account_unlocked",
            "api_token_created", "api_token_revoked")


# --------------------------------------------------------------------------- system chains


def system_chains(conn: Connection, key: Key, replayed: list[Any]) -> Iterator[Any]:
    """Verify every non-record chain and its head's seal; yields (chains, events) counts
    as a tuple first, then problems. The events the security tables are replayed from are
    appended to ``replayed``."""
    heads = conn.execute(select(_chains).order_by(_chains.c.name)).all()
    chains = events = 0
    problems: list[ChainProblem] = []
    for head in heads:
        evs: list[Any] = list(conn.execute(
            select(*EVENT_COLUMNS).where(_events.c.chain == head.name).order_by(_events.c.seq),
            execution_options=STREAM))
        chains += 1
        events += len(evs)
        problems.extend(verify_chain(head.name, evs, head.seq, head.head, key, row_payload))
        if not seal_ok(key, "audit_chains", head):
            problems.append(ChainProblem(
                head.name, None, None,
                f"the chain head (#{head.seq}) does not match its seal: it was changed outside "
                "the application (e.g. rewound after events were cut from the end)",
                kind="seal"))
        replayed.extend(e for e in evs if e.action in REPLAYED)
    yield chains, events
    yield from problems


# --------------------------------------------------------------------------- definitions


def definitions(conn: Connection) -> Iterator[ChainProblem]:
    """Each published version's source still hashes to its recorded content hash."""
    t = DefinitionVersion.__table__
    for row in conn.execute(select(t.c.id, t.c.key, t.c.version, t.c.source, t.c.content_hash)
                            .order_by(t.c.key, t.c.version)):
        try:
            published(row)
        except DefinitionTampered as exc:
            yield ChainProblem(f"definition {row.key} v{row.version}", None, None, exc.message,
                               kind="definition")


# --------------------------------------------------------------------------- seals


def _rows(conn: Connection, model: Any) -> list[Any]:
    t = model.__table__
    return list(conn.execute(select(t).order_by(t.c.id)))


def seals(key: Key, tables: dict[str, list[Any]]) -> Iterator[ChainProblem]:
    """Every row of users, role_grants and api_tokens matches its seal."""
    for table, rows in tables.items():
        for row in rows:
            if not seal_ok(key, table, row):
                state = "carries no seal" if not row.seal else "does not match its seal"
                yield ChainProblem(table, None, None,
                                   f"{where(table, row)} {state}: it was inserted or changed "
                                   "outside the application", kind="seal")


# --------------------------------------------------------------------------- replay


def _at(value: Any) -> str | None:
    """A time as the events' JSON holds it."""
    return None if value is None else canonical.dumps(value).strip('"')


def replay(tables: dict[str, list[Any]], events: list[Any]) -> Iterator[ChainProblem]:
    """The security tables against the system chain: rows without their event and events
    without their row, each named."""
    users = {u.id: u for u in tables["users"]}
    name = {u.id: u.username for u in tables["users"]}

    def problem(where_: str, message: str) -> ChainProblem:
        return ChainProblem(where_, None, None, message, kind="replay")

    by_action: dict[str, list[Any]] = defaultdict(list)
    for ev in events:
        by_action[ev.action].append(ev)

    def who(ev: Any) -> str:
        u = ev.changes.get("username")
        return u[1] if isinstance(u, list) else str(u)

    # role grants: one role_granted event per grant (user, role, time), and back
    granted = Counter((who(e), (e.changes.get("role") or [None, None])[1], e.at)
                      for e in by_action["role_granted"])
    expiry = {(who(e), (e.changes.get("role") or [None, None])[1], e.at):
              e.changes.get("expires_at") for e in by_action["role_granted"]}
    revoked = Counter((who(e), (e.changes.get("role") or [None, None])[0], e.at)
                      for e in by_action["role_revoked"])
    revoked_rows: set[tuple[str, str, datetime]] = set()
    for g in tables["role_grants"]:
        k = (name.get(g.user_id, f"#{g.user_id}"), g.role, g.granted_at)
        if granted[k] > 0:
            granted[k] -= 1
            if expiry.get(k) != _at(g.expires_at):
                yield problem("role_grants", f"{where('role_grants', g)} expires at "
                              f"{_at(g.expires_at)} but was granted until {expiry.get(k)}")
        else:
            yield problem("role_grants", f"{where('role_grants', g)} has no role_granted event "
                          "in the system audit trail: inserted outside the application")
        if g.revoked_at is not None:
            rk = (k[0], g.role, g.revoked_at)
            revoked_rows.add(rk)
            if rk not in revoked:
                yield problem("role_grants", f"{where('role_grants', g)} is revoked without a "
                              "role_revoked event: changed outside the application")
    for (user, role, at), n in sorted(granted.items(), key=lambda kv: str(kv[0])):
        if n > 0:
            yield problem("role_grants", f"the grant of {role} to {user} at {_at(at)} (event "
                          "role_granted) has no grant row: deleted outside the application")
    for (user, role, at) in sorted(set(revoked) - revoked_rows, key=str):
        yield problem("role_grants", f"the revocation of {role} from {user} at {_at(at)} (event "
                      "role_revoked) has no revoked grant: undone outside the application")

    # API tokens: created and revoked by id
    created = {e.changes.get("token_id"): e for e in by_action["api_token_created"]}
    revokes = {e.changes.get("token_id"): e for e in by_action["api_token_revoked"]}
    for t in tables["api_tokens"]:
        ev = created.pop(t.id, None)
        if ev is None:
            yield problem("api_tokens", f"{where('api_tokens', t)} has no api_token_created "
                          "event: inserted outside the application")
        else:
            differs = [label for label, row_v, ev_v in (
                ("scopes", t.scopes.split(), ev.changes.get("scopes")),
                ("expiry", _at(t.expires_at), ev.changes.get("expires_at")),
                ("owner", name.get(t.user_id), ev.changes.get("username")),
                ("prefix", t.prefix, ev.changes.get("prefix"))) if row_v != ev_v]
            if differs:
                yield problem("api_tokens", f"{where('api_tokens', t)}: {', '.join(differs)} "
                              "differ from its api_token_created event: changed outside the "
                              "application")
        rev = revokes.pop(t.id, None)
        if t.revoked_at is not None and (rev is None or rev.at != t.revoked_at):
            yield problem("api_tokens", f"{where('api_tokens', t)} is revoked without an "
                          "api_token_revoked event: changed outside the application")
        if t.revoked_at is None and rev is not None:
            yield problem("api_tokens", f"{where('api_tokens', t)} was revoked at {_at(rev.at)} "
                          "(event api_token_revoked) but is not: undone outside the application")
    for tid, ev in sorted(created.items(), key=lambda kv: str(kv[0])):
        yield problem("api_tokens", f"API token #{tid} ({ev.changes.get('prefix')}, event "
                      "api_token_created) has no row: deleted outside the application")

    # users: created, deactivated, passwords, lockout
    last: dict[tuple[str, str], Any] = {}
    created_users = Counter(who(e) for e in by_action["user_created"])
    for ev in events:  # in chain order: the last event of each kind per user wins
        if ev.action in ("password_changed", "password_reset"):
            last[(who(ev), "password")] = ev
        elif ev.action in ("account_locked", "account_unlocked"):
            last[(who(ev), "lock")] = ev
        elif ev.action == "user_deactivated":
            last[(who(ev), "deactivated")] = ev
    for u in users.values():
        label = where("users", u)
        if u.is_system:
            continue
        if not created_users[u.username]:
            yield problem("users", f"{label} has no user_created event: inserted outside the "
                          "application")
        pw = last.get((u.username, "password"))
        if u.password_hash is not None and (pw is None or pw.at != u.password_changed_at):
            yield problem("users", f"{label}: its password was set without a password event "
                          "(password_changed or password_reset): changed outside the application")
        lock = last.get((u.username, "lock"))
        if u.locked_at is not None and (lock is None or lock.action != "account_locked"
                                        or lock.at != u.locked_at):
            yield problem("users", f"{label} is locked without an account_locked event: changed "
                          "outside the application")
        if u.locked_at is None and lock is not None and lock.action == "account_locked":
            yield problem("users", f"{label} was locked at {_at(lock.at)} and is unlocked "
                          "without an account_unlocked event: changed outside the application")
        gone = last.get((u.username, "deactivated"))
        if u.active and gone is not None:
            yield problem("users", f"{label} was deactivated at {_at(gone.at)} (event "
                          "user_deactivated) but is active: changed outside the application")
        if not u.active and gone is None:
            yield problem("users", f"{label} is deactivated without a user_deactivated event")
    known = {u.username for u in users.values()}
    for user in sorted(set(created_users) - known):
        yield problem("users", f"user {user} (event user_created) has no row: deleted outside "
                      "the application")


def security_tables(conn: Connection) -> dict[str, list[Any]]:
    """The rows of the sealed security tables, for :func:`seals` and :func:`replay`."""
    return {"users": _rows(conn, User), "role_grants": _rows(conn, RoleGrant),
            "api_tokens": _rows(conn, ApiToken),
            "signing_enablements": _rows(conn, SigningEnablement)}



# --------------------------------------------------------------------------- numbering

_NUMBER = re.compile(r"^(?P<prefix>.+)-(?P<year>\d{4})-(?P<n>\d+)$")


def numbering(conn: Connection) -> Iterator[ChainProblem]:
    """Record numbers are gap-free per prefix and year and end at the counter: a deleted
    record leaves a gap (or a counter ahead of the last record)."""
    seen: dict[tuple[str, int], set[int]] = defaultdict(set)
    for (number,) in conn.execute(select(Record.__table__.c.number)):
        m = _NUMBER.match(number)
        if m:
            seen[(m["prefix"], int(m["year"]))].add(int(m["n"]))
    counters = {(c.prefix, c.year): c.last_value
                for c in conn.execute(select(RecordCounter.__table__))}
    for (prefix, year) in sorted(set(seen) | set(counters)):
        numbers = seen.get((prefix, year), set())
        top = counters.get((prefix, year))
        place = f"record numbers {prefix}-{year}"
        if top is None:
            yield ChainProblem(place, None, None, "records exist but their counter does not: "
                               "changed outside the application", kind="numbering")
            continue
        missing = sorted(set(range(1, top + 1)) - numbers)
        if missing:
            shown = ", ".join(f"{prefix}-{year}-{n:04d}" for n in missing[:10])
            more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
            yield ChainProblem(place, None, None,
                               f"{len(missing)} number(s) handed out have no record: {shown}"
                               f"{more} (records deleted outside the application)",
                               kind="numbering")
        beyond = sorted(n for n in numbers if n > top)
        if beyond:
            yield ChainProblem(place, None, None,
                               f"the counter stands at {top} but record {prefix}-{year}-"
                               f"{beyond[-1]:04d} exists: changed outside the application",
                               kind="numbering")


# --------------------------------------------------------------------------- protections


def triggers(conn: Connection) -> Iterator[ChainProblem]:
    """The append-only triggers exist (and, on PostgreSQL, fire ALWAYS)."""
    if conn.dialect.name == "sqlite":
        have = set(conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'trigger'"))
                   .scalars())
        for name in SQLITE_TRIGGERS:
            if name not in have:
                yield ChainProblem(f"trigger {name}", None, None,
                                   "the append-only trigger is missing: the table's rows can be "
                                   "changed or deleted (README, Production: Integrity)",
                                   kind="protection")
        return
    if conn.dialect.name != "postgresql":
        return
    state: dict[str, str] = dict(conn.execute(text(
        "SELECT tgname, tgenabled FROM pg_trigger WHERE NOT tgisinternal")).all())
    for name in POSTGRES_TRIGGERS:
        enabled = state.get(name)
        if enabled is None:
            msg = "the append-only trigger is missing"
        elif enabled == "D":
            msg = "the append-only trigger is disabled"
        elif enabled != "A":
            msg = ("the append-only trigger does not fire ALWAYS: a session with "
                   "session_replication_role = replica bypasses it")
        else:
            continue
        yield ChainProblem(f"trigger {name}", None, None, msg, kind="protection")
