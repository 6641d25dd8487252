"""KPI periods: ``[start, end)`` in UTC, whole months."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from workflow import clock


def month_start(d: datetime | date) -> datetime:
    return datetime(d.year, d.month, 1, tzinfo=UTC)


def add_months(d: datetime, n: int) -> datetime:
    m = d.month - 1 + n
    return d.replace(year=d.year + m // 12, month=m % 12 + 1, day=1)


@dataclass(frozen=True)
class Period:
    """``[start, end)`` in UTC."""

    start: datetime
    end: datetime

    @classmethod
    def last_months(cls, n: int = 12, now: datetime | None = None) -> Period:
        """The current month and the n-1 before it."""
        now = now or clock.now()
        end = add_months(month_start(now), 1)
        return cls(add_months(end, -n), end)

    @classmethod
    def months(cls, first: str, last: str) -> Period:
        """From the first day of ``first`` (YYYY-MM) to the end of ``last`` (YYYY-MM)."""
        a = datetime.strptime(first, "%Y-%m").replace(tzinfo=UTC)
        b = datetime.strptime(last, "%Y-%m").replace(tzinfo=UTC)
        if b < a:
            a, b = b, a
        return cls(a, add_months(b, 1))

    def month_keys(self) -> list[str]:
        out, m = [], month_start(self.start)
        while m < self.end:
            out.append(m.strftime("%Y-%m"))
            m = add_months(m, 1)
        return out

    @property
    def label(self) -> str:
        last = self.end - timedelta(days=1)
        if (self.start.year, self.start.month) == (last.year, last.month):
            return self.start.strftime("%b %Y")
        return f"{self.start:%b %Y} – {last:%b %Y}"
