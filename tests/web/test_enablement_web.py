"""Signing enablement on the pages (issue 14, item 6): the administrator records the
identity verification on the user's page, the person reads the policy in full and accepts it
with their password on the E-signature page, a signing slip before that says what is
missing, and the dashboard counts people who can sign."""

from __future__ import annotations

import html as htmllib

from tests.web.conftest import PASSWORD, csrf, login
from tests.web.test_flows import admin, admin_post, logged_in, text
from workflow.db.models import SigningEnablement
from workflow.identity import enablement
from workflow.identity import users as identity

__all__ = ["admin"]


def unenable(engine, username: str) -> None:
    """Remove the factory's enablement (tests only: rows are never deleted by the app)."""
    with engine.unit() as s:
        u = identity.get_user(s, username)
        for row in s.query(SigningEnablement).filter_by(user_id=u.id):
            s.delete(row)


def test_identity_verification_and_policy_acceptance_on_the_pages(app, admin, account, engine):
    """R-P11-100b-1 R-P11-10j-1 R-UI-1: rita's admin page shows she cannot sign; Ada records
    how her identity was verified; rita reads the whole policy and accepts it with her
    password (a wrong one is refused); her admin page and the dashboard then count her."""
    account("rita", "qa")
    unenable(engine, "rita")
    page = "/admin/users/rita"
    body = text(admin.get(page))
    assert "Signing enablement" in body and "cannot sign" in body and "not recorded" in body
    r = admin_post(
        admin, f"{page}/verify-identity", page, method="Passport checked in person", reason="New QA reviewer"
    )
    assert r.status_code == 302
    body = htmllib.unescape(text(admin.get(page)))
    assert "identity verification was recorded" in body
    assert "by Ada Tester: Passport checked in person" in body
    rita = app.test_client()
    assert logged_in(login(rita, "rita"))
    esign = enablement.current_policy()
    body = htmllib.unescape(text(rita.get("/account/esignature/")))
    assert esign.text.splitlines()[0] in body and "never share your password" in body
    assert enablement.STATEMENT in body and "You cannot sign yet" in body
    form = {"csrf_token": csrf(rita, "/account/esignature/"), "version": esign.version, "agree": "yes"}
    r = rita.post("/account/esignature/", data={**form, "password": "wrong-password-1"})
    assert r.status_code == 422 and "The password is wrong" in text(r)
    r = rita.post("/account/esignature/", data={**form, "password": PASSWORD})
    assert r.status_code == 302
    assert "You accepted the e-signature policy (version 1)" in htmllib.unescape(
        text(rita.get(r.headers["Location"]))
    )
    body = text(admin.get(page))
    assert "can sign" in body and "accepted" in body
    dash = htmllib.unescape(text(admin.get("/dashboard/")))
    assert "Users who can sign:" in dash


def test_a_signing_slip_before_enablement_says_what_is_missing(app, account, engine):
    """R-P11-100b-1: quinn (qa, not enabled) signing a cancellation gets 403-class refusal
    with both missing facts, nothing signed."""
    account("emma", "employee")
    account("quinn", "qa", "employee")
    unenable(engine, "quinn")
    number = engine.start("capa", "emma", {"title": "t", "description": "d"}).number
    c = app.test_client()
    assert logged_in(login(c, "quinn"))
    path = f"/records/{number}/do/cancel"
    page = text(c.get(path))
    r = c.post(
        path,
        data={
            "csrf_token": csrf(c, path),
            "reason": "duplicate",
            "sig_username": "quinn",
            "sig_password": PASSWORD,
            "expected_version": "1",
        },
    )
    body = htmllib.unescape(text(r) + text(c.get(path)))
    assert "cannot sign yet" in body and "identity was verified" in body, page[:200]
    assert engine.get(number).state != "cancelled"
