"""Whole flows through Flask's test client: the login steps (password, TOTP, forced
enrolment, forced password change), idle timeout and logout, the inbox's claim / release /
delegate, the audit trail pages and CSV exports, administration, and the open-redirect check.
"""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import timedelta
from urllib.parse import urljoin, urlsplit

import pyotp
import pytest
from sqlalchemy import func, select

from tests.web.conftest import PASSWORD, POLICY, csrf, login
from workflow import clock
from workflow.audit import trail as audit
from workflow.db.models import AuditEvent, Record, RoleGrant, Task, TaskStatus, User, UserSession

NEW_PASSWORD = "Another-Long-Passphrase-42"
ADMIN_ACTIONS = ("user_created", "password_reset", "role_granted", "role_revoked",
                 "account_unlocked", "user_deactivated", "totp_reset")


# --------------------------------------------------------------------------- helpers


def next_code(account, username: str) -> str:
    """The next TOTP code: move the frozen clock one 30-second step (never sleep)."""
    clock.advance(timedelta(seconds=30))
    return account.totp[username].at(clock.now())


def text(r) -> str:
    return r.get_data(as_text=True)


def flashes(html: str) -> list[str]:
    return re.findall(r'<div class="flash flash-\w+">(.*?)</div>', html, re.S)


def logged_in(r) -> bool:
    return r.status_code == 302 and "/login" not in r.headers["Location"]


def system_events(engine, *actions: str) -> list[AuditEvent]:
    with engine.reader() as s:
        return s.execute(select(AuditEvent).where(AuditEvent.chain == audit.SYSTEM_CHAIN,
                                                  AuditEvent.action.in_(actions))
                         .order_by(AuditEvent.id)).scalars().all()


def user_row(engine, username: str) -> User:
    with engine.reader() as s:
        return s.execute(select(User).where(User.username == username)).scalar_one()


def open_task(engine, number: str) -> Task:
    with engine.reader() as s:
        return s.execute(select(Task).join(Record, Record.id == Task.record_id).where(
            Record.number == number, Task.status == TaskStatus.OPEN)).scalar_one()


def new_capa(engine, title: str = "Label mix-up") -> str:
    return engine.start("capa", "emma", {"title": title, "description": "d"}).number


@pytest.fixture
def admin(app, account):
    """A test client logged in as Ada, an administrator (TOTP enrolled, as POLICY requires)."""
    account("ada", "admin", totp=True)
    c = app.test_client()
    assert logged_in(login(c, "ada", totp=next_code(account, "ada")))
    return c


def admin_post(admin, path: str, page: str, **data):
    return admin.post(path, data={"csrf_token": csrf(admin, page), **data})


# --------------------------------------------------------------------------- login: TOTP step


def test_enrolled_user_gets_the_code_step_after_the_password(client, account):
    """R-P11-10d-1 R-P11-300e-1: an enrolled user enters a code after the password; no session
    exists before the code is accepted."""
    account("quinn", "qa", "employee", totp=True)
    r = login(client, "quinn")
    assert r.status_code == 302 and r.headers["Location"].endswith("/login/code")
    # password alone is not a login: the inbox still sends us to the login page
    r = client.get("/")
    assert r.status_code == 302 and "/login" in r.headers["Location"]
    html = text(client.get("/login/code"))
    assert "Authentication code" in html and 'autocomplete="one-time-code"' in html
    r = client.post("/login/code", data={"code": next_code(account, "quinn"),
                                         "csrf_token": csrf(client, "/login/code")})
    assert logged_in(r)
    assert client.get("/").status_code == 200


def test_wrong_code_is_refused_with_a_message_and_counts_as_a_failure(client, account, engine):
    """R-P11-300d-1 R-P11-10d-1: a wrong code is refused with a message, starts no session
    and is recorded as a failed login."""
    account("quinn", "qa", "employee", totp=True)
    login(client, "quinn")
    good = next_code(account, "quinn")
    wrong = f"{(int(good) + 1) % 1_000_000:06d}"
    r = client.post("/login/code", data={"code": wrong,
                                         "csrf_token": csrf(client, "/login/code")})
    assert r.status_code == 401
    assert "The authentication code is wrong, expired or was already used." in text(r)
    assert client.get("/").status_code == 302
    failures = system_events(engine, "login_failed")
    assert failures[-1].changes["detail"] == "wrong authentication code"
    assert user_row(engine, "quinn").failed_attempts == 1
    # the right code still works afterwards (the pending login survived the mistake)
    r = client.post("/login/code", data={"code": good,
                                         "csrf_token": csrf(client, "/login/code")})
    assert logged_in(r)


