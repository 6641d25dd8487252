"""The step controls as a person meets them on the record page (issue 15): steps a rule
refuses are shown disabled with the reason, and their form answers 403 naming the rule."""

from __future__ import annotations

import html as htmllib

from sqlalchemy import select

from tests.factories import give_training
from tests.web.conftest import PASSWORD, csrf, login
from workflow import tasks
from workflow.db.models import Task, TaskStatus
from workflow.signatures.mac import VouchedSignature, VouchingVerifier


def text(r) -> str:
    return htmllib.unescape(r.get_data(as_text=True))


def capa_at_plan_approval(engine) -> str:
    n = engine.start("capa", "emma", {"title": "Label mix-up", "description": "QC"}).number
    engine.fire(n, "assign", "quinn", {"owner": "olga"})
    engine.fire(n, "submit_root_cause", "olga", {"root_cause_category": "method",
                                                 "root_cause": "rc"})
    engine.fire(n, "submit_plan", "olga", {"actions": [{"description": "a", "responsible": "olga"}],
                                           "effectiveness_criteria": "c"})
    return n


def open_task(engine, number: str) -> int:
    with engine.reader() as s:
        rec = engine.get(number, session=s)
        return s.execute(select(Task.id).where(Task.record_id == rec.id,
                                               Task.status == TaskStatus.OPEN)).scalar_one()


def test_a_step_held_by_someone_else_is_shown_disabled_with_the_holder(app, client, account,
                                                                         engine):
    """R-UI-5 R-WF-11 R-WF-12: Quentin sees Approve action plan disabled, saying Quinn holds
    the task; opening its form answers 403 with the same rule; Quinn is offered it."""
    for name, roles in (("emma", ("employee",)), ("olga", ("capa_owner", "employee")),
                        ("quinn", ("qa", "employee")), ("quentin", ("qa", "employee"))):
        account(name, *roles)
    n = capa_at_plan_approval(engine)
    tasks.claim(engine, open_task(engine, n), "quinn")
    login(client, "quentin")
    page = text(client.get(f"/records/{n}"))
    assert f'href="/records/{n}/do/approve_plan"' not in page
    assert ('<button class="button" type="button" disabled aria-describedby="why-approve_plan">'
            "Approve action plan</button>") in page
    assert "Not available to you now: Approve action plan on " + n + ": the task is held by " \
           "Quinn Tester (quinn); only they can complete it until they release or delegate " \
           "it (rule: a claim holds)." in page
    r = client.get(f"/records/{n}/do/approve_plan")
    assert r.status_code == 403
    assert "the task is held by Quinn Tester (quinn)" in text(r)
    holder = app.test_client()
    login(holder, "quinn")
    page = text(holder.get(f"/records/{n}"))
    assert f'href="/records/{n}/do/approve_plan"' in page
    assert holder.get(f"/records/{n}/do/approve_plan").status_code == 200


def test_a_step_of_another_role_is_not_shown_and_its_form_names_the_roles(client, account,
                                                                          engine):
    """R-UI-5 R-P11-10g-1: a step none of whose roles the person holds is not shown at all,
    and its form answers 403 naming the roles it needs."""
    for name, roles in (("emma", ("employee",)), ("olga", ("capa_owner", "employee")),
                        ("quinn", ("qa", "employee"))):
        account(name, *roles)
    n = capa_at_plan_approval(engine)
    login(client, "olga")
    page = text(client.get(f"/records/{n}"))
    # not offered as a step (the state diagram on the page still names every step)
    assert f'href="/records/{n}/do/approve_plan"' not in client.get(f"/records/{n}").get_data(
        as_text=True)
    assert "Approve action plan" not in page.split("Where it stands")[0].split("Timeline")[0]
    r = client.get(f"/records/{n}/do/approve_plan")
    assert r.status_code == 403
    assert "'Approve action plan' on " + n + " needs one of these roles: Quality Assurance; " \
           "you hold none of them." in text(r)


