"""The JSON API at /api/v1 for integrations (LIMS, ERP, HR, ticketing). See docs/api.md.

* Authentication: personal API tokens only (``Authorization: Bearer qms_...``, see
  workflow/identity/tokens.py). The API ignores cookies altogether: the Flask session is neither
  read nor written for /api/ requests, so a browser session can never authenticate an API
  call (and CSRF protection, which guards cookie-authenticated forms, is not needed here).
* Routes, validation and the OpenAPI document all come from ``views.ROUTES``.
* Errors are JSON: ``{"error": {"code": "...", "message": "...", ...}}``.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, request
from flask.sessions import SecureCookieSession, SessionInterface
from werkzeug.exceptions import HTTPException

from webapp.api.core import RateLimiter, dispatch
from webapp.api.spec import API_PREFIX
from webapp.api.views import ROUTES
from webapp.errors import http_error_response

bp = Blueprint("api", __name__, url_prefix=API_PREFIX)

for _route in ROUTES:
    _view = dispatch(_route)
    _view.provide_automatic_options = False  # type: ignore[attr-defined]
    bp.add_url_rule(_route.flask_path, endpoint=_route.endpoint, view_func=_view,
                    methods=[_route.method])

def is_api_request() -> bool:
    path = request.path
    return path == API_PREFIX or path.startswith(API_PREFIX + "/")


class _NoCookiesForApi(SessionInterface):
    """Wraps the app's session interface: API requests get an empty session that is never
    saved, so cookies neither authenticate them nor get set by them."""

    def __init__(self, inner: SessionInterface):
        self.inner = inner

    def open_session(self, app: Flask, req: Any) -> Any:
        if req.path == API_PREFIX or req.path.startswith(API_PREFIX + "/"):
            return SecureCookieSession()
        return self.inner.open_session(app, req)

    def save_session(self, app: Flask, session: Any, response: Any) -> None:
        if is_api_request():
            return None
        return self.inner.save_session(app, session, response)

    def make_null_session(self, app: Flask) -> Any:
        return self.inner.make_null_session(app)

    def is_null_session(self, obj: object) -> bool:
        return self.inner.is_null_session(obj)


def _rate(app: Flask) -> int:
    # create_app sets it from Settings (QMS_API_RATE_PER_MINUTE); a test's config may override
    raw = app.config.get("QMS_API_RATE_PER_MINUTE")
    if raw is None or raw == "":
        return 600
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise SystemExit(f"QMS_API_RATE_PER_MINUTE must be a whole number, not {raw!r}") from None
    if value < 0:
        raise SystemExit("QMS_API_RATE_PER_MINUTE must be 0 (no limit) or more")
    return value


def init_app(app: Flask, csrf: Any) -> None:
    """Mount the API: blueprint, CSRF exemption, cookie-free sessions, JSON errors."""
    app.extensions["qms_api_limiter"] = RateLimiter(_rate(app))
    csrf.exempt(bp)
    app.register_blueprint(bp)
    app.session_interface = _NoCookiesForApi(app.session_interface)

    @app.errorhandler(HTTPException)
    def _http_error(e: HTTPException) -> Any:
        if not is_api_request():
            return e  # unchanged for the web UI
        return http_error_response(e.code or 500, e.description or e.name)
