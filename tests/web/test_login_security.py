"""What an attacker sees at the login and in every response (issue 14, items 2 and 9): the
password step is single-use, server-side, short-lived and bound to the password; the
transport headers and the session cookie; the client address behind trusted proxies.
"""

from __future__ import annotations

import threading
import urllib.request
from datetime import timedelta

import pyotp
import pytest
from werkzeug.serving import make_server

from tests.web.conftest import PASSWORD, POLICY, csrf, login
from tests.web.test_flows import logged_in, next_code, system_events, text, user_row
from webapp import SECURE_COOKIE_NAME, create_app
from webapp.cli import QuietRequestHandler
from workflow import clock
from workflow.config import Settings
from workflow.errors import LoginStepExpired
from workflow.identity import admin as accounts
from workflow.identity import passwords, sessions
from workflow.identity import users as identity
from workflow.identity.totp import begin_totp_enrolment, confirm_totp_enrolment

NEW_PASSWORD = "Another-Long-Passphrase-42"


def code_step(client, code: str):
    return client.post("/login/code", data={"code": code, "csrf_token": csrf(client, "/login/code")})


def pending_of(client) -> dict:
    with client.session_transaction() as sess:
        return dict(sess.get("pending") or {})


def put_pending(client, pending: dict) -> None:
    with client.session_transaction() as sess:
        sess["pending"] = pending


# --------------------------------------------------------------------------- item 2


def test_the_password_step_is_kept_server_side_and_the_cookie_names_no_user(client, account, engine):
    """R-SEC-20 R-P11-10d-1: after the password, the cookie carries only the secret of a
    server-side login step (no user id); a cookie naming a user id, as the old format did,
    gets no code step at all."""
    account("quinn", "qa", "employee", totp=True)
    r = login(client, "quinn")
    assert r.headers["Location"].endswith("/login/code")
    pending = pending_of(client)
    assert set(pending) == {"challenge"} and len(pending["challenge"]) >= 40
    forged = client.application.test_client()
    put_pending(forged, {"user_id": user_row(engine, "quinn").id})
    r = forged.get("/login/code")
    assert r.status_code == 302 and r.headers["Location"].endswith("/login")


def test_a_used_password_step_cannot_be_replayed(app, account, engine):
    """R-SEC-20 R-SEC-3: the password step's cookie, copied before the code was entered,
    does not log in a second time with the next code: the step was used up."""
    account("quinn", "qa", "employee", totp=True)
    victim = app.test_client()
    login(victim, "quinn")
    stolen = pending_of(victim)
    assert logged_in(code_step(victim, next_code(account, "quinn")))
    attacker = app.test_client()
    put_pending(attacker, stolen)
    r = code_step(attacker, next_code(account, "quinn"))
    assert r.status_code == 302 and r.headers["Location"].endswith("/login")
    page = text(attacker.get("/login"))
    assert "This login step has expired or was already used" in page
    assert attacker.get("/").status_code == 302  # no session
    assert user_row(engine, "quinn").failed_attempts == 0


def test_a_password_step_expires_after_the_configured_minutes(client, account):
    """R-SEC-20: the step is open for QMS_LOGIN_STEP_MINUTES (5 by default), then the code
    is refused and the password must be entered again."""
    account("quinn", "qa", "employee", totp=True)
    login(client, "quinn")
    clock.advance(timedelta(minutes=POLICY.login_step_minutes, seconds=1))
    r = code_step(client, account.totp["quinn"].at(clock.now()))
    assert r.status_code == 302 and r.headers["Location"].endswith("/login")
    assert "expired or was already used" in text(client.get("/login"))
    assert client.get("/").status_code == 302


def test_a_password_step_is_void_after_a_password_change(client, account, engine):
    """R-SEC-20 R-P11-300c-1: the step is bound to the password it was opened with: after
    an administrator's reset (or any change) the right code no longer completes it."""
    account("quinn", "qa", "employee", totp=True)
    login(client, "quinn")
    accounts.issue_temporary_password(
        engine, "quinn", actor="system", reason="phone call from quinn", policy=POLICY
    )
    r = code_step(client, next_code(account, "quinn"))
    assert r.status_code == 302 and r.headers["Location"].endswith("/login")
    assert "expired or was already used" in text(client.get("/login"))
    assert client.get("/").status_code == 302


def test_an_empty_code_is_asked_again_and_not_counted(client, account, engine):
    """R-SEC-29 R-P11-300d-1: submitting the code step with an empty field is no attempt:
    422, the form again, and no failed attempt or security event."""
    account("quinn", "qa", "employee", totp=True)
    login(client, "quinn")
    before = len(system_events(engine, "login_failed"))
    r = client.post("/login/code", data={"code": "  ", "csrf_token": csrf(client, "/login/code")})
    assert r.status_code == 422
    assert "Authentication code" in text(r)
    assert user_row(engine, "quinn").failed_attempts == 0
    assert len(system_events(engine, "login_failed")) == before
    assert logged_in(code_step(client, next_code(account, "quinn")))


# --------------------------------------------------------------------------- item 9


@pytest.fixture
def https_app(engine, tmp_path, monkeypatch):
    """The app as production runs it: secure cookies behind one trusted proxy."""
    monkeypatch.setenv("QMS_INSTANCE_DIR", str(tmp_path))
    settings = Settings(instance_dir=tmp_path, cookie_secure=True, trusted_proxies=1)
    return create_app(
        {"TESTING": True, "SECRET_KEY": "test", "QMS_ENGINE": engine, "QMS_POLICY": POLICY}, settings=settings
    )


