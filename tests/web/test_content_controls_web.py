"""Content controls as a person meets them in the web UI and the API (issue 15): a locked
approved plan, a superseded signature, the reason for change."""

from __future__ import annotations

import io
import json
import re

import pytest
from sqlalchemy import select

from tests.web.conftest import PASSWORD, csrf, login
from workflow.db.models import AuditEvent
from workflow.identity import tokens as api_tokens
from workflow.identity import users as identity
from workflow.signatures.part11 import PasswordSignature

ACTIONS = [{"description": "Add second-person label check", "responsible": "olga", "due": "2026-04-30"}]


@pytest.fixture
def staff(account):
    return {
        "emp": account("emma", "employee"),
        "qa": account("quinn", "qa", "employee"),
        "qa2": account("quentin", "qa", "employee"),
        "owner": account("olga", "capa_owner", "employee"),
    }


def approved_capa(engine):
    r = engine.start("capa", "emma", {"title": "Label mix-up", "description": "QC found it."})
    engine.fire(r.number, "assign", "quinn", {"owner": "olga"})
    engine.fire(
        r.number,
        "submit_root_cause",
        "olga",
        {"root_cause_category": "method", "root_cause": "No label check."},
    )
    engine.fire(
        r.number,
        "submit_plan",
        "olga",
        {"actions": ACTIONS, "effectiveness_criteria": "No mix-ups in 3 months"},
    )
    engine.fire(r.number, "approve_plan", "quinn", signature=PasswordSignature("quinn", PASSWORD, None))
    return r.number


def html(r) -> str:
    return r.get_data(as_text=True)


def test_locked_plan_refused_on_the_form_and_superseded_on_the_record_page(client, engine, staff):
    """R-P11-70-2 R-WF-20: the owner rewriting an approved action at implementation gets the
    form back (422) saying the signature locks it and how to revise; after "Revise action
    plan" and a new plan, the record page marks QA's earlier "Approved" superseded."""
    number = approved_capa(engine)
    login(client, "olga")
    path = f"/records/{number}/do/complete_implementation"
    form = {
        "csrf_token": csrf(client, path),
        "expected_version": engine.get(number).version,
        "implementation_summary": "Done.",
        "actions-0-description": "Something else",
        "actions-0-responsible": "olga",
        "actions-0-due": "2026-04-30",
        "actions-0-done": "yes",
        "actions-0-evidence": "SOP-12 v5",
    }
    r = client.post(path, data=form)
    assert r.status_code == 422
    page = html(r)
    assert (
        "Actions on CAPA-2026-0001 is locked by the signature &#39;Approved&#39; (Quinn" in page
        and "Revise action plan (needs new approval)" in page
    )
    assert engine.get(number).state == "implementation"
    # the done flag and the evidence stay editable
    r = client.post(path, data={**form, "actions-0-description": ACTIONS[0]["description"]})
    assert r.status_code == 302
    assert engine.get(number).data["actions"][0]["evidence"] == "SOP-12 v5"

    number = approved_capa(engine)
    engine.fire(number, "revise_plan", "olga", reason="Action 1 needs a second step")
    page = html(client.get(f"/records/{number}"))
    assert "Superseded" not in page  # nothing changed yet
    engine.fire(
        number,
        "submit_plan",
        "olga",
        {
            "actions": [*ACTIONS, {"description": "Audit line 3 weekly"}],
            "effectiveness_criteria": "No mix-ups in 3 months",
        },
    )
    page = html(client.get(f"/records/{number}"))
    sigs = page[page.index("<h2>Signatures</h2>") :]
    assert re.search(
        r'class="sig sig-superseded">\s*<div class="sig-meaning">Approved '
        r'<span class="badge badge-superseded">Superseded</span>',
        sigs,
    )


