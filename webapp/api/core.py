"""Request handling shared by every API route: bearer authentication, the rate limiter,
scope checks, parameter and body validation, and domain errors as JSON (their statuses and
bodies come from webapp/errors.py).
"""

from __future__ import annotations

import base64
import json
import math
import re
import threading
from collections.abc import Callable
from datetime import datetime
from functools import wraps
from typing import Any

from flask import Response, current_app, jsonify, request
from jsonschema import Draft7Validator

from webapp.api.spec import Param, Route
from webapp.context import engine, keep_read_session, read_session
from webapp.errors import ApiError, api_error, error_response
from workflow import clock
from workflow import errors as wf
from workflow.identity import tokens as api_tokens
from workflow.signatures.part11 import PasswordSignature

# ------------------------------------------------------------------ rate limiting


class RateLimiter:
    """Fixed one-minute windows per token, in this process's memory (so with N worker
    processes a token may make up to N times the limit). ``limit`` 0 disables it."""

    def __init__(self, limit: int):
        self.limit = limit
        self._lock = threading.Lock()
        self._windows: dict[int, tuple[int, int]] = {}

    def hit(self, key: int, now: datetime) -> int | None:
        """Count a request; returns None if allowed, else seconds until the next window."""
        if self.limit <= 0:
            return None
        window = math.floor(now.timestamp() / 60)
        with self._lock:
            start, count = self._windows.get(key, (window, 0))
            if start != window:
                start, count = window, 0
                if len(self._windows) > 10_000:  # forget finished windows
                    self._windows = {k: v for k, v in self._windows.items() if v[0] == window}
            if count >= self.limit:
                return max(1, (window + 1) * 60 - math.floor(now.timestamp()))
            self._windows[key] = (start, count + 1)
            return None


def limiter() -> RateLimiter:
    return current_app.extensions["qms_api_limiter"]


# ------------------------------------------------------------------ authentication


_TOKEN_CODES = {"missing": "token_missing", "malformed": "token_invalid",
                "unknown": "token_invalid", "expired": "token_expired",
                "revoked": "token_revoked", "inactive_user": "account_deactivated",
                "tampered": "token_tampered", "suspended": "token_suspended"}


def _bearer() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def authenticate(scope: str) -> api_tokens.Caller:
    """The caller of this request (401/403/429 as ApiError). Cookies play no part."""
    try:
        # reads through the request's session; the throttled last-used write is never
        # read back by the request
        with keep_read_session():
            caller = api_tokens.authenticate(engine(), _bearer(), session=read_session())
    except wf.TokenRejected as exc:
        err = ApiError(401, _TOKEN_CODES.get(exc.reason, "token_invalid"), exc.message)
        err.headers["WWW-Authenticate"] = 'Bearer realm="qms"'
        raise err from None
    except wf.AccountLocked as exc:
        raise api_error(exc) from None
    wait = limiter().hit(caller.token_id, clock.now())
    if wait is not None:
        err = ApiError(429, "rate_limited", f"Too many requests with token {caller.prefix}: "
                       f"at most {limiter().limit} a minute. Retry in {wait} s.")
        err.headers["Retry-After"] = str(wait)
        raise err
    if scope not in caller.scopes:
        raise ApiError(403, "insufficient_scope", f"The token {caller.prefix} lacks the "
                       f"'{scope}' scope this request needs.", required_scope=scope)
    return caller


def require_scope(caller: api_tokens.Caller, scope: str, why: str) -> None:
    if scope not in caller.scopes:
        raise ApiError(403, "insufficient_scope", f"The token {caller.prefix} lacks the "
                       f"'{scope}' scope: {why}.", required_scope=scope)


# ------------------------------------------------------------------ parameters and bodies


def _query_value(p: Param, raw: str) -> Any:
    s = p.schema
    t = s.get("type")
    if t == "integer":
        try:
            v: Any = int(raw)
        except ValueError:
            raise ApiError(400, "bad_request", f"{p.name} must be a whole number.") from None
        if "minimum" in s and v < s["minimum"] or "maximum" in s and v > s["maximum"]:
            raise ApiError(400, "bad_request", f"{p.name} must be between {s.get('minimum')} "
                           f"and {s.get('maximum')}.")
        return v
    if t == "boolean":
        if raw not in ("true", "false"):
            raise ApiError(400, "bad_request", f"{p.name} must be true or false.")
        return raw == "true"
    if "enum" in s and raw not in s["enum"]:
        raise ApiError(400, "bad_request", f"{p.name} must be one of: {', '.join(s['enum'])}.")
    if len(raw) > s.get("maxLength", 200) or "\x00" in raw:
        raise ApiError(400, "bad_request", f"{p.name} is too long or not text.")
    return raw