def test_an_early_step_is_noted_and_flagged_and_linked_records_are_listed(client, account,
                                                                           engine):
    """R-UI-6 R-WF-14 R-WF-15: the record page notes that taking the effectiveness check now
    needs a reason; once taken early its timeline entry says so. A step waiting for linked
    records lists them, with their state, on the record page and on the step's page."""
    for name, roles in (("emma", ("employee",)), ("olga", ("capa_owner", "employee")),
                        ("quinn", ("qa", "employee")), ("quentin", ("qa", "employee"))):
        account(name, *roles)
    n = capa_at_plan_approval(engine)
    verifier, engine.verifier = engine.verifier, VouchingVerifier()
    try:
        engine.fire(n, "approve_plan", "quinn", signature=VouchedSignature("quinn"))
        actions = [{**a, "done": True} for a in engine.get(n).data["actions"]]
        engine.fire(n, "complete_implementation", "olga", {"implementation_summary": "s",
                                                           "actions": actions})
        engine.fire(n, "verify", "quinn", {"verification_evidence": "e"},
                    signature=VouchedSignature("quinn"))
        give_training(engine, "quentin")  # closing requires training on the CAPA SOP
    finally:
        engine.verifier = verifier
    cr = engine.start("change_request", "emma", {
        "title": "Relabel", "description": "d", "justification": "j", "change_type": "process",
        "owner": "olga", "related_capa": n}).number
    login(client, "quentin")
    page = text(client.get(f"/records/{n}"))
    assert ("Record effectiveness check: Opens on 2026-05-31 00:00 UTC; taking it now needs a "
            "reason and is flagged as taken early.") in page
    r = client.get(f"/records/{n}/do/record_effectiveness")
    assert r.status_code == 200 and "Opens on 2026-05-31 00:00 UTC" in text(r)
    engine.fire(n, "record_effectiveness", "quentin",
                {"effectiveness_result": "effective", "effectiveness_evidence": "ok"},
                reason="site closing")
    page = text(client.get(f"/records/{n}"))
    assert "taken early (it opened on 2026-05-31)" in page
    # Close CAPA waits for the related change request, listed with its state
    assert "Close CAPA waits for" in page
    assert f'<a href="/records/{cr}">{cr}</a> Relabel' in page and "Still open" in page
    r = client.get(f"/records/{n}/do/close")
    assert r.status_code == 403
    assert f"waits for change_request records linked as related closed; still open: {cr} " \
           "(draft) (rule: parents wait for their children)." in text(r)


def test_request_and_approve_a_due_date_extension_on_the_record_page(app, client, account,
                                                                     engine):
    """R-UI-7 R-WF-16 R-WF-4 R-P11-50-1 R-UI-50: the CAPA owner requests an extension from the record
    page (new date, justification); the record shows it waiting, with original and current
    due dates; the owner cannot decide it; QA approves it with an electronic signature and
    the current due date moves while the original stays."""
    for name, roles in (("emma", ("employee",)), ("olga", ("capa_owner", "employee")),
                        ("quinn", ("qa", "employee"))):
        account(name, *roles)
    n = capa_at_plan_approval(engine)
    login(client, "olga")
    page = text(client.get(f"/records/{n}"))
    assert "Current: <strong>2026-05-31 UTC</strong>" in page and "Original: 2026-05-31 UTC" in page
    assert f'href="/records/{n}/extensions/new"' in page
    path = f"/records/{n}/extensions/new"
    token = csrf(client, path)
    version = engine.get(n).version
    r = client.post(path, data={"csrf_token": token, "expected_version": version,
                                "new_due": "2026-05-01", "reason": "Supplier late"})
    assert r.status_code == 422  # not later than the current due date: nothing recorded
    assert "must be later than the current due date (2026-05-31)" in text(r)
    r = client.post(path, data={"csrf_token": token, "expected_version": version,
                                "new_due": "2026-06-30", "reason": "Supplier delivers in June"})
    assert r.status_code == 302
    page = text(client.get(f"/records/{n}"))
    # a requested date is a date-only deadline: shown as entered, without a zone (R-UI-50)
    assert "Requested</strong>: 2026-05-31 UTC → 2026-06-30<" in page
    assert "Supplier delivers in June" in page
    assert f'href="/records/{n}/extensions/new"' not in page  # one request at a time
    assert "Decide request" not in page  # not the requester's to decide
    ext_id = engine_extension_id(engine, n)
    r = client.get(f"/records/{n}/extensions/{ext_id}")
    assert r.status_code == 403 and "Deciding a due-date extension needs one of: qa." in text(r)

    qa = app.test_client()
    login(qa, "quinn")
    assert "Decide request" in text(qa.get(f"/records/{n}"))
    path = f"/records/{n}/extensions/{ext_id}"
    r = qa.post(path, data={"csrf_token": csrf(qa, path), "decision": "approve",
                            "sig_username": "quinn", "sig_password": PASSWORD})
    assert r.status_code == 302
    page = text(qa.get(f"/records/{n}"))
    assert "Current: <strong>2026-06-30</strong>" in page  # due at the end of 30 June
    assert "Original: 2026-05-31 UTC" in page
    assert "Approved</strong>: 2026-05-31 UTC → 2026-06-30<" in page
    assert "approved by Quinn Tester" in page
    rec = engine.get(n)
    assert rec.due_original.date().isoformat() == "2026-05-31"
    assert rec.due_current.isoformat() == "2026-06-30T23:59:59+00:00"