def test_api_answers_409_content_locked_and_lists_superseded_signatures(client, engine, staff):
    """R-P11-70-2 R-WF-20 R-API-1: the API refuses a locked change with 409 content_locked
    (field, signature, the steps that release it) and shows each signature's status."""
    number = approved_capa(engine)
    with engine.unit() as s:
        u = identity.get_user(s, "olga")
        tok = api_tokens.create_token(
            s, u, actor=u, name="t", scopes=("read", "write"), expires_in_days=30
        ).secret
    headers = {"Authorization": f"Bearer {tok}"}
    body = {
        "expected_version": engine.get(number).version,
        "data": {
            "implementation_summary": "x",
            "actions": [{**ACTIONS[0], "due": "2026-05-30", "done": True}],
        },
    }
    r = client.post(
        f"/api/v1/records/{number}/transitions/complete_implementation",
        headers=headers,
        data=json.dumps(body),
        content_type="application/json",
    )
    assert r.status_code == 409
    e = r.get_json()["error"]
    assert (e["code"], e["field"], e["signature"], e["unlock_steps"]) == (
        "content_locked",
        "actions",
        "Approved",
        ["Revise action plan (needs new approval)", "Not effective: revise action plan"],
    )
    engine.fire(number, "revise_plan", "olga", reason="r")
    engine.fire(
        number, "submit_plan", "olga", {"actions": [{"description": "other"}], "effectiveness_criteria": "c"}
    )
    items = client.get(f"/api/v1/records/{number}/signatures", headers=headers).get_json()
    assert [i["status"] for i in items["items"]] == ["superseded"]


def test_reason_for_change_is_asked_on_the_form_and_recorded(client, engine, staff, account):
    """R-P11-10e-7 R-WF-21 R-UI-20: QA correcting the reporter's date at triage sees the
    "Reason for change" field; without a reason the form comes back (422) with the message,
    with one the change is made and the audit trail holds the reason, old and new value."""
    account("ivan", "deviation_owner", "employee")
    number = engine.start(
        "deviation",
        "emma",
        {
            "title": "Cold room",
            "description": "9.4 C",
            "occurred_on": "2026-02-20",
            "discovered_on": "2026-02-27",
            "area": "Warehouse",
            "immediate_actions": "Quarantine",
        },
    ).number
    login(client, "quinn")
    path = f"/records/{number}/do/triage"
    page = html(client.get(path))
    assert "Reason for change" in page and "Comment (optional)" not in page
    form = {
        "csrf_token": csrf(client, path),
        "expected_version": 1,
        "classification": "minor",
        "classification_rationale": "Within stability data.",
        "capa_required": "no",
        "capa_rationale": "Single event; seal replaced in PM plan.",
        "investigator": "ivan",
        "occurred_on": "2026-02-21",
        "discovered_on": "2026-02-27",
        "area": "Warehouse",
    }
    r = client.post(path, data=form)
    assert r.status_code == 422
    assert "Changing Occurred on on DEV-2026-0001 needs a reason for change" in html(r)
    assert "Give the reason for change." in html(r)
    assert engine.get(number).state == "reported"
    r = client.post(path, data={**form, "reason": "Logbook: the excursion began on 21 Feb"})
    assert r.status_code == 302
    with engine.reader() as s:
        ev = s.execute(
            select(AuditEvent).where(AuditEvent.action == "update", AuditEvent.transition == "triage")
        ).scalar_one()
    assert ev.reason == "Logbook: the excursion began on 21 Feb"
    assert ev.changes["occurred_on"] == ["2026-02-20", "2026-02-21"]


# --------------------------------------------------------------------------- lists (control 9)


def capa_at_action_plan(engine):
    r = engine.start("capa", "emma", {"title": "Label mix-up", "description": "QC found it."})
    engine.fire(r.number, "assign", "quinn", {"owner": "olga"})
    engine.fire(r.number, "submit_root_cause", "olga",
                {"root_cause_category": "method", "root_cause": "No label check."})
    return r.number


