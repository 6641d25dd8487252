"""The one source of time for the engine: UTC, timezone-aware, movable in tests.

Tests move the clock (``clock.set``/``clock.advance``) instead of sleeping.
"""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, time, timedelta

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


# ---------------------------------------------------------------- date-only deadlines
#
# A date-only due date ("due 2026-12-10") is kept as an instant, the end of that day in UTC
# (2026-12-11 00:00 UTC; extension requests write 23:59:59 of the day), so deadlines of every
# kind compare and sort as instants. Shown back, such an instant must be the date that was
# entered: converting it to the viewer's zone first and then taking the date shows the next
# day east of UTC (and at UTC itself). :func:`deadline_day` is the way back, in one place.


def end_of_day(day: date) -> datetime:
    """The deadline instant of a date-only due date: the end of ``day`` in UTC."""
    return datetime.combine(day + timedelta(days=1), time(0), tzinfo=UTC)


def deadline_day(value: datetime | None) -> date | None:
    """The calendar date a date-only deadline was entered as (see :func:`end_of_day`), or
    None when ``value`` is a deadline with a time of day (shown in the viewer's zone)."""
    if value is None:
        return None
    v = as_utc(value)
    if (v.hour, v.minute, v.second, v.microsecond) == (0, 0, 0, 0):
        return v.date() - timedelta(days=1)
    if (v.hour, v.minute, v.second) == (23, 59, 59):
        return v.date()
    return None


def deadline_text(value: datetime) -> str:
    """A deadline for a message or a command line: a date-only one as its date
    (``2026-12-10``), otherwise its UTC time (``2026-12-10 14:30 UTC``)."""
    day = deadline_day(value)
    return day.isoformat() if day is not None else f"{as_utc(value):%Y-%m-%d %H:%M} UTC"
