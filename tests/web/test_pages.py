"""The web UI through Flask's test client: login, inbox, records, signing, CSRF, access."""

from __future__ import annotations

from sqlalchemy import func, select

from tests.web.conftest import PASSWORD, csrf, login
from workflow.db.models import AuditEvent, Record, Signature


def capa_at_plan_approval(engine):
    r = engine.start("capa", "emma", {"title": "Label mix-up", "description": "d"})
    engine.fire(r.number, "assign", "quinn", {"owner": "olga"})
    engine.fire(r.number, "submit_root_cause", "olga", {"root_cause_category": "method",
                                                       "root_cause": "rc"})
    engine.fire(r.number, "submit_plan", "olga", {"actions": [{"description": "a"}],
                                                  "effectiveness_criteria": "c"})
    return r.number


def test_login_required_everywhere(client):
    """R-P11-10d-1: pages other than login redirect anonymous visitors to the login."""
    for path in ("/", "/records/new", "/records/CAPA-2026-0001", "/audit/", "/admin/users"):
        r = client.get(path)
        assert r.status_code == 302 and "/login" in r.headers["Location"], path


def test_login_and_inbox(client, account, engine):
    account("emma", "employee")
    account("olga", "capa_owner", "employee")
    account("quinn", "qa", "employee")
    number = capa_at_plan_approval(engine)
    assert login(client, "quinn").status_code == 302
    html = client.get("/").get_data(as_text=True)
    assert number in html and "QA plan approval" in html


def test_wrong_password_is_refused_with_a_clear_message(client, account):
    account("emma", "employee")
    r = login(client, "emma", "not-the-password")
    assert r.status_code == 401
    assert "Unknown username or wrong password, or the account is locked" in r.get_data(as_text=True)


def test_post_without_csrf_token_is_refused_and_changes_nothing(client, account, engine):
    """R-P11-30-1: a POST without its CSRF token gets 400 and nothing changes."""
    account("emma", "employee")
    account("olga", "capa_owner", "employee")
    account("quinn", "qa", "employee")
    number = capa_at_plan_approval(engine)
    login(client, "quinn")
    before = engine.get(number).version
    r = client.post(f"/records/{number}/do/reject_plan",
                    data={"plan_rejection_reason": "x", "reason": "y",
                          "expected_version": before})
    assert r.status_code == 400 and "security token" in r.get_data(as_text=True)
    assert engine.get(number).version == before


def test_sign_in_the_browser_form(client, account, engine):
    """R-P11-200-1 R-P11-50-1: the signature dialog signs; a wrong password signs nothing."""
    account("emma", "employee")
    account("olga", "capa_owner", "employee")
    account("quinn", "qa", "employee")
    account("quentin", "qa", "employee")
    number = capa_at_plan_approval(engine)
    login(client, "quentin")
    path = f"/records/{number}/do/approve_plan"
    token = csrf(client, path)
    version = engine.get(number).version
    r = client.post(path, data={"csrf_token": token, "expected_version": version,
                                "sig_username": "quentin", "sig_password": "wrong-password"})
    assert r.status_code == 422
    assert "password is wrong" in r.get_data(as_text=True)
    with engine.reader() as s:
        assert s.execute(select(Signature)).first() is None
    r = client.post(path, data={"csrf_token": token, "expected_version": version,
                                "sig_username": "quentin", "sig_password": PASSWORD})
    assert r.status_code == 302
    html = client.get(f"/records/{number}").get_data(as_text=True)
    assert "Approved" in html and "Quentin Tester" in html and "UTC" in html
    assert engine.get(number).state == "implementation"


def test_stale_version_gives_a_friendly_message_and_keeps_entries(client, account, engine):
    """R-P11-10f-3: the second of two concurrent edits is told, nothing is lost silently."""
    account("emma", "employee")
    account("olga", "capa_owner", "employee")
    account("quinn", "qa", "employee")
    number = capa_at_plan_approval(engine)
    login(client, "quinn")
    path = f"/records/{number}/do/reject_plan"
    token = csrf(client, path)
    old = engine.get(number).version
    engine.fire(number, "reject_plan", "quinn", {"plan_rejection_reason": "first"},
                reason="first")
    engine.fire(number, "submit_plan", "olga", {"effectiveness_criteria": "c2"})
    r = client.post(path, data={"csrf_token": token, "expected_version": old,
                                "plan_rejection_reason": "my careful comment", "reason": "why"})
    html = r.get_data(as_text=True)
    assert r.status_code == 409
    assert "changed while you were editing" in html and "my careful comment" in html


def test_another_workflows_record_is_not_found(client, account, engine):
    """R-P11-10d-2: a record outside the user's workflows answers 404, revealing nothing."""
    account("tina", "training_coordinator", "trainer", "employee")
    account("emma", "employee")
    account("ivy", "isms")
    r = engine.start("training_assignment", "tina", {
        "title": "SOP-1", "document": "SOP-1", "document_version": "1", "trainee": "emma",
        "due_date": "2026-04-01"})
    login(client, "ivy")
    assert client.get(f"/records/{r.number}").status_code == 404
    assert client.get("/records/NOPE-2026-0001").status_code == 404


def test_a_nul_character_in_a_form_is_a_field_error_and_creates_nothing(client, account,
                                                                         engine):
    """R-PERF-75 R-A11-5-1: a NUL in a form's text (a crafted POST) is shown as an error at
    its field, the form answered 422, and nothing is created, on both databases (before, on
    PostgreSQL, the step failed with a database error)."""
    account("emma", "employee")
    login(client, "emma")
    token = csrf(client, "/records/new/capa")
    r = client.post("/records/new/capa", data={"csrf_token": token, "title": "Line\x003",
                                               "description": "d"})
    assert r.status_code == 422
    assert "must not contain a NUL character" in r.get_data(as_text=True)
    with engine.reader() as s:
        assert s.execute(select(func.count()).select_from(Record)).scalar_one() == 0


def test_admin_pages_need_the_admin_role(client, account):
    account("emma", "employee")
    login(client, "emma")
    assert client.get("/admin/users").status_code == 403
    assert client.get("/audit/").status_code == 403


def test_create_record_from_the_form(client, account, engine):
    account("emma", "employee")
    login(client, "emma")
    token = csrf(client, "/records/new/capa")
    r = client.post("/records/new/capa", data={"csrf_token": token, "title": "",
                                               "description": "d"})
    assert r.status_code == 422 and "is required" in r.get_data(as_text=True)
    r = client.post("/records/new/capa", data={"csrf_token": token, "title": "From the web",
                                               "description": "d", "source": "audit"})
    assert r.status_code == 302
    number = r.headers["Location"].rsplit("/", 1)[-1]
    assert engine.get(number).data["source"] == "audit"
    with engine.reader() as s:
        ev = s.execute(select(AuditEvent).where(AuditEvent.action == "create")
                       .order_by(AuditEvent.id.desc())).scalars().first()
        assert ev.actor_name == "Emma Tester"
