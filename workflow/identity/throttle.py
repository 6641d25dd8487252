"""Login throttling: attempts per client address and per typed username in fixed time windows,
counted in the database (``throttle_counters``) so that every worker process serving one
database shares the counts (issue 14 item 4).

A counter is one row per (key, window): an INSERT that adds one on conflict (PostgreSQL and
SQLite both have ``INSERT ... ON CONFLICT DO UPDATE ... RETURNING``), so parallel requests
count exactly. Rows of finished windows are deleted now and then.

Functions taking a ``session`` only flush; :func:`check_login` runs its own unit.
"""

from __future__ import annotations

import hashlib
import math
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from workflow import clock
from workflow.db.models import ThrottleCounter
from workflow.db.uow import Units
from workflow.errors import LoginThrottled

_t = ThrottleCounter.__table__
#: one hit in this many also deletes the counters of finished windows
CLEAN_EVERY = 50


@dataclass(frozen=True)
class Limits:
    """Attempts allowed per window; 0 switches a limit off."""

    per_ip: int
    per_account: int
    window_seconds: int


def window_of(now: datetime, seconds: int) -> int:
    """The start (epoch seconds) of the window ``now`` falls in."""
    return math.floor(now.timestamp() / seconds) * seconds


def count(session: Session, key: str, now: datetime, seconds: int) -> int:
    """Add one to ``key``'s counter in the current window; returns the new count."""
    start = window_of(now, seconds)
    values = {
        "key": key[:200],
        "window_start": start,
        "count": 1,
        "expires_at": datetime.fromtimestamp(start + seconds, tz=now.tzinfo),
    }
    dialect = session.get_bind().dialect.name
    ins = (postgresql.insert(_t) if dialect == "postgresql" else sqlite.insert(_t)).values(values)
    stmt = ins.on_conflict_do_update(
        index_elements=[_t.c.key, _t.c.window_start], set_={"count": _t.c.count + 1}
    ).returning(_t.c.count)
    n = int(session.execute(stmt).scalar_one())
    if secrets.randbelow(CLEAN_EVERY) == 0:
        session.execute(delete(_t).where(_t.c.expires_at < now))
    return n


def retry_after(now: datetime, seconds: int) -> int:
    """Seconds until the window ``now`` is in ends (at least 1)."""
    return max(1, window_of(now, seconds) + seconds - math.floor(now.timestamp()))


def account_key(username: str) -> str:
    """The per-account key of a typed username (hashed: the table never holds what strangers
    typed; the same for existing and unknown usernames)."""
    norm = username.strip().lower()[:64]
    return "account:" + hashlib.sha256(norm.encode()).hexdigest()[:32]


def check_login(engine: Units, *, ip: str, username: str | None, limits: Limits) -> None:
    """Count one login attempt from ``ip`` (and for ``username``, where one was typed) and
    raise :class:`LoginThrottled` when either is over its limit, before any password is
    checked or any event is written. Its own unit, committed even when refused, so a flood
    is counted. Nothing reveals whether the username exists."""
    if not limits.window_seconds or not (limits.per_ip or limits.per_account):
        return
    now = clock.now()
    over = False
    with engine.unit() as session:
        if limits.per_ip and ip:
            over |= count(session, "ip:" + ip[:64], now, limits.window_seconds) > limits.per_ip
        if limits.per_account and username:
            over |= count(session, account_key(username), now, limits.window_seconds) > limits.per_account
    if over:
        raise LoginThrottled(retry_after(now, limits.window_seconds))


def worth_recording(n: int) -> bool:
    """1, 10, 100, 1000...: the counts at which a collapsed event is written."""
    return n >= 1 and 10 ** round(math.log10(n)) == n


def window_start(now: datetime, seconds: int) -> datetime:
    """The start of the window ``now`` falls in, as a time."""
    return datetime.fromtimestamp(window_of(now, seconds), tz=now.tzinfo)
