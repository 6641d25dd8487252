"""Message templates: one Jinja file per kind in notifications/templates/ (most extend
``_base.txt`` and override ``subject`` and ``text``), each message carrying a link to its
record (``QMS_BASE_URL``).

The same template renders an e-mail's text part and its HTML part (:func:`render_both`):
once as plain text, once with HTML escaping and ``html`` set, where ``_base.txt`` lays the
same content out as HTML. So the two parts cannot say different things.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from jinja2 import Environment, FileSystemLoader, StrictUndefined, TemplateNotFound

from workflow import clock, config

TEMPLATES = Path(__file__).resolve().parent / "templates"
#: each template renders its subject block, this line, then its body block
_SEPARATOR = "%%BODY%%"


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


def base_url() -> str:
    """QMS_BASE_URL, without a trailing slash."""
    return config.settings().base_url


def record_path(number: str | None) -> str | None:
    """The record's page in the web UI (webapp/records.py: /records/<number>)."""
    return f"/records/{number}" if number else None


@cache
def _env(html: bool) -> Environment:
    # a missing variable is an error, not an empty string; plain text is not escaped, the
    # HTML part is
    return Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=html,
                       undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                       keep_trailing_newline=False)


def zone_of(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def when(value: datetime | None, zone: str | None) -> str | None:
    """An event time in the recipient's zone, with the zone named."""
    if value is None:
        return None
    local = clock.as_utc(value).astimezone(zone_of(zone))
    return f"{local:%Y-%m-%d %H:%M} {local.tzname()}"


def due_text(details: dict[str, Any] | None, zone: str | None) -> str | None:
    """The due date as the person entered it (a date-only one is that date, never moved by
    a zone), else the deadline in the recipient's zone."""
    raw = (details or {}).get("due")
    if not raw:
        return None
    due = datetime.fromisoformat(raw)
    day = clock.deadline_day(due)
    return day.isoformat() if day is not None else when(due, zone)


def _context(context: dict[str, Any], html: bool) -> dict[str, Any]:
    return {"base_url": base_url(), "details": None, "event_at": None, "due": None,
            "link": None, "record_number": None, "record_title": None, **context,
            "html": html}


def _template(env: Environment, kind: str) -> Any:
    try:
        return env.get_template(f"{kind}.txt")
    except TemplateNotFound:
        return env.get_template("generic.txt")


def _split(text: str) -> tuple[str, str]:
    subject, _, body = text.partition(_SEPARATOR)
    return " ".join(subject.split())[:300], body.strip() + "\n"


def render(kind: str, **context: Any) -> tuple[str, str]:
    """(subject, body) for a message of ``kind`` (``generic`` when it has no template)."""
    return _split(_template(_env(False), kind).render(_context(context, False)))


def render_both(kind: str, **context: Any) -> Rendered:
    """Subject, text part and HTML part of a message, from the one template."""
    subject, text = render(kind, **context)
    _, html = _split(_template(_env(True), kind).render(_context(context, True)))
    return Rendered(subject, text, html)