def test_replayed_code_is_refused(app, account):
    """R-P11-300e-1 R-P11-200-1: a code that was already used cannot log in a second time."""
    account("quinn", "qa", "employee", totp=True)
    code = next_code(account, "quinn")
    first = app.test_client()
    assert logged_in(login(first, "quinn", totp=code))
    second = app.test_client()  # e.g. someone who watched the code being typed
    r = login(second, "quinn", totp=code)
    assert r.status_code == 401
    assert "already used" in text(r)
    assert second.get("/").status_code == 302


def test_code_page_without_a_password_step_goes_back_to_login(client):
    """R-P11-10d-1: the code page cannot be used without passing the password step first."""
    r = client.get("/login/code")
    assert r.status_code == 302 and r.headers["Location"].endswith("/login")


# --------------------------------------------------------------------------- forced enrolment


def test_role_requiring_totp_is_forced_to_enrol_then_sees_recovery_codes_once(client, account,
                                                                             engine):
    """R-P11-300e-1 R-P11-200-1: an admin (POLICY requires TOTP) without an authenticator is
    sent to enrolment from every page until a code confirms it; recovery codes show once."""
    account("ada", "admin")
    r = login(client, "ada")
    assert r.status_code == 302
    for path in ("/", "/records/new", "/admin/users", "/audit/", "/account/password"):
        r = client.get(path)
        if path == "/account/password":  # reachable while enrolment is pending
            assert r.status_code == 200
            continue
        assert r.status_code == 302, path
        assert r.headers["Location"].endswith("/account/authenticator"), path
    html = text(client.get("/account/authenticator"))
    assert "Your role requires a second factor" in html and "<svg" in html
    secret = re.search(r'<code class="secret">([A-Z2-7]+)</code>', html).group(1)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html).group(1)

    r = client.post("/account/authenticator", data={"code": "000000", "csrf_token": token})
    assert "The code does not match" in text(r)
    assert client.get("/").status_code == 302  # still pending

    clock.advance(timedelta(seconds=30))
    r = client.post("/account/authenticator",
                    data={"code": pyotp.TOTP(secret).at(clock.now()), "csrf_token": token})
    html = text(r)
    assert r.status_code == 200 and "Your recovery codes" in html
    codes = re.findall(r"<li><code>([0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4})</code></li>", html)
    assert len(codes) == 10
    assert user_row(engine, "ada").totp_enabled_at is not None
    assert [e.actor_name for e in system_events(engine, "totp_enrolled")] == ["Ada Tester"]

    assert client.get("/").status_code == 200
    assert client.get("/admin/users").status_code == 200
    again = text(client.get("/account/authenticator"))
    assert "already enrolled" in again
    assert not any(c in again for c in codes)


# --------------------------------------------------------------------------- forced password change


