"""The profile page (time zone, e-mail, notification preferences; audited), an administrator
changing them after creation, the idle-timeout keep-alive, and drafts of unsubmitted forms
(issue 17, items 6 and 7)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from tests.web.conftest import csrf, login
from tests.web.test_api import DEV
from tests.web.test_flows import admin  # noqa: F401 - the fixture
from workflow import clock, form_drafts
from workflow.db.models import AuditEvent, FormDraft, Record
from workflow.errors import NotAuthorized
from workflow.identity import profile as profiles
from workflow.identity import users as identity


def prefs_form(**off):
    """Every preference on, except the (kind, channel) pairs given as kind="email" etc."""
    out = {}
    for kind in profiles.CHOOSABLE:
        for ch in profiles.CHANNELS:
            if off.get(kind) != ch:
                out[f"pref-{kind}-{ch}"] = "1"
    return out


def events(engine, action):
    with engine.reader() as s:
        return s.execute(select(AuditEvent).where(AuditEvent.action == action)
                         .order_by(AuditEvent.id)).scalars().all()


def test_a_person_sets_their_zone_email_and_preferences(engine, client, account):
    """R-UI-52: the profile page saves time zone, e-mail, delivery mode and which
    notifications arrive how; the change is one audited event with old and new values, and
    times are then shown in the new zone."""
    account("emma", "employee")
    login(client, "emma")
    page = client.get("/account/profile")
    assert page.status_code == 200 and 'name="timezone"' in page.get_data(as_text=True)
    r = client.post("/account/profile", data={
        "csrf_token": csrf(client, "/account/profile"), "timezone": "Asia/Tokyo",
        "email": "Emma@Example.ORG", "notify_mode": "digest",
        **prefs_form(due_soon="email", escalation="in_app")})
    assert r.status_code == 302
    with engine.reader() as s:
        u = identity.get_user(s, "emma")
        assert (u.timezone, u.email, u.notify_mode) == ("Asia/Tokyo", "Emma@example.org",
                                                        "digest")
        assert not profiles.wants(u, "due_soon", "email")
        assert profiles.wants(u, "due_soon", "in_app")
        assert not profiles.wants(u, "escalation", "in_app")
        assert profiles.wants(u, "account_locked", "email")  # security: always
    (ev,) = events(engine, "profile_changed")
    assert ev.changes["timezone"] == ["UTC", "Asia/Tokyo"]
    assert ev.changes["email"][1] == "Emma@example.org"
    assert ev.changes["notify_prefs"][1]["due_soon"] == {"email": False, "in_app": True}
    with engine.reader() as s:
        assert ev.actor_id == identity.get_user(s, "emma").id
    footer = client.get("/").get_data(as_text=True)
    assert "Times shown in Asia/Tokyo" in footer


@pytest.mark.parametrize("field,value,message", [
    ("timezone", "Europe/Pariss", "did you mean Europe/Paris"),
    ("timezone", "../etc/passwd", "must be a time zone of the tz database"),
    ("email", "not-an-address", "is not a usable e-mail address"),
    ("notify_mode", "hourly", "must be one of immediate, digest"),
])
def test_bad_profile_values_are_refused_and_change_nothing(engine, client, account, field,
                                                          value, message):
    """R-UI-52: a misspelt zone (validated against the tz database), a bad address or mode
    gets a clear message, status 422, and changes nothing (no value, no audit event)."""
    account("emma", "employee")
    login(client, "emma")
    data = {"csrf_token": csrf(client, "/account/profile"), "timezone": "Europe/Berlin",
            "email": "emma@example.org", "notify_mode": "immediate", **prefs_form()}
    data[field] = value
    r = client.post("/account/profile", data=data)
    assert r.status_code == 422
    assert message in r.get_data(as_text=True)
    with engine.reader() as s:
        u = identity.get_user(s, "emma")
        assert (u.timezone, u.email, u.notify_mode) == ("UTC", "emma@example.com",
                                                        "immediate")
    assert events(engine, "profile_changed") == []


def test_administrator_changes_a_profile_with_a_reason(engine, admin, account):  # noqa: F811
    """R-UI-52: after creation an administrator changes a user's zone, e-mail and
    preferences through the same command (reason required, audited with the admin as actor);
    without a reason nothing changes; a non-administrator cannot."""
    account("emma", "employee")
    page = "/admin/users/emma"
    assert 'action="/admin/users/emma/profile"' in admin.get(page).get_data(as_text=True)
    data = {"timezone": "America/New_York", "email": "emma@example.org",
            "notify_mode": "immediate", **prefs_form(generic="email")}
    r = admin.post("/admin/users/emma/profile", data={"csrf_token": csrf(admin, page), **data})
    assert r.status_code == 302
    assert events(engine, "profile_changed") == []  # no reason: refused
    r = admin.post("/admin/users/emma/profile",
                   data={"csrf_token": csrf(admin, page), "reason": "ticket 42", **data})
    assert r.status_code == 302
    (ev,) = events(engine, "profile_changed")
    assert ev.reason == "ticket 42" and ev.changes["username"] == "emma"
    assert ev.changes["timezone"] == ["UTC", "America/New_York"]
    with engine.reader() as s:
        ada = identity.get_user(s, "ada")
        assert ev.actor_id == ada.id
        assert identity.get_user(s, "emma").email == "emma@example.org"


def test_only_the_person_or_an_administrator_changes_a_profile(engine, account):
    """R-UI-52: the command refuses anyone else, whatever the interface."""
    from workflow.errors import NotAuthorized
    account("emma", "employee")
    account("olga", "employee")
    with pytest.raises(NotAuthorized):
        profiles.update_profile(engine, "emma", actor="olga", timezone="Asia/Tokyo",
                                reason="because")
    with engine.reader() as s:
        assert identity.get_user(s, "emma").timezone == "UTC"


def test_keepalive_extends_the_session_and_drafts_do_not(app, engine, client, account):
    """R-UI-53: "Stay signed in" records activity (the session lasts a full idle period
    again); saving a draft and asking the status are not activity, so an open form that
    autosaves does not keep an unattended session alive."""
    account("emma", "employee")
    login(client, "emma")
    token = csrf(client, "/")
    clock.advance(timedelta(minutes=10))
    s = client.get("/session/status").get_json()
    assert 290 <= s["idle_seconds"] <= 300  # 15 min idle policy, 10 min gone
    r = client.post("/drafts/save", headers={"X-CSRFToken": token},
                    json={"form": "new/deviation", "fields": [["title", "x"]]})
    assert r.status_code == 200
    assert client.get("/session/status").get_json()["idle_seconds"] <= 300
    r = client.post("/session/keepalive", headers={"X-CSRFToken": token})
    assert r.status_code == 200 and r.get_json()["idle_seconds"] == 15 * 60
    clock.advance(timedelta(minutes=14))
    assert client.get("/session/status").status_code == 200
    clock.advance(timedelta(minutes=2))
    r = client.post("/drafts/save", headers={"X-CSRFToken": token},
                    json={"form": "new/deviation", "fields": [["title", "y"]]})
    assert r.status_code == 401 and r.get_json()["ended"]


def test_keepalive_needs_the_csrf_token(client, account):
    """R-UI-53: the keep-alive is a POST checked for CSRF like every other."""
    account("emma", "employee")
    login(client, "emma")
    assert client.post("/session/keepalive").status_code == 400


def test_pages_carry_the_timeout_warning_without_inline_script(client, account):
    """R-UI-53: every page of a logged-in person has the warning box, its data and the static
    script; no inline script (the CSP allows scripts from the site only)."""
    account("emma", "employee")
    login(client, "emma")
    r = client.get("/")
    html = r.get_data(as_text=True)
    assert 'id="timeout-warning"' in html and "Stay signed in" in html
    assert 'data-idle-seconds="900"' in html or 'data-idle-seconds="899"' in html
    assert '<script src="/static/session.js"' in html
    assert "<script>" not in html and "onclick" not in html
    assert "script-src 'self'" in r.headers["Content-Security-Policy"]


def test_draft_is_restored_only_for_its_owner_and_deleted_on_submit(engine, app, client,
                                                                  account):
    """R-UI-54: a saved draft of a step's form comes back (with a notice) when its owner opens
    the form again; it is not in the record or the audit trail; another person never sees
    it; secrets are never kept; submitting deletes it."""
    account("emma", "employee")
    account("quinn", "qa", "employee")
    account("quentin", "qa", "employee")
    account("olga", "employee")
    r = engine.start("deviation", "emma", DEV)
    login(client, "quinn")
    path = f"/records/{r.number}/do/triage"
    form_html = client.get(path).get_data(as_text=True)
    assert f'data-draft-key="{r.number}/triage"' in form_html
    token = csrf(client, path)
    trail_before = len(events(engine, "update")) + len(events(engine, "transition"))
    resp = client.post("/drafts/save", headers={"X-CSRFToken": token}, json={
        "form": f"{r.number}/triage",
        "fields": [["expected_version", str(r.version)],
                   ["classification_rationale", "Half-written triage note"],
                   ["sig_password", "secret!"], ["csrf_token", token]]})
    assert resp.status_code == 200
    with engine.reader() as s:
        (row,) = s.execute(select(FormDraft)).scalars()
        assert "secret!" not in row.data and token not in row.data
        rec = s.execute(select(Record).where(Record.number == r.number)).scalar_one()
        assert "Half-written" not in json.dumps(rec.data)
    assert len(events(engine, "update")) + len(events(engine, "transition")) == trail_before
    page = client.get(path).get_data(as_text=True)
    assert "Your draft was restored" in page and "Half-written triage note" in page

    other = app.test_client()
    login(other, "quentin")
    page = other.get(path).get_data(as_text=True)
    assert "Half-written" not in page and "Your draft was restored" not in page

    data = {"csrf_token": csrf(client, path), "expected_version": str(r.version),
            "classification": "minor", "classification_rationale": "Half-written, now done",
            "capa_required": "no", "capa_rationale": "Isolated analyst error, not systemic.",
            "investigator": "olga",
            **{k: DEV[k] for k in ("occurred_on", "discovered_on", "area", "batch")}}
    resp = client.post(path, data=data)
    assert resp.status_code == 302, [ln for ln in resp.get_data(as_text=True).splitlines()
                                     if "error" in ln]
    with engine.reader() as s:
        assert s.execute(select(func.count()).select_from(FormDraft)).scalar_one() == 0
    assert "Your draft was restored" not in client.get(f"/records/{r.number}").get_data(
        as_text=True)


def test_draft_size_limit_and_bad_keys(engine, client, account, monkeypatch):
    """R-UI-54: a draft over QMS_DRAFT_MAX_BYTES is refused (413) and nothing is kept; a key
    that is not a draft form's is refused; a draft for a record the person cannot see is a 404
    (no probing)."""
    monkeypatch.setenv("QMS_DRAFT_MAX_BYTES", "2048")
    account("emma", "employee")
    login(client, "emma")
    token = csrf(client, "/")
    r = client.post("/drafts/save", headers={"X-CSRFToken": token},
                    json={"form": "new/deviation", "fields": [["description", "x" * 5000]]})
    assert r.status_code == 413 and "more than the 2048 bytes" in r.get_json()["error"]
    r = client.post("/drafts/save", headers={"X-CSRFToken": token},
                    json={"form": "../../etc", "fields": []})
    assert r.status_code == 400
    r = client.post("/drafts/save", headers={"X-CSRFToken": token},
                    json={"form": "CAPA-2026-9999/approve", "fields": [["a", "b"]]})
    assert r.status_code == 404
    with engine.reader() as s:
        assert s.execute(select(func.count()).select_from(FormDraft)).scalar_one() == 0


def test_draft_commands_keep_drafts_apart_per_person(engine, account):
    """R-UI-54: one person's draft is never read as another's."""
    account("emma", "employee")
    account("olga", "employee")
    with engine.reader() as s:
        emma = identity.get_user(s, "emma").id
        olga = identity.get_user(s, "olga").id
    form_drafts.save(engine, emma, "new/deviation", [("title", "mine")], max_bytes=4096)
    with engine.reader() as s:
        assert form_drafts.get(s, olga, "new/deviation") is None
        assert form_drafts.get(s, emma, "new/deviation").fields == [("title", "mine")]
    assert not form_drafts.discard(engine, olga, "new/deviation")
    assert form_drafts.discard(engine, emma, "new/deviation")


def test_audit_trail_pages_say_their_times_are_utc_whatever_the_persons_zone(engine, client,
                                                                            account):
    """R-UI-52: the footer names the person's zone where times are shown in it; the
    audit-trail page shows UTC (its "Time (UTC)" column), so its footer says that instead of
    claiming the person's zone."""
    account("emma", "employee")
    login(client, "emma")
    client.post("/account/profile", data={
        "csrf_token": csrf(client, "/account/profile"), "timezone": "Asia/Tokyo",
        "email": "emma@example.org", "notify_mode": "immediate", **prefs_form()})
    n = engine.start("deviation", "emma", {
        "title": "Cold room excursion", "description": "9.4 C for 3 h",
        "occurred_on": "2026-03-01", "discovered_on": "2026-03-01", "area": "Warehouse",
        "immediate_actions": "Quarantine"}).number
    assert "Times shown in Asia/Tokyo" in client.get(f"/records/{n}").get_data(as_text=True)
    trail = client.get(f"/records/{n}/audit").get_data(as_text=True)
    assert "Times on this page are in UTC" in trail and "Time (UTC)" in trail
    assert "Times shown in Asia/Tokyo" not in trail


def test_administrator_sets_a_department_the_person_cannot(engine, admin, client, account):  # noqa: F811
    """R-AUD-11: the administrators' user page sets a person's department (area; audited
    with the reason); the person's own profile page cannot change it."""
    account("emma", "employee")
    page = "/admin/users/emma"
    assert 'id="department"' in admin.get(page).get_data(as_text=True)
    data = {"timezone": "UTC", "email": "emma@example.com", "notify_mode": "immediate",
            **prefs_form(), "department": "Production", "reason": "joined production"}
    r = admin.post("/admin/users/emma/profile", data={"csrf_token": csrf(admin, page), **data})
    assert r.status_code == 302
    (ev,) = events(engine, "profile_changed")
    assert ev.changes["department"] == [None, "Production"]
    with engine.reader() as s:
        assert identity.get_user(s, "emma").department == "Production"
    # the person's own profile form has no department, and the command refuses it
    login(client, "emma")
    assert 'id="department"' not in client.get("/profile").get_data(as_text=True)
    with pytest.raises(NotAuthorized, match="set by an administrator"):
        profiles.update_profile(engine, "emma", actor="emma", department="IT")
