"""Resets end access; a person's sessions list, ending one and "Log out everywhere";
administrators end anyone's sessions (issue 14 item 1). As the person, a thief holding a
session or a token, and the administrator see it.
"""

from __future__ import annotations

import pytest

from tests.web import test_flows
from tests.web.conftest import PASSWORD, POLICY, csrf, login
from tests.web.test_flows import (
    NEW_PASSWORD,
    admin_post,
    logged_in,
    next_code,
    system_events,
    text,
)
from workflow.identity import tokens as api_tokens
from workflow.identity import users as identity

admin = test_flows.admin  # the fixture: a client logged in as Ada, an administrator

UA_LAPTOP = "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0"
UA_PHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0) Safari/604.1"


def browser(app, username: str, agent: str, ip: str = "127.0.0.1"):
    c = app.test_client()
    c.environ_base.update({"HTTP_USER_AGENT": agent, "REMOTE_ADDR": ip})
    assert logged_in(login(c, username))
    return c


def session_ids(client) -> list[str]:
    import re

    return re.findall(r'name="session_id" value="(\d+)"', text(client.get("/account/sessions")))


def ended(client, message: str) -> bool:
    r = client.get("/")
    return (
        r.status_code == 302 and "/login" in r.headers["Location"] and message in text(client.get("/login"))
    )


def own_token(engine, username: str) -> str:
    with engine.unit() as s:
        u = identity.get_user(s, username)
        return api_tokens.create_token(s, u, actor=u, name="script", scopes=("read",)).secret


def api(client, tok: str):
    return client.get("/api/v1/records", headers={"Authorization": f"Bearer {tok}"})


# --------------------------------------------------------------------------- own sessions


def test_a_person_sees_where_they_are_logged_in(app, account):
    """R-SEC-24 R-P11-200-2: the sessions page lists each open session with its browser,
    address and last activity, and marks the one in use."""
    account("emma", "employee")
    browser(app, "emma", UA_PHONE, "192.0.2.44")
    laptop = browser(app, "emma", UA_LAPTOP, "192.0.2.10")
    html = text(laptop.get("/account/sessions"))
    assert "iPhone" in html and "192.0.2.44" in html
    assert "Firefox/140.0" in html and "192.0.2.10" in html
    assert html.count("this session") == 1
    assert "Log out everywhere" in html


def test_ending_another_session_logs_that_browser_out_at_once(app, account, engine):
    """R-SEC-24 R-A11-12-1: ending the phone's session from the laptop logs the phone out on
    its next request, with a message; the laptop stays in; audited."""
    account("emma", "employee")
    phone = browser(app, "emma", UA_PHONE)
    laptop = browser(app, "emma", UA_LAPTOP)
    phone_id = min(session_ids(laptop), key=int)  # the phone logged in first
    r = laptop.post(
        "/account/sessions/end",
        data={"session_id": phone_id, "csrf_token": csrf(laptop, "/account/sessions")},
    )
    assert r.status_code == 302
    assert ended(phone, "Your session was ended from another of your sessions")
    assert laptop.get("/").status_code == 200
    ev = system_events(engine, "sessions_ended")[-1]
    assert ev.changes["username"] == "emma" and ev.changes["sessions"] == 1


def test_a_person_cannot_end_someone_elses_session(app, account):
    """R-SEC-24 R-P11-10d-1: a session id of another person is refused like one that does
    not exist; that session goes on."""
    account("emma", "employee")
    account("olga", "employee")
    olga = browser(app, "olga", UA_LAPTOP)
    olga_id = session_ids(olga)[0]
    emma = browser(app, "emma", UA_PHONE)
    emma.post(
        "/account/sessions/end", data={"session_id": olga_id, "csrf_token": csrf(emma, "/account/sessions")}
    )
    assert "There is no such open session of yours." in text(emma.get("/account/sessions"))
    assert olga.get("/").status_code == 200


def test_log_out_everywhere_ends_every_session_this_one_too(app, account, engine):
    """R-SEC-24 R-P11-200-2: "Log out everywhere" ends all the person's sessions at once."""
    account("emma", "employee")
    phone = browser(app, "emma", UA_PHONE)
    laptop = browser(app, "emma", UA_LAPTOP)
    r = laptop.post("/account/sessions/end-all", data={"csrf_token": csrf(laptop, "/account/sessions")})
    assert r.status_code == 302 and r.headers["Location"].endswith("/login")
    assert "You are logged out everywhere (2 sessions ended)." in text(laptop.get("/login"))
    assert ended(phone, "You logged out everywhere")
    assert laptop.get("/").status_code == 302
    assert system_events(engine, "sessions_ended")[-1].changes["sessions"] == 2


def test_changing_ones_password_ends_the_other_sessions(app, account):
    """R-SEC-23 R-P11-300b-1: after a password change only the session it was changed in
    stays open; a thief's session ends with a message."""
    account("emma", "employee")
    thief = browser(app, "emma", UA_PHONE, "198.51.100.66")
    me = browser(app, "emma", UA_LAPTOP)
    r = me.post(
        "/account/password",
        data={
            "current": PASSWORD,
            "new": NEW_PASSWORD,
            "confirm": NEW_PASSWORD,
            "csrf_token": csrf(me, "/account/password"),
        },
    )
    assert r.status_code == 302
    assert me.get("/").status_code == 200
    assert ended(thief, "Your password was changed in another session")