def test_temporary_password_after_admin_reset_forces_a_change_everywhere(app, admin, account,
                                                                         engine):
    """R-P11-200-4 R-P11-300b-1: after an administrator issues a temporary password, every page
    sends the user to /account/password until they choose their own."""
    account("emma", "employee")
    page = "/admin/users/emma"
    r = admin_post(admin, "/admin/users/emma/action", page, action="reset_password",
                   reason="Forgot password, ticket 42")
    assert r.status_code == 302
    html = text(admin.get(page))
    temp = re.search(r"Temporary password for emma \(shown once\): (Tmp-[\w-]+)", html).group(1)
    assert temp not in text(admin.get(page))  # shown once only
    ev = system_events(engine, "password_reset")[-1]
    assert ev.actor_name == "Ada Tester" and ev.reason == "Forgot password, ticket 42"
    assert temp not in str(ev.changes)

    emma = app.test_client()
    assert login(emma, "emma", PASSWORD).status_code == 401  # the old password is gone
    assert login(emma, "emma", temp).status_code == 302
    for path in ("/", "/records/new", "/records/new/capa", "/account/authenticator"):
        r = emma.get(path)
        assert r.status_code == 302, path
        assert r.headers["Location"].endswith("/account/password"), path
    html = text(emma.get("/account/password"))
    assert "was set by an administrator" in html
    token = csrf(emma, "/account/password")
    r = emma.post("/account/password", data={"csrf_token": token, "current": temp,
                                             "new": NEW_PASSWORD, "confirm": "different-one"})
    assert "The two new passwords differ." in text(r)
    assert emma.get("/").status_code == 302
    r = emma.post("/account/password", data={"csrf_token": token, "current": temp,
                                             "new": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert r.status_code == 302 and r.headers["Location"].endswith("/")
    assert "Your password was changed." in text(emma.get("/"))
    assert emma.get("/records/new").status_code == 200
    assert user_row(engine, "emma").must_change_password is False


def test_wrong_current_passwords_lock_the_account_and_end_the_session(client, account,
                                                                       engine):
    """R-P11-300d-1 R-P11-200-2: guessing the current password on the change-password page
    counts toward lockout; at the threshold the session ends with a message saying why."""
    account("emma", "employee")
    login(client, "emma")
    token = csrf(client, "/account/password")
    for _ in range(POLICY.lockout_threshold - 1):
        r = client.post("/account/password", data={"csrf_token": token, "current": "guess-1234",
                                                   "new": NEW_PASSWORD, "confirm": NEW_PASSWORD})
        assert r.status_code == 200 and "Unknown username or wrong password" in text(r)
    r = client.post("/account/password", data={"csrf_token": token, "current": "guess-1234",
                                               "new": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert r.status_code == 302 and r.headers["Location"].endswith("/login")
    assert "locked" in " ".join(flashes(text(client.get("/login"))))
    assert user_row(engine, "emma").locked_at is not None
    assert client.get("/").status_code == 302
    with engine.reader() as s:
        assert s.execute(select(UserSession)).scalar_one().end_reason == "locked"


# --------------------------------------------------------------------------- sessions


def test_idle_timeout_ends_the_session_with_a_message(client, account, engine):
    """R-P11-200-2 R-P11-10d-1: 16 idle minutes (policy: 15) end the session server-side; the
    next request goes to the login page saying the session timed out."""
    account("emma", "employee")
    login(client, "emma")
    clock.advance(timedelta(minutes=14))
    assert client.get("/").status_code == 200  # activity keeps the session alive
    clock.advance(timedelta(minutes=16))
    r = client.get("/records/new")
    assert r.status_code == 302 and "/login" in r.headers["Location"]
    html = text(client.get(r.headers["Location"]))
    assert "Your session timed out after inactivity; log in again." in html
    with engine.reader() as s:
        row = s.execute(select(UserSession)).scalar_one()
        assert row.end_reason == "idle" and row.ended_at is not None


def test_logout_ends_the_session_server_side(app, client, account, engine):
    """R-P11-200-2 R-P11-10d-1: logout (POST only) ends the session in the database: a copy of
    the old cookie no longer works."""
    account("emma", "employee")
    login(client, "emma")
    old_cookie = client.get_cookie("qms_session").value
    assert client.get("/logout").status_code == 405  # no logout by a mere link
    r = client.post("/logout", data={"csrf_token": csrf(client, "/")})
    assert r.status_code == 302 and r.headers["Location"].endswith("/login")
    assert "You are logged out." in text(client.get("/login"))
    replay = app.test_client()
    replay.set_cookie("qms_session", old_cookie)
    r = replay.get("/")
    assert r.status_code == 302 and "/login" in r.headers["Location"]
    with engine.reader() as s:
        row = s.execute(select(UserSession)).scalar_one()
        assert row.end_reason == "logout"
    assert [e.changes["reason"] for e in system_events(engine, "logout")] == ["logout"]


# --------------------------------------------------------------------------- inbox


def test_claim_release_and_delegate_from_the_inbox(app, client, account, engine):
    """R-P11-10e-1 R-P11-10e-2 R-P11-10g-1: claiming, releasing and delegating a task are
    audited on the record's own chain with who and why; the inbox shows who holds it."""
    account("emma", "employee")
    account("quinn", "qa", "employee")
    account("quentin", "qa", "employee")
    number = new_capa(engine)
    task = open_task(engine, number)
    login(client, "quinn")
    html = text(client.get("/"))
    assert number in html and f"/tasks/{task.id}/claim" in html and "not claimed" in html

    r = client.post(f"/tasks/{task.id}/claim", data={"csrf_token": csrf(client, "/")})
    assert r.status_code == 302
    html = text(client.get("/"))
    assert f"You now hold the task on {number}." in html
    assert '<span class="badge badge-mine">you</span>' in html
    assert f"/tasks/{task.id}/release" in html and f"/tasks/{task.id}/delegate" in html

    client.post(f"/tasks/{task.id}/claim", data={"csrf_token": csrf(client, "/")})
    assert f"You already hold this task on {number}." in text(client.get("/"))

    client.post(f"/tasks/{task.id}/release", data={"csrf_token": csrf(client, "/")})
    html = text(client.get("/"))
    assert f"The task on {number} is open to its role again." in html
    assert "badge-mine" not in html

    client.post(f"/tasks/{task.id}/claim", data={"csrf_token": csrf(client, "/")})
    path = f"/tasks/{task.id}/delegate"
    page = text(client.get(path))
    assert "Quentin Tester (quentin)" in page and "Quinn Tester (quinn)" not in page
    r = client.post(path, data={"csrf_token": csrf(client, path), "to": "quentin",
                                "reason": ""})
    assert 'class="field has-error"' in text(r) and "This field is required." in text(r)
    assert open_task(engine, number).assignee_id == user_row(engine, "quinn").id
    r = client.post(path, data={"csrf_token": csrf(client, path), "to": "quentin",
                                "reason": "On leave next week"})
    assert r.status_code == 302
    assert f"The task on {number} was delegated." in text(client.get("/"))
    assert open_task(engine, number).assignee_id == user_row(engine, "quentin").id

    quentin = app.test_client()
    login(quentin, "quentin")
    assert '<span class="badge badge-mine">you</span>' in text(quentin.get("/"))

    with engine.reader() as s:
        rec = s.execute(select(Record).where(Record.number == number)).scalar_one()
        events = s.execute(select(AuditEvent).where(AuditEvent.record_id == rec.id,
                                                    AuditEvent.action.like("task_%"))
                           .order_by(AuditEvent.seq)).scalars().all()
    assert [e.action for e in events] == ["task_claimed", "task_released", "task_claimed",
                                          "task_delegated"]
    assert {e.chain for e in events} == {audit.record_chain(rec.id)}
    assert all(e.actor_name == "Quinn Tester" for e in events)
    assert events[-1].reason == "On leave next week"
    assert events[-1].changes["task"]["assignee"] == ["quinn", "quentin"]


def test_claiming_a_task_of_a_role_you_do_not_hold_is_refused(client, account, engine):
    """R-P11-10g-1: the server checks the role on claim, whatever the page offered."""
    account("emma", "employee")
    number = new_capa(engine)
    task = open_task(engine, number)  # open to QA
    login(client, "emma")
    client.post(f"/tasks/{task.id}/claim", data={"csrf_token": csrf(client, "/")})
    assert "which you do not hold" in text(client.get("/")).replace("&#39;", "'")
    assert open_task(engine, number).assignee_id is None


# --------------------------------------------------------------------------- audit trail


def test_system_audit_trail_for_qa_with_filters_and_csv(client, account, engine):
    """R-A11-9-3 R-P11-10e-2 R-P11-10b-1: QA sees the system-wide audit trail, filters it by
    record, user, action and date, and exports it as CSV."""
    account("emma", "employee")
    account("quinn", "qa", "employee")
    first = new_capa(engine, "First problem")
    second = new_capa(engine, "Second problem")
    engine.fire(second, "assign", "quinn", {"owner": "quinn"})
    login(client, "quinn")

    html = text(client.get("/audit/"))
    assert f">{first}</a>" in html and f">{second}</a>" in html and "<td>Emma Tester</td>" in html
    assert "Export CSV" in html

    html = text(client.get(f"/audit/?record={second.lower()}"))
    assert f">{second}</a>" in html and f">{first}</a>" not in html
    assert "<td>Quinn Tester</td>" in html and "investigation" in html

    html = text(client.get("/audit/?action=login"))
    assert "<td>Quinn Tester</td>" in html and f">{first}</a>" not in html

    html = text(client.get("/audit/?user=emma"))
    assert "<td>Emma Tester</td>" in html and "<td>Quinn Tester</td>" not in html

    link = f">{first}</a>"
    assert link in text(client.get("/audit/?from=2026-03-02&to=2026-03-02"))
    assert link not in text(client.get("/audit/?from=2026-03-03"))
    assert link not in text(client.get("/audit/?to=2026-03-01"))

    r = client.get(f"/audit/?format=csv&record={second}")
    assert r.status_code == 200 and r.mimetype == "text/csv"
    assert "attachment" in r.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(text(r))))
    assert rows[0] == ["chain", "seq", "time_utc", "actor", "action", "record",
                       "record_version", "transition", "from_state", "to_state", "changes",
                       "reason", "hash"]
    body = [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]
    assert {b["record"] for b in body} == {second}
    assert [b["action"] for b in body] == ["transition", "update", "create"]  # newest first
    assert body[0]["actor"] == "Quinn Tester" and body[0]["to_state"] == "investigation"
    assert json.loads(body[1]["changes"]) == {"owner": [None, "quinn"]}
    assert body[2]["actor"] == "Emma Tester"
    assert body[2]["time_utc"].startswith("2026-03-02T09:00:00")
    with engine.reader() as s:
        n = s.execute(select(func.count()).select_from(AuditEvent)).scalar_one()
    assert len(list(csv.reader(io.StringIO(text(client.get("/audit/?format=csv")))))) == n + 1


def test_record_audit_trail_csv(client, account, engine):
    """R-P11-10b-1 R-P11-10e-2: a record's own audit trail exports as CSV naming the record."""
    account("emma", "employee")
    account("quinn", "qa", "employee")
    number = new_capa(engine)
    engine.fire(number, "assign", "quinn", {"owner": "quinn"})
    login(client, "emma")
    html = text(client.get(f"/records/{number}/audit"))
    assert "Emma Tester" in html and "Quinn Tester" in html
    r = client.get(f"/records/{number}/audit?format=csv")
    assert r.status_code == 200 and r.mimetype == "text/csv"
    assert f'filename="{number}-audit-trail.csv"' in r.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(text(r))))
    assert rows[0][:6] == ["chain", "seq", "time_utc", "actor", "action", "record"]
    assert [(row[1], row[3], row[4], row[5]) for row in rows[1:]] == [
        ("1", "Emma Tester", "create", number),
        ("2", "Quinn Tester", "update", number),
        ("3", "Quinn Tester", "transition", number)]