def test_over_https_the_session_cookie_is_host_bound_and_hsts_is_sent(https_app, account):
    """R-SEC-21: with secure cookies on, every answer carries HSTS and the session cookie is
    ``__Host-qms_session``: Secure, HttpOnly, SameSite=Lax, Path=/ and no Domain."""
    account("emma", "employee")
    c = https_app.test_client()
    r = c.get("/login", base_url="https://qms.example.com")
    assert r.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
    r = login_https(c, "emma")
    cookie = next(
        v for k, v in r.headers.items() if k == "Set-Cookie" and v.startswith(SECURE_COOKIE_NAME + "=")
    )
    parts = {p.strip().split("=")[0].lower() for p in cookie.split(";")}
    assert {"secure", "httponly", "path"} <= parts and "domain" not in parts
    assert "Path=/" in cookie and "SameSite=Lax" in cookie
    assert c.get("/", base_url="https://qms.example.com").status_code == 200


def login_https(c, username: str):
    base = "https://qms.example.com"
    html = text(c.get("/login", base_url=base))
    token = html.split('name="csrf_token" type="hidden" value="')[1].split('"')[0]
    # over HTTPS Flask-WTF also checks that the form came from this site (Referer)
    return c.post(
        "/login",
        base_url=base,
        headers={"Referer": base + "/login"},
        data={"username": username, "password": PASSWORD, "csrf_token": token},
    )


def test_over_http_there_is_no_hsts_and_the_plain_cookie_name(client, account):
    """R-SEC-21: without secure cookies (a test or a closed-network HTTP install) no HSTS is
    sent (it would lock browsers out of an HTTP-only host) and the cookie is qms_session."""
    account("emma", "employee")
    r = login(client, "emma")
    assert "Strict-Transport-Security" not in r.headers
    assert any(v.startswith("qms_session=") for k, v in r.headers.items() if k == "Set-Cookie")


@pytest.mark.parametrize(
    "path, status", [("/login", 200), ("/", 302), ("/no-such-page", 404), ("/api/v1/records", 401)]
)
def test_pages_and_error_pages_are_never_cached(client, path, status):
    """R-SEC-21: the login page, redirects, a 404 that matched no page and API errors all
    answer ``Cache-Control: no-store``."""
    r = client.get(path)
    assert r.status_code == status
    assert r.headers["Cache-Control"] == "no-store"


def test_authenticated_pages_are_never_cached(client, account):
    """R-SEC-21: a logged-in page is not stored by the browser or a proxy."""
    account("emma", "employee")
    login(client, "emma")
    r = client.get("/")
    assert r.status_code == 200 and r.headers["Cache-Control"] == "no-store"


def test_the_server_header_names_no_version(app):
    """R-SEC-21: ``qms serve`` answers with ``Server: QMS``, not Werkzeug's and Python's
    versions (a real server on a loopback port, one request)."""
    server = make_server("127.0.0.1", 0, app, request_handler=QuietRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/login", timeout=10) as r:
            assert r.headers["Server"] == "QMS"
    finally:
        server.shutdown()
        thread.join(timeout=10)


def test_behind_a_trusted_proxy_the_client_address_is_recorded(https_app, account, engine):
    """R-SEC-22 R-A11-12-1: with QMS_TRUSTED_PROXIES=1 the address the proxy forwards is the
    one recorded in the failed-login event, the login event and the session row."""
    account("emma", "employee")
    c = https_app.test_client()
    base = "https://qms.example.com"
    headers = {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https", "Referer": base + "/login"}
    html = text(c.get("/login", base_url=base, headers=headers))
    token = html.split('name="csrf_token" type="hidden" value="')[1].split('"')[0]
    c.post(
        "/login",
        base_url=base,
        headers=headers,
        data={"username": "emma", "password": "wrong-password-1", "csrf_token": token},
    )
    assert system_events(engine, "login_failed")[-1].changes["ip"] == "203.0.113.7"
    c.post(
        "/login",
        base_url=base,
        headers=headers,
        data={"username": "emma", "password": PASSWORD, "csrf_token": token},
    )
    assert system_events(engine, "login")[-1].changes["ip"] == "203.0.113.7"


def test_without_trusted_proxies_a_forwarded_address_is_ignored(client, account, engine):
    """R-SEC-22: by default (QMS_TRUSTED_PROXIES=0) a client cannot choose the address
    recorded for it by sending X-Forwarded-For."""
    account("emma", "employee")
    client.post(
        "/login",
        headers={"X-Forwarded-For": "198.51.100.9"},
        data={"username": "emma", "password": "wrong-password-1", "csrf_token": csrf(client, "/login")},
    )
    assert system_events(engine, "login_failed")[-1].changes["ip"] == "127.0.0.1"


def test_a_changed_password_binds_no_old_step_in_the_engine(engine, make_user):
    """R-SEC-20: the same rule below the web: a step opened before a password change is
    refused by the engine with LoginStepExpired."""
    make_user("quinn", "qa")
    with engine.unit() as s:
        passwords.set_password(
            s, identity.get_user(s, "quinn"), PASSWORD, actor=identity.system_user(s), policy=POLICY
        )
    e = begin_totp_enrolment(engine, "quinn", POLICY)
    confirm_totp_enrolment(engine, "quinn", pyotp.TOTP(e.secret).at(clock.now()))
    step = sessions.check_login_password(engine, "quinn", PASSWORD, POLICY).challenge
    passwords.change_password(engine, "quinn", PASSWORD, NEW_PASSWORD, POLICY)
    clock.advance(timedelta(seconds=31))
    with pytest.raises(LoginStepExpired):
        sessions.check_login_totp(engine, step, pyotp.TOTP(e.secret).at(clock.now()), POLICY)