def parse_query(route: Route) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for p in route.params:
        if p.where != "query":
            continue
        raw = request.args.get(p.name)
        if raw is None or raw == "":
            if p.required:
                raise ApiError(400, "bad_request", f"The query parameter {p.name} is required.")
            out[p.name] = p.schema.get("default")
            continue
        out[p.name] = _query_value(p, raw)
    return out


_validators: dict[int, Draft7Validator] = {}


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _not_text(value: Any, path: str = "body") -> str | None:
    """Where in a parsed JSON body a string (key or value) holds a NUL or a lone surrogate:
    JSON's \\u escapes allow both, and neither can be stored (R-SEC-33)."""
    if isinstance(value, str):
        return path if "\x00" in value or _SURROGATE.search(value) else None
    if isinstance(value, dict):
        for k, v in value.items():
            found = _not_text(k, path) or _not_text(v, f"{path}/{k}")
            if found:
                return found
    if isinstance(value, list):
        for i, v in enumerate(value):
            found = _not_text(v, f"{path}/{i}")
            if found:
                return found
    return None


_SURROGATE = re.compile("[\ud800-\udfff]")


def parse_body(route: Route) -> dict[str, Any]:
    if route.body is None:
        return {}
    raw = request.get_data(cache=False)
    try:
        body = json.loads(raw or b"", parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ApiError(400, "invalid_json", "The request body is not valid JSON.") from None
    where = _not_text(body)
    if where is not None:
        raise ApiError(400, "bad_request", f"{where}: not valid text (a NUL character or a lone "
                       "surrogate such as \\ud800).")
    v = _validators.get(id(route.body))
    if v is None:
        v = _validators[id(route.body)] = Draft7Validator(route.body)
    problems = sorted(v.iter_errors(body), key=lambda e: list(e.path))
    if problems:
        p = problems[0]
        where = "/".join(str(x) for x in p.path) or "body"
        raise ApiError(400, "bad_request", f"{where}: {p.message}"[:500])
    return body


def encode_cursor(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")


def decode_cursor(value: str | None) -> str | None:
    if not value:
        return None
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "bad_cursor", "The cursor is not valid; start again from the "
                                          "first page.") from None


# ------------------------------------------------------------------ the wrapper


def dispatch(route: Route) -> Callable[..., Any]:
    """The Flask view for ``route``: authenticate, validate, call, answer JSON."""
    view = route.view

    @wraps(view)
    def handler(**path: Any) -> Any:
        try:
            kwargs: dict[str, Any] = dict(path)
            if route.scope is not None:
                kwargs["caller"] = authenticate(route.scope)
            if any(p.where == "query" for p in route.params):
                kwargs["query"] = parse_query(route)
            if route.body is not None:
                kwargs["body"] = parse_body(route)
            try:
                result = view(**kwargs)
                if isinstance(result, Response):  # a file (true copy, attachment)
                    return result
                payload, status, headers = _normalise(result, route.ok)
            except wf.WorkflowError as exc:
                raise api_error(exc) from None
        except ApiError as err:
            return error_response(err.status, err.code, err.message, err.headers, **err.extra)
        resp = jsonify(payload)
        resp.status_code = status
        for k, v in headers.items():
            resp.headers[k] = v
        return resp

    return handler


def _normalise(result: Any, default_status: int) -> tuple[Any, int, dict[str, str]]:
    if isinstance(result, tuple):
        payload, status, *rest = result
        return payload, status, (rest[0] if rest else {})
    return result, default_status, {}


def signature_from(body: dict[str, Any] | None) -> PasswordSignature | None:
    """The signer's credentials from a request body; no session token (API signings always
    need every component)."""
    if not body:
        return None
    totp = (body.get("totp") or "").strip() or None
    return PasswordSignature(body["username"], body["password"], totp, session_token=None)