def test_audit_trail_needs_qa_admin_or_isms(client, account):
    """R-P11-10d-1 R-P11-10g-1: the system audit trail and its export are refused to others."""
    account("emma", "employee")
    login(client, "emma")
    assert client.get("/audit/").status_code == 403
    assert client.get("/audit/?format=csv").status_code == 403


# --------------------------------------------------------------------------- administration


def test_admin_creates_a_user_with_a_temporary_password_shown_once(app, admin, engine):
    """R-A11-12-1 R-P11-200-4 R-P11-100a-1: creating a user is audited with the admin's name and
    reason; the temporary password is shown once and must be changed at first login."""
    r = admin_post(admin, "/admin/users/new", "/admin/users", username="Nora",
                   full_name="Nora Newcomer", email="nora@example.com", timezone="Europe/Berlin",
                   reason="Joined QC lab")
    assert r.status_code == 302 and r.headers["Location"].endswith("/admin/users/nora")
    html = text(admin.get("/admin/users/nora"))
    temp = re.search(r"Temporary password \(shown once; they must change it at first login\): "
                     r"(Tmp-[\w-]+)", html).group(1)
    assert "Nora Newcomer" in html
    assert temp not in text(admin.get("/admin/users/nora"))
    ev = system_events(engine, "user_created")[-1]
    assert ev.actor_name == "Ada Tester" and ev.reason == "Joined QC lab"
    assert ev.changes["username"] == [None, "nora"]
    assert any(e.actor_name == "Ada Tester" and e.reason == "Joined QC lab"
               for e in system_events(engine, "password_reset"))

    # a username is never reused
    r = admin_post(admin, "/admin/users/new", "/admin/users", username="NORA",
                   full_name="Another Nora", timezone="UTC", reason="Second hire")
    assert "already taken" in text(admin.get(r.headers["Location"]))
    assert [e.reason for e in system_events(engine, "user_created")][-1] == "Joined QC lab"

    nora = app.test_client()
    assert login(nora, "nora", temp).status_code == 302
    assert nora.get("/").headers["Location"].endswith("/account/password")