def engine_extension_id(engine, number: str) -> int:
    from workflow.db.models import DueDateExtension

    with engine.reader() as s:
        rec = engine.get(number, session=s)
        return s.execute(select(DueDateExtension.id).where(
            DueDateExtension.record_id == rec.id)).scalar_one()


def test_extensions_through_the_api(client, account, engine):
    """R-WF-16 R-P11-10g-1: the API requests (201), lists and decides extensions; approving
    needs the sign scope and the signer's credentials; the requester cannot decide; an
    unknown request is 404-like, a date before the current due 422."""
    import json

    from workflow.identity import tokens as api_tokens
    from workflow.identity import users as identity

    for name, roles in (("emma", ("employee",)), ("olga", ("capa_owner", "employee")),
                        ("quinn", ("qa", "employee"))):
        account(name, *roles)
    n = capa_at_plan_approval(engine)

    def tok(user, *scopes):
        with engine.unit() as s:
            u = identity.get_user(s, user)
            return api_tokens.create_token(s, u, actor=u, name="t", scopes=scopes,
                                           expires_in_days=30).secret

    def call(method, path, secret, body=None):
        return getattr(client, method)("/api/v1" + path,
                                       headers={"Authorization": f"Bearer {secret}"},
                                       data=json.dumps(body) if body is not None else None,
                                       content_type="application/json")

    olga = tok("olga", "read", "write")
    version = engine.get(n).version
    r = call("post", f"/records/{n}/extensions", olga,
             {"expected_version": version, "new_due": "2026-05-01", "reason": "late"})
    assert r.status_code == 422 and r.get_json()["error"]["code"] == "validation_failed"
    r = call("post", f"/records/{n}/extensions", olga,
             {"expected_version": version, "new_due": "2026-06-30", "reason": "Supplier late"})
    assert r.status_code == 201
    body = r.get_json()
    ext_id = body["id"]
    assert body["due_current"] == body["due_original"]
    assert body["due_current"].startswith("2026-05-31")
    (item,) = body["items"]
    assert (item["status"], item["new_due"][:10], item["reason"]) == (
        "requested", "2026-06-30", "Supplier late")
    r = call("post", f"/extensions/{ext_id}/decision", olga, {"approve": False, "reason": "x"})
    assert r.status_code == 403 and r.get_json()["error"]["code"] == "not_authorized"
    quinn = tok("quinn", "read", "write")
    r = call("post", f"/extensions/{ext_id}/decision", quinn,
             {"approve": True, "signature": {"username": "quinn", "password": PASSWORD}})
    assert r.status_code == 403 and r.get_json()["error"]["code"] == "insufficient_scope"
    signer = tok("quinn", "read", "write", "sign")
    r = call("post", f"/extensions/{ext_id}/decision", signer, {"approve": True})
    assert r.status_code == 422 and r.get_json()["error"]["code"] == "signature_required"
    r = call("post", f"/extensions/{ext_id}/decision", signer,
             {"approve": True, "signature": {"username": "quinn", "password": PASSWORD}})
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert body["due_current"].startswith("2026-06-30T23:59:59")
    assert body["due_original"].startswith("2026-05-31")
    assert body["items"][0]["status"] == "approved" and body["items"][0]["signature_id"]
    assert call("get", f"/records/{n}/extensions", olga).get_json()["items"][0][
        "decided_by"] == "Quinn Tester"
    r = call("post", "/extensions/99999/decision", signer, {"approve": False, "reason": "x"})
    assert r.status_code == 422 and "no extension request #99999" in r.get_json()["error"][
        "message"]
