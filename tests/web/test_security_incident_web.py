"""Security incidents in the browser forms (Flask client): a report needs only a title and
what happened; ISMS's triage form without affected systems or severity answers with the
fields' messages and writes nothing; the record page lists the affected inventory entry."""

from __future__ import annotations

from sqlalchemy import func, select

from tests.web.conftest import csrf, login
from workflow.db.models import AuditEvent, Record


def test_report_then_triage_without_systems_or_severity_is_refused_in_the_form(
        client, account, engine):
    """R-INC-1 R-INC-11: the report form creates an incident from a title and a
    description; triage posted without affected systems and severity comes back 422 naming
    both, the incident unchanged (same version, no audit event); with them it moves on and
    the page links the inventory entry."""
    account("emma", "employee")
    account("ivy", "isms", "employee")
    account("hank", "employee")
    system = engine.start("system_inventory", "ivy", {"title": "LIMS"}).number
    login(client, "emma")
    path = "/records/new/security_incident"
    r = client.post(path, data={"csrf_token": csrf(client, path),
                                "title": "USB stick found in the car park",
                                "description": "Plugged into my PC before I thought."})
    assert r.status_code == 302, r.get_data(as_text=True)[:500]
    with engine.reader() as s:
        inc = s.execute(select(Record).where(Record.workflow_key == "security_incident")
                        ).scalar_one()
        number, version = inc.number, inc.version
        events = s.execute(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.record_id == inc.id)).scalar_one()
    client.post("/logout", data={"csrf_token": csrf(client, "/")})
    login(client, "ivy")
    step = f"/records/{number}/do/triage"
    data = {"csrf_token": csrf(client, step), "expected_version": version,
            "title": "USB stick found in the car park", "category": "malware",
            "gxp_data_affected": "no", "personal_data_affected": "no",
            "occurred_at": "2026-03-02T08:00:00+00:00", "aware_at": "2026-03-02T08:30:00+00:00",
            "handler": "hank"}
    r = client.post(step, data=data)
    html = r.get_data(as_text=True)
    assert r.status_code == 422
    assert "is required to triage and start containment" in html
    with engine.reader() as s:
        inc = s.execute(select(Record).where(Record.number == number)).scalar_one()
        assert (inc.state, inc.version) == ("reported", version)
        assert s.execute(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.record_id == inc.id)).scalar_one() == events
    r = client.post(step, data={**data, "severity": "medium", "affected_systems": system})
    assert r.status_code == 302, r.get_data(as_text=True)[:800]
    assert engine.get(number).state == "containment"
    page = client.get(f"/records/{number}").get_data(as_text=True)
    assert f'href="/records/{system}"' in page and "Containment" in page