def test_admin_grants_and_revokes_a_role_with_a_reason(admin, account, engine):
    """R-A11-12-1 R-P11-10g-3: grants and revocations carry the admin's name and reason."""
    account("emma", "employee")
    page = "/admin/users/emma"
    r = admin_post(admin, "/admin/users/emma/grant", page, role="capa_owner", expires="",
                   reason="Owns CAPAs now")
    assert r.status_code == 302
    assert "Granted capa_owner to emma." in text(admin.get(page))
    ev = system_events(engine, "role_granted")[-1]
    assert (ev.actor_name, ev.reason, ev.changes["role"]) == ("Ada Tester", "Owns CAPAs now",
                                                              [None, "capa_owner"])
    r = admin_post(admin, "/admin/users/emma/action", page, action="revoke", role="capa_owner",
                   reason="Moved back to production")
    assert "Revoked capa_owner from emma." in text(admin.get(page))
    ev = system_events(engine, "role_revoked")[-1]
    assert (ev.actor_name, ev.reason, ev.changes["role"]) == ("Ada Tester",
                                                              "Moved back to production",
                                                              ["capa_owner", None])
    with engine.reader() as s:
        grant = s.execute(select(RoleGrant).where(RoleGrant.role == "capa_owner")
                          ).scalar_one()
        assert grant.revoked_at is not None and grant.revoke_reason == "Moved back to production"