def test_list_rows_can_be_added_without_javascript_and_are_labelled(client, engine, staff):
    """R-UI-21: a list starts with one blank row; "Add a row" (without JavaScript a submit
    the server answers with one more row, nothing saved) gives as many rows as needed, each
    input labelled with its column and row for screen readers; three actions are saved."""
    number = capa_at_action_plan(engine)
    login(client, "olga")
    path = f"/records/{number}/do/submit_plan"
    page = html(client.get(path))
    assert 'name="actions-0-description"' in page and 'name="actions-1-description"' not in page
    assert 'aria-label="Action, row 1 of Actions"' in page
    assert 'aria-label="Remove row 1 of Actions"' in page
    assert 'src="/static/rows.js"' in page and "<script>" not in page
    version = engine.get(number).version
    form = {"csrf_token": csrf(client, path), "expected_version": version,
            "effectiveness_criteria": "No mix-ups in 3 months"}
    rows = {}
    for i, text in enumerate(["Add label check", "Retrain operators", "Audit line 3"]):
        rows.update({f"actions-{i}-description": text, f"actions-{i}-responsible": "olga",
                     f"actions-{i}-due": "2026-04-30"})
        r = client.post(path, data={**form, **rows, "add_row": "actions"})
        assert r.status_code == 200
        page = html(r)
        assert f'name="actions-{i + 1}-description"' in page
        assert f'aria-label="Responsible, row {i + 2} of Actions"' in page
        assert f'value="{text}"' in page  # what was typed stays
    assert engine.get(number).version == version  # adding a row saved nothing
    r = client.post(path, data={**form, **rows})
    assert r.status_code == 302
    assert [a["description"] for a in engine.get(number).data["actions"]] == [
        "Add label check", "Retrain operators", "Audit line 3"]


def change_at_assessment(engine, account):
    account("carl", "change_owner", "employee")
    r = engine.start("change_request", "emma", {"title": "SOP-12 v5", "description": "d"})
    engine.fire(r.number, "submit", "emma",
                {"justification": "j", "change_type": "document", "owner": "carl"})
    return r.number


def test_thirty_trainees_are_imported_from_csv(client, engine, staff, account):
    """R-UI-22: a list with csv_import takes its rows from a CSV file (columns by name or
    label); a bad file is refused with its line and nothing is saved."""
    number = change_at_assessment(engine, account)
    trainees = [account(f"trainee{i:02d}", "employee") for i in range(30)]
    login(client, "carl")
    path = f"/records/{number}/do/submit_for_approval"
    page = html(client.get(path))
    assert 'enctype="multipart/form-data"' in page and 'name="affected_documents__csv"' in page
    form = {"csrf_token": csrf(client, path), "expected_version": engine.get(number).version,
            "classification": "minor", "quality_impact": "none", "regulatory_impact": "none",
            "validation_impact": "none", "training_impact": "read_and_understood",
            "implementation_plan": "Issue SOP-12 v5.", "target_date": "2026-04-15"}
    bad = b"Document,Version,Colour\nSOP-12,5,red\n"
    r = client.post(path, data={**form, "affected_documents__csv": (io.BytesIO(bad), "t.csv")},
                    content_type="multipart/form-data")
    assert r.status_code == 422
    assert "CSV line 1: unknown column &#39;Colour&#39;" in html(r)
    assert engine.get(number).state == "impact_assessment"
    text = "Document,Version,trainee,Training due,assessment_required\n" + "".join(
        f"SOP-12,5,{t},2026-05-15,no\n" for t in trainees)
    r = client.post(path, data={**form, "affected_documents__csv":
                                (io.BytesIO(text.encode("utf-8-sig")), "trainees.csv")},
                    content_type="multipart/form-data")
    assert r.status_code == 302, html(r)
    rows = engine.get(number).data["affected_documents"]
    assert len(rows) == 30 and {x["trainee"] for x in rows} == set(trainees)
    assert rows[0] == {"document": "SOP-12", "document_version": "5", "trainee": "trainee00",
                       "due": "2026-05-15", "assessment_required": False}


def test_generated_grants_form_offers_only_decisions_and_not_the_own_rows(client, engine,
                                                                           staff, account):
    """R-WF-23 R-UI-21: on a generated grant list the form adds no row and removes none; the
    user and role are shown, not editable; the reviewer's own row is read-only and says
    another reviewer decides it."""
    account("sam", "system_owner", "employee")
    grants = [{"user": "olga", "role": "capa_owner"}, {"user": "sam", "role": "system_owner"}]
    number = engine.start("access_review", "quinn", {
        "title": "QMS access review", "system": "QMS", "period": "2026-Q1",
        "grants": grants}).number
    login(client, "sam")
    page = html(client.get(f"/records/{number}/do/attest_own_access_pending"))
    assert "Add a row" not in page and "row-remove" not in page
    assert "The system generated these rows: none can be added or removed" in page
    assert '<input type="hidden" name="grants-0-user" value="olga">' in page
    assert 'name="grants-0-decision"' in page and "<select" in page
    assert '<input type="hidden" name="grants-1-decision"' in page  # sam's own row
    assert "Row 2 is about your own access: another reviewer decides it." in page
