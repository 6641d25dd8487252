"""Query parameters, parsed in one place (R-SEC-33): a value the application cannot use is a
400 page saying which parameter and what is expected, never a 500.

:func:`check_request` runs before every request and refuses what no page can use: a NUL
character (PostgreSQL cannot store or compare it), lone surrogates (not text: encoding them
fails) and values over :data:`MAX_VALUE` characters. :func:`integer` and :func:`day` parse the
typed parameters the pages read (a 20-digit integer does not fit a database column; year 0 and
day 9999-12-31 + 1 are not dates).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from flask import Flask, render_template, request
from werkzeug.exceptions import BadRequest

from webapp import errors

#: the longest query-parameter value any page reads
MAX_VALUE = 2000
#: what the database's integer columns hold
MAX_INT = 2**31 - 1
#: the dates a filter may name
FIRST_DAY, LAST_DAY = date(1900, 1, 1), date(2999, 12, 31)
_SURROGATE = re.compile("[\ud800-\udfff]")


class BadQuery(BadRequest):
    """A query parameter that cannot be used (answered 400 with ``description``)."""

    def __init__(self, name: str, expected: str):
        super().__init__(description=f"The query parameter {name!r} is not valid: {expected}.")


def _unusable(value: str) -> str | None:
    if "\x00" in value:
        return "it contains a NUL character"
    if _SURROGATE.search(value):
        return "it is not valid text (a lone surrogate)"
    if len(value) > MAX_VALUE:
        return f"it is longer than {MAX_VALUE} characters"
    return None


def check_request() -> None:
    """``before_request``: refuse a request whose query string holds an unusable name or
    value (BadQuery, 400)."""
    for name, value in request.args.items(multi=True):
        problem = _unusable(name) or _unusable(value)
        if problem:
            raise BadQuery(name if not _unusable(name) else "(name)", problem)


def integer(name: str, *, minimum: int = 0, maximum: int = MAX_INT) -> int | None:
    """Query parameter ``name`` as a whole number in [minimum, maximum]; None when absent or
    empty; BadQuery otherwise."""
    raw = request.args.get(name, "")
    if raw == "":
        return None
    if not re.fullmatch(r"[+-]?\d{1,12}", raw.strip()):
        raise BadQuery(name, f"expected a whole number between {minimum} and {maximum}")
    value = int(raw)
    if not minimum <= value <= maximum:
        raise BadQuery(name, f"expected a whole number between {minimum} and {maximum}")
    return value


def day(name: str, *, end: bool = False) -> datetime | None:
    """Query parameter ``name`` (YYYY-MM-DD, between :data:`FIRST_DAY` and :data:`LAST_DAY`)
    as the UTC midnight starting it, or ending it when ``end``; None when absent or empty;
    BadQuery otherwise."""
    raw = request.args.get(name, "")
    if raw == "":
        return None
    expected = f"expected a date YYYY-MM-DD between {FIRST_DAY} and {LAST_DAY}"
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", raw):
        raise BadQuery(name, expected)
    try:
        d = date.fromisoformat(raw)
    except ValueError:
        raise BadQuery(name, expected) from None
    if not FIRST_DAY <= d <= LAST_DAY:
        raise BadQuery(name, expected)
    return datetime.combine(d + timedelta(days=1) if end else d, time(0), tzinfo=UTC)


def init_app(app: Flask, *, wants_json: Callable[[], bool]) -> None:
    """Check every request's query string first; answer :class:`BadQuery` with its message
    (the API's JSON error body on API paths)."""
    app.before_request(check_request)

    @app.errorhandler(BadQuery)
    def _bad_query(e: BadQuery) -> Any:
        message = e.description or "A query parameter is not valid."
        if wants_json():
            return errors.error_response(400, "bad_request", message)
        return render_template(
            "error.html", status=400, title="Bad request", message=message + " Nothing was changed."
        ), 400
