"""Message templates: one Jinja file per kind in notifications/templates/ (most extend
``_base.txt`` and override ``subject`` and ``text``), each message carrying a link to its
record (``QMS_BASE_URL``)."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, TemplateNotFound

from workflow import config

TEMPLATES = Path(__file__).resolve().parent / "templates"
#: each template renders its subject block, this line, then its body block
_SEPARATOR = "%%BODY%%"


def base_url() -> str:
    """QMS_BASE_URL, without a trailing slash."""
    return config.settings().base_url


def record_path(number: str | None) -> str | None:
    """The record's page in the web UI (webapp/records.py: /records/<number>)."""
    return f"/records/{number}" if number else None


@cache
def _env() -> Environment:
    # plain-text mail: no HTML escaping; a missing variable is an error, not an empty string
    return Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=False,
                       undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                       keep_trailing_newline=False)


def render(kind: str, **context: Any) -> tuple[str, str]:
    """(subject, body) for a message of ``kind`` (``generic`` when it has no template)."""
    env = _env()
    try:
        template = env.get_template(f"{kind}.txt")
    except TemplateNotFound:
        template = env.get_template("generic.txt")
    text = template.render({"base_url": base_url(), **context})
    subject, _, body = text.partition(_SEPARATOR)
    return " ".join(subject.split())[:300], body.strip() + "\n"