def test_admin_unlocks_a_locked_user(app, admin, account, engine):
    """R-P11-300d-1 R-A11-12-1: five wrong passwords lock the account; an admin unlocks it with
    a reason, audited, and the user can log in again."""
    account("emma", "employee")
    emma = app.test_client()
    for _ in range(POLICY.lockout_threshold):
        login(emma, "emma", "wrong-password-123")
    assert user_row(engine, "emma").locked_at is not None
    r = login(emma, "emma")
    assert r.status_code == 401 and "locked" in text(r)

    page = "/admin/users/emma"
    assert '<option value="unlock">Unlock</option>' in text(admin.get(page))
    admin_post(admin, "/admin/users/emma/action", page, action="unlock",
               reason="Identity confirmed by phone")
    assert "emma is unlocked." in text(admin.get(page))
    ev = system_events(engine, "account_unlocked")[-1]
    assert (ev.actor_name, ev.reason) == ("Ada Tester", "Identity confirmed by phone")
    assert logged_in(login(emma, "emma"))


def test_admin_deactivates_a_user_who_then_cannot_log_in(app, admin, account, engine):
    """R-P11-10d-1 R-P11-100a-1 R-A11-12-1: deactivation is audited, ends the user's open
    session at once, and their next login fails."""
    account("emma", "employee")
    emma = app.test_client()
    login(emma, "emma")
    assert emma.get("/").status_code == 200
    page = "/admin/users/emma"
    admin_post(admin, "/admin/users/emma/action", page, action="deactivate",
               reason="Left the company")
    assert "emma is deactivated." in text(admin.get(page))
    ev = system_events(engine, "user_deactivated")[-1]
    assert (ev.actor_name, ev.reason) == ("Ada Tester", "Left the company")
    r = emma.get("/")
    assert r.status_code == 302 and "/login" in r.headers["Location"]
    r = login(app.test_client(), "emma")
    assert r.status_code == 401 and "Unknown username or wrong password, or the account is " \
        "locked" in text(r)
    # an admin cannot deactivate themselves
    admin_post(admin, "/admin/users/ada/action", "/admin/users/ada", action="deactivate",
               reason="oops")
    assert "You cannot deactivate your own account." in text(admin.get("/admin/users/ada"))
    assert user_row(engine, "ada").active


def test_admin_resets_an_authenticator(app, admin, account, engine):
    """R-P11-300c-1 R-A11-12-1: resetting a lost authenticator is audited with the admin's name
    and reason; the old codes stop working and the user is no longer asked for one."""
    account("quinn", "qa", "employee", totp=True)
    old_totp = account.totp["quinn"]
    page = "/admin/users/quinn"
    assert '<option value="reset_totp">Reset authenticator</option>' in text(admin.get(page))
    admin_post(admin, "/admin/users/quinn/action", page, action="reset_totp",
               reason="Phone lost")
    assert "authenticator was reset" in text(admin.get(page))
    ev = system_events(engine, "totp_reset")[-1]
    assert (ev.actor_name, ev.reason, ev.changes) == ("Ada Tester", "Phone lost",
                                                      {"username": "quinn"})
    assert user_row(engine, "quinn").totp_secret is None
    quinn = app.test_client()
    r = login(quinn, "quinn", totp=old_totp.at(clock.now()))
    assert logged_in(r)  # no code step any more (POLICY does not require TOTP for qa)
    with quinn.session_transaction() as sess:
        assert "pending" not in sess


