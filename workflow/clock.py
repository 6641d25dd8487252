"""The one source of time for the engine: UTC, timezone-aware, movable in tests.

Tests move the clock (``clock.set``/``clock.advance``) instead of sleeping.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

_lock = threading.Lock()
_frozen: datetime | None = None
_offset = timedelta(0)


def now() -> datetime:
    """Current time in UTC (tz-aware), honouring a frozen time or offset set by tests."""
    if _frozen is not None:
        return _frozen
    return datetime.now(UTC) + _offset


def set(moment: datetime | None) -> None:  # noqa: A001 - reads well as clock.set(...)
    """Freeze the clock at ``moment`` (tz-aware); ``None`` unfreezes."""
    global _frozen
    if moment is not None and moment.tzinfo is None:
        raise ValueError("clock.set needs a timezone-aware datetime")
    with _lock:
        _frozen = moment.astimezone(UTC) if moment is not None else None


def advance(delta: timedelta) -> None:
    """Move time forward by ``delta`` (frozen or running)."""
    global _frozen, _offset
    with _lock:
        if _frozen is not None:
            _frozen = _frozen + delta
        else:
            _offset = _offset + delta


def reset() -> None:
    global _frozen, _offset
    with _lock:
        _frozen = None
        _offset = timedelta(0)


def as_utc(value: datetime) -> datetime:
    """Normalise a datetime read back from the database (SQLite drops tzinfo) to aware UTC."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
