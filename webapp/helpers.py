"""Small shared pieces: access to the engine and policy, time formatting, template filters."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import Flask, current_app
from flask_login import current_user

from workflow import clock
from workflow.engine.core import Engine
from workflow.identity.policy import Policy


def engine() -> Engine:
    return current_app.config["QMS_ENGINE"]


def policy() -> Policy:
    return current_app.config["QMS_POLICY"]


def user_zone() -> ZoneInfo:
    tz = getattr(current_user, "timezone", None) or "UTC"
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def local(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """A UTC time in the viewer's zone, with the zone named."""
    if value is None:
        return ""
    zone = user_zone()
    return f"{value.astimezone(zone).strftime(fmt)} {value.astimezone(zone).tzname()}"


def differs_from_utc(value: datetime | None) -> bool:
    return value is not None and value.astimezone(user_zone()).utcoffset() != timedelta(0)


def utc(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else ""


def safe_next(target: str | None, default: str) -> str:
    """Only same-site paths: no scheme, host, backslash or control character."""
    from urllib.parse import urlsplit

    if not target or not target.startswith("/") or target.startswith("//"):
        return default
    if "\\" in target or any(ord(c) < 32 for c in target):
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return default
    return target


def people_names(usernames: set[str]) -> dict[str, str]:
    """username -> printed name, in one query."""
    if not usernames:
        return {}
    from sqlalchemy import select

    from workflow.db.models import User

    with engine().reader() as s:
        return {u: n for u, n in s.execute(
            select(User.username, User.full_name).where(User.username.in_(sorted(usernames))))}


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
    return name.replace("_", " ").capitalize()


def register_template_helpers(app: Flask) -> None:
    app.jinja_env.filters["local"] = local
    app.jinja_env.filters["utc"] = utc
    app.jinja_env.filters["label"] = label
    app.jinja_env.globals["due_badge"] = due_badge
    app.jinja_env.globals["differs_from_utc"] = differs_from_utc
    app.jinja_env.globals["now"] = clock.now

    @app.context_processor
    def _inject() -> dict[str, Any]:
        return {"product_name": "QMS"}