@pytest.mark.parametrize("path, data", [
    ("/admin/users/new", {"username": "nora", "full_name": "Nora Newcomer", "timezone": "UTC"}),
    ("/admin/users/emma/grant", {"role": "qa"}),
    ("/admin/users/emma/action", {"action": "revoke", "role": "employee"}),
    ("/admin/users/emma/action", {"action": "unlock"}),
    ("/admin/users/emma/action", {"action": "deactivate"}),
    ("/admin/users/emma/action", {"action": "reset_password"}),
    ("/admin/users/emma/action", {"action": "reset_totp"}),
])
@pytest.mark.parametrize("reason", ["", "   "])
def test_admin_actions_without_a_reason_are_refused_and_change_nothing(admin, account, engine,
                                                                       path, data, reason):
    """R-A11-12-1 R-P11-10e-7: every admin action needs a reason; without one nothing changes
    and nothing is audited."""
    account("emma", "employee", totp=True)
    with engine.unit() as s:  # give unlock something to do
        s.execute(User.__table__.update().where(User.username == "emma")
                  .values(failed_attempts=5, locked_at=clock.now()))
    before = user_row(engine, "emma")
    with engine.reader() as s:
        grants = s.execute(select(func.count()).select_from(RoleGrant)).scalar_one()
        users = s.execute(select(func.count()).select_from(User)).scalar_one()
    events = len(system_events(engine, *ADMIN_ACTIONS))
    r = admin_post(admin, path, "/admin/users/emma", reason=reason, **data)
    assert r.status_code == 302
    html = text(admin.get(r.headers["Location"]))
    assert "reason" in html.lower() and "flash-error" in html
    after = user_row(engine, "emma")
    assert (after.active, after.locked_at, after.password_hash, after.totp_secret,
            after.must_change_password) == (before.active, before.locked_at,
                                            before.password_hash, before.totp_secret,
                                            before.must_change_password)
    with engine.reader() as s:
        assert s.execute(select(func.count()).select_from(RoleGrant)).scalar_one() == grants
        assert s.execute(select(func.count()).select_from(User)).scalar_one() == users
        assert s.execute(select(RoleGrant).where(RoleGrant.revoked_at.is_not(None))).first() \
            is None
    assert len(system_events(engine, *ADMIN_ACTIONS)) == events


def test_admin_posts_are_refused_to_non_admins(client, account, engine):
    """R-P11-10g-1: admin POSTs are checked server-side: an employee posting them gets 403."""
    account("emma", "employee")
    login(client, "emma")
    token = csrf(client, "/")
    r = client.post("/admin/users/emma/action", data={"csrf_token": token, "action":
                                                      "deactivate", "reason": "x"})
    assert r.status_code == 403
    assert user_row(engine, "emma").active


# --------------------------------------------------------------------------- open redirect


@pytest.mark.parametrize("target", [
    "https://evil.example", "//evil.example", "https:/evil.example", "/\\evil.example",
    "\\\\evil.example", "/\t/evil.example", "javascript:alert(1)", " //evil.example",
])
def test_login_next_never_redirects_off_site(client, account, target):
    """R-P11-30-1: /login?next=<another site> lands on the inbox, never off-site."""
    account("emma", "employee")
    client.get("/login", query_string={"next": target})
    r = client.post("/login", data={"username": "emma", "password": PASSWORD,
                                    "csrf_token": csrf(client, "/login")})
    assert r.status_code == 302
    location = r.headers["Location"]
    # resolve it as a browser would (tabs and newlines dropped, "\\" read as "/")
    browser_view = re.sub(r"[\t\n\r]", "", location).strip().replace("\\", "/")
    landed = urlsplit(urljoin("http://localhost/login", browser_view))
    assert (landed.scheme, landed.netloc) == ("http", "localhost"), location


def test_login_next_keeps_a_local_page(client, account):
    """R-P11-10d-1: after logging in, the user lands on the page they asked for."""
    account("emma", "employee")
    r = client.get("/records/new")
    assert r.status_code == 302
    client.get(r.headers["Location"])
    r = client.post("/login", data={"username": "emma", "password": PASSWORD,
                                    "csrf_token": csrf(client, "/login")})
    assert r.headers["Location"].startswith("/records/new")
