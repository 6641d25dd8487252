"""Jinja filters and globals: times in the viewer's zone (with the zone named), due badges,
labels from names."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from flask import Flask

from webapp.context import user_zone
from workflow import clock
from workflow.spec.fields import choice_label


def local(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """A UTC time in the viewer's zone, with the zone named."""
    if value is None:
        return ""
    zone = user_zone()
    return f"{value.astimezone(zone).strftime(fmt)} {value.astimezone(zone).tzname()}"


def due(value: datetime | None) -> str:
    """A deadline as a person entered it: a date-only due date is that date, never moved by
    a time zone (workflow.clock.deadline_day); a deadline with a time of day (a duration's
    end) is shown as its date in the viewer's zone, with the zone named."""
    if value is None:
        return ""
    day = clock.deadline_day(value)
    if day is not None:
        return day.isoformat()
    return local(value, "%Y-%m-%d")


def differs_from_utc(value: datetime | None) -> bool:
    return value is not None and value.astimezone(user_zone()).utcoffset() != timedelta(0)


def utc(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else ""


def due_badge(due: datetime | None) -> tuple[str, str] | None:
    """(css class, text) for a due date: overdue, or due within 3 days."""
    if due is None:
        return None
    now = clock.now()
    if due < now:
        days = (now - due).days
        return "badge-overdue", f"overdue {days} d" if days else "overdue"
    if (due - now).days < 3:
        return "badge-soon", "due soon"
    return None


def label(name: str) -> str:
    return choice_label(name)


def register(app: Flask) -> None:
    """Install the filters and globals on ``app``'s Jinja environment."""
    app.jinja_env.filters["local"] = local
    app.jinja_env.filters["utc"] = utc
    app.jinja_env.filters["due"] = due
    app.jinja_env.filters["label"] = label
    app.jinja_env.globals["due_badge"] = due_badge
    app.jinja_env.globals["differs_from_utc"] = differs_from_utc
    app.jinja_env.globals["now"] = clock.now

    @app.context_processor
    def _inject() -> dict[str, Any]:
        return {"product_name": "QMS"}
