"""Segregation of administration on the admin pages (issue 14, item 5): a privileged grant
waits for a second administrator, who approves it on the user's page or the Privileged
accounts page; a self-grant and an incompatible role are refused with their reason."""

from __future__ import annotations

import html as htmllib

from tests.web.conftest import csrf, login
from tests.web.test_flows import admin, admin_post, logged_in, next_code, text
from workflow.identity import users as identity

__all__ = ["admin"]  # the fixture


def roles(engine, username: str) -> set[str]:
    with engine.reader() as s:
        return identity.roles_of(s, identity.get_user(s, username))


def test_a_privileged_grant_waits_for_a_second_administrator_on_the_pages(app, admin, account, engine):
    """R-IAM-1 R-IAM-5 R-A11-12-1: Ada's grant of qa to Emma is shown as awaiting a second
    administrator (Ada gets no approve button); Ben approves it on the Privileged accounts
    page with a reason and Emma then holds qa."""
    account("emma", "employee")
    account("ben", "admin", totp=True)
    page = "/admin/users/emma"
    r = admin_post(admin, "/admin/users/emma/grant", page, role="qa", expires="", reason="Moves to QA")
    body = htmllib.unescape(text(admin.get(r.headers["Location"])))
    assert "qa is a privileged role: grant request #" in body
    assert "Grants awaiting a second administrator" in body
    assert "You requested it: another administrator decides." in body
    assert "qa" not in roles(engine, "emma")
    ben = app.test_client()
    assert logged_in(login(ben, "ben", totp=next_code(account, "ben")))
    review = text(ben.get("/admin/privileged"))
    assert "Accounts holding privileged roles" in review and "Moves to QA" in review
    assert "Dormant accounts: no login in 90 days" in review
    request_id = int(review.split("/admin/grants/")[1].split("/")[0])
    r = admin_post(
        ben, f"/admin/grants/{request_id}/approve", "/admin/privileged", reason="Checked with the QA head"
    )
    assert r.status_code == 302
    assert f"Grant request #{request_id} (qa to emma) was approved" in htmllib.unescape(
        text(ben.get(r.headers["Location"]))
    )
    assert "qa" in roles(engine, "emma")


def test_refused_grants_are_shown_with_their_reason(admin, account, engine):
    """R-IAM-1 R-IAM-2 R-IAM-3: granting oneself a role, a role nobody declares, and qa to an
    administrator are refused with the rule's message; nothing is granted."""
    account("ben", "admin")
    for who, role, message in [
        ("ada", "qa", "You cannot grant a role to your own account"),
        ("ben", "superuser", "'superuser' is not a role any published workflow definition"),
        ("ben", "qa", "ben holds (or awaits) admin, which may not be combined with qa"),
    ]:
        page = f"/admin/users/{who}"
        r = admin_post(admin, f"{page}/grant", page, role=role, expires="", reason="try")
        assert message in htmllib.unescape(text(admin.get(r.headers["Location"]))), message
        assert role not in roles(engine, who)


def test_only_administrators_see_the_review_and_decide(client, account):
    """R-IAM-5: the Privileged accounts page and the decision URLs are for administrators
    only (403)."""
    account("emma", "employee")
    assert logged_in(login(client, "emma"))
    assert client.get("/admin/privileged").status_code == 403
    r = client.post("/admin/grants/1/approve", data={"reason": "x", "csrf_token": csrf(client, "/")})
    assert r.status_code == 403