# --------------------------------------------------------------------------- resets


def test_an_admin_password_reset_ends_sessions_and_suspends_tokens(
    app,
    admin,
    account,
    engine,
):
    """R-SEC-23 R-P11-300c-1 R-A11-12-1: after an administrator issues a temporary password
    the user's sessions end at once and their API tokens answer 401 token_suspended until
    the user confirms them on the account page; both are audited."""
    account("emma", "employee")
    tok = own_token(engine, "emma")
    emma = browser(app, "emma", UA_LAPTOP)
    api_client = app.test_client()
    assert api(api_client, tok).status_code == 200
    admin_post(
        admin,
        "/admin/users/emma/action",
        "/admin/users/emma",
        action="reset_password",
        reason="Ticket 4711: forgot password",
    )
    assert ended(emma, "An administrator reset your password")
    r = api(api_client, tok)
    assert r.status_code == 401
    assert r.get_json()["error"]["code"] == "token_suspended"
    assert "confirms it under API tokens" in r.get_json()["error"]["message"]
    ev = system_events(engine, "api_tokens_suspended")[-1]
    assert (ev.actor_name, ev.changes["username"]) == ("Ada Tester", "emma")
    assert system_events(engine, "sessions_ended")[-1].reason == "Ticket 4711: forgot password"
    # the user logs in with the temporary password, changes it, and confirms the token
    temp = text(admin.get("/admin/users/emma")).split("(shown once): ")[1].split("<")[0]
    emma = app.test_client()
    login(emma, "emma", temp)
    emma.post(
        "/account/password",
        data={
            "current": temp,
            "new": NEW_PASSWORD,
            "confirm": NEW_PASSWORD,
            "csrf_token": csrf(emma, "/account/password"),
        },
    )
    page = text(emma.get("/account/tokens/"))
    assert "suspended" in page and "Confirm" in page
    token_id = page.split('action="/account/tokens/confirm"')[1].split('name="token_id" value="')[1]
    token_id = token_id.split('"')[0]
    emma.post(
        "/account/tokens/confirm", data={"token_id": token_id, "csrf_token": csrf(emma, "/account/tokens/")}
    )
    assert api(api_client, tok).status_code == 200
    assert system_events(engine, "api_token_confirmed")[-1].changes["username"] == "emma"


def test_an_authenticator_reset_ends_sessions_and_suspends_tokens(
    app,
    admin,
    account,
    engine,
):
    """R-SEC-23 R-P11-300c-1: resetting a lost authenticator logs out whoever holds the
    account's sessions and suspends its tokens."""
    account("quinn", "qa", "employee", totp=True)
    tok = own_token(engine, "quinn")
    quinn = app.test_client()
    assert logged_in(login(quinn, "quinn", totp=next_code(account, "quinn")))
    admin_post(
        admin, "/admin/users/quinn/action", "/admin/users/quinn", action="reset_totp", reason="Phone stolen"
    )
    assert ended(quinn, "An administrator reset your authenticator")
    assert api(app.test_client(), tok).get_json()["error"]["code"] == "token_suspended"


def test_a_suspended_token_cannot_be_confirmed_by_someone_else(engine, account):
    """R-SEC-23: only the owner confirms a suspended token."""
    from workflow.errors import NotAuthorized
    from workflow.identity import admin as accounts

    account("emma", "employee")
    account("olga", "employee")
    tok = own_token(engine, "emma")
    accounts.issue_temporary_password(engine, "emma", actor="system", reason="forgotten", policy=POLICY)
    with engine.reader() as s:
        row = api_tokens.find_token(s, tok[:12])
    with pytest.raises(NotAuthorized):
        api_tokens.confirm_own(engine, "olga", row.id)


# --------------------------------------------------------------------------- administrators


def test_an_admin_ends_a_users_sessions_with_a_reason(app, admin, account, engine):
    """R-SEC-24 R-A11-12-1: the user page lists the user's open sessions; ending them needs
    a reason, logs the user out at once and is audited with the administrator's name."""
    account("emma", "employee")
    emma = browser(app, "emma", UA_PHONE, "192.0.2.44")
    page = text(admin.get("/admin/users/emma"))
    assert "Open sessions" in page and "192.0.2.44" in page
    r = admin_post(admin, "/admin/users/emma/sessions/end", "/admin/users/emma", reason="")
    assert "A reason is required" in text(admin.get("/admin/users/emma"))
    assert emma.get("/").status_code == 200
    admin_post(admin, "/admin/users/emma/sessions/end", "/admin/users/emma", reason="Laptop reported stolen")
    assert "Ended 1 session of emma" in text(admin.get("/admin/users/emma"))
    assert ended(emma, "An administrator ended your session")
    ev = system_events(engine, "sessions_ended")[-1]
    assert (ev.actor_name, ev.reason, ev.changes["username"]) == (
        "Ada Tester",
        "Laptop reported stolen",
        "emma",
    )
    assert r.status_code == 302


def test_only_administrators_end_other_peoples_sessions(app, account):
    """R-SEC-24 R-P11-10g-1: the administrators' route refuses anyone else with 403."""
    account("emma", "employee")
    account("olga", "employee")
    olga = browser(app, "olga", UA_LAPTOP)
    r = olga.post(
        "/admin/users/emma/sessions/end", data={"reason": "x", "csrf_token": csrf(olga, "/account/sessions")}
    )
    assert r.status_code == 403
