"""Web fixtures: the Flask app on the test's rolled-back engine, a client, and logging in."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pyotp
import pytest
from flask.testing import FlaskClient

from tests.conftest import TEST_KEY
from webapp import create_app
from workflow import clock
from workflow import config as qms_config
from workflow.identity import passwords
from workflow.identity import users as identity
from workflow.identity.policy import Policy
from workflow.identity.totp import begin_totp_enrolment, confirm_totp_enrolment
from workflow.signatures.keys import FileKeyProvider
from workflow.signatures.part11 import Part11Verifier

PASSWORD = "Correct-Horse-Battery-9"
POLICY = Policy(totp_required_roles=("admin",))


@pytest.fixture
def app(engine, tmp_path, monkeypatch):
    monkeypatch.setenv("QMS_INSTANCE_DIR", str(tmp_path))
    # the Ed25519 anchor key that signs true copies, as `qms init` creates it
    FileKeyProvider(qms_config.settings()).create("anchor")
    engine.verifier = Part11Verifier(TEST_KEY, POLICY)
    app = create_app({"TESTING": True, "SECRET_KEY": "test", "QMS_ENGINE": engine,
                      "QMS_POLICY": POLICY})
    return app


@pytest.fixture
def client(app) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def account(engine, make_user) -> Callable[..., str]:
    """``account("quinn", "qa", "employee")``: a user with PASSWORD set."""

    def make(username: str, *roles: str, totp: bool = False) -> str:
        make_user(username, *roles)
        with engine.unit() as s:
            u = identity.get_user(s, username)
            passwords.set_password(s, u, PASSWORD, actor=identity.system_user(s), policy=POLICY)
        if totp:
            e = begin_totp_enrolment(engine, username, POLICY)
            confirm_totp_enrolment(engine, username, pyotp.TOTP(e.secret).at(clock.now()))
            clock.advance(timedelta(seconds=31))
            accounts_totp[username] = pyotp.TOTP(e.secret)
        return username

    accounts_totp: dict[str, pyotp.TOTP] = {}
    make.totp = accounts_totp  # type: ignore[attr-defined]
    return make


def csrf(client: FlaskClient, path: str) -> str:
    """The CSRF token from a page's form."""
    import re

    html = client.get(path).get_data(as_text=True)
    m = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html) or \
        re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert m, f"no CSRF token on {path}"
    return m.group(1)


def login(client: FlaskClient, username: str, password: str = PASSWORD, totp: str | None = None):
    r = client.post("/login", data={"username": username, "password": password,
                                    "csrf_token": csrf(client, "/login")})
    if totp is not None and r.status_code == 302 and "/login/code" in r.headers["Location"]:
        r = client.post("/login/code", data={"code": totp,
                                             "csrf_token": csrf(client, "/login/code")})
    return r
