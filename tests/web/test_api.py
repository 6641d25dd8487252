"""The JSON API at /api/v1 through Flask's test client: tokens and scopes, every endpoint,
every error code, signing with the Part 11 rules, visibility, the OpenAPI document (it
describes exactly the registered routes) and a bounded schemathesis run.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from tests.web.conftest import PASSWORD, csrf, login
from webapp import create_app
from workflow import clock
from workflow.db.models import ApiToken, AuditEvent, Record, Signature
from workflow.errors import NotAuthorized, RecordNotFound, TokenError
from workflow.identity import tokens as api_tokens
from workflow.identity import users as identity

API = "/api/v1"
DEV = {"title": "OOS assay result, batch B-1001", "description": "Assay 91.2 % (spec 95-105 %)",
       "occurred_on": "2026-03-01", "discovered_on": "2026-03-02", "area": "QC laboratory",
       "immediate_actions": "Batch B-1001 quarantined", "batch": "B-1001"}
TRIAGE = {"classification": "minor", "classification_rationale": "single result",
          "capa_required": False, "capa_rationale": "Isolated analyst error, not systemic.",
          "investigator": "olga"}
INVESTIGATION = {"root_cause_category": "human_error", "root_cause": "dilution error",
                 "impact_assessment": "none", "batch_disposition": "release",
                 "capa_required": False}


# ------------------------------------------------------------------ helpers


def token(engine, username: str, *scopes: str, days: int = 90) -> str:
    with engine.unit() as s:
        u = identity.get_user(s, username)
        return api_tokens.create_token(s, u, actor=u, name="test", scopes=scopes or ("read",),
                                       expires_in_days=days).secret


def call(client, method: str, path: str, tok: str | None = None, body: Any = None,
         **kw: Any) -> Any:
    headers = {"Authorization": f"Bearer {tok}"} if tok else {}
    if body is not None:
        kw["data"] = body if isinstance(body, str | bytes) else json.dumps(body)
        kw["content_type"] = "application/json"
    return getattr(client, method.lower())(API + path, headers=headers, **kw)


def err(r: Any) -> dict[str, Any]:
    body = r.get_json()
    assert set(body) == {"error"} and {"code", "message"} <= set(body["error"]), body
    return body["error"]


@pytest.fixture
def org(account) -> dict[str, str]:
    account("emma", "employee")
    account("olga", "deviation_owner", "capa_owner", "employee")
    account("quinn", "qa", "employee")
    account("quentin", "qa", "employee")
    account("ivy", "isms")
    account("tina", "training_coordinator", "trainer", "employee")
    return {}


def at_qa_review(engine) -> str:
    number = engine.start("deviation", "emma", DEV).number
    engine.fire(number, "triage", "quinn", TRIAGE)
    engine.fire(number, "submit_investigation", "olga", INVESTIGATION)
    return number


def version(engine, number: str) -> int:
    return engine.get(number).version


# ------------------------------------------------------------------ the OpenAPI document


def test_openapi_describes_exactly_the_registered_routes(app, client):
    """R-API-1 R-P11-10a-1 R-A11-5-1: every /api/v1 route Flask serves is in the OpenAPI document
    with its method, and every documented operation is served (HEAD is Flask's automatic
    companion of GET)."""
    r = client.get(f"{API}/openapi.json")
    assert r.status_code == 200
    doc = r.get_json()
    assert doc["openapi"].startswith("3.")
    documented = {(path, m.upper()) for path, ops in doc["paths"].items() for m in ops}
    served = set()
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith(API):
            path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
            served |= {(path, m) for m in rule.methods - {"HEAD", "OPTIONS"}}
    assert served and served == documented
    # every operation names its errors with the shared Error schema
    for path, ops in doc["paths"].items():
        for m, op in ops.items():
            if op.get("security") == []:
                continue
            assert {"401", "403", "429"} <= set(op["responses"]), (path, m)


# ------------------------------------------------------------------ tokens


def test_token_is_stored_hashed_and_its_creation_and_revocation_are_audited(engine, org):
    """R-P11-300c-1 R-A11-12-1: only a hash and a prefix are stored; creating and revoking
    a token are events on the system chain."""
    secret = token(engine, "emma", "read")
    with engine.unit() as s:
        row = s.execute(select(ApiToken)).scalar_one()
        assert row.token_hash == api_tokens.token_hash(secret) and secret not in row.token_hash
        assert secret.startswith(row.prefix) and len(row.prefix) == 12
        api_tokens.revoke_token(s, row, actor=identity.get_user(s, "emma"))
    with engine.reader() as s:
        events = s.execute(select(AuditEvent).where(AuditEvent.chain == "system",
                                                    AuditEvent.action.like("api_token_%"))
                           .order_by(AuditEvent.seq)).scalars().all()
    assert [e.action for e in events] == ["api_token_created", "api_token_revoked"]
    assert events[0].changes["prefix"] == row.prefix and events[0].actor_name == "Emma Tester"
    assert secret not in json.dumps(events[0].changes)


def test_token_rules_people_create_their_own_admins_only_for_service_accounts(engine, org,
                                                                              account):
    """R-P11-10h-1 R-P11-100a-2: nobody creates a token for another person; an administrator
    creates tokens for service accounts (no password: they can never log in or sign)."""
    account("ada", "admin")
    with engine.unit() as s:
        ada, emma = identity.get_user(s, "ada"), identity.get_user(s, "emma")
        with pytest.raises(NotAuthorized):
            api_tokens.create_token(s, emma, actor=ada, name="x", scopes="read", reason="r")
        lims = api_tokens.create_service_account(s, "lims", "LIMS (service)",
                                                 roles=("employee",), actor=ada,
                                                 reason="LIMS interface")
        with pytest.raises(NotAuthorized):  # not an administrator
            api_tokens.create_token(s, lims, actor=emma, name="x", scopes="read", reason="r")
        with pytest.raises(TokenError, match="never sign"):
            api_tokens.create_token(s, lims, actor=ada, name="x", scopes="read write sign",
                                    reason="r")
        with pytest.raises(TokenError, match="'write' scope too"):
            api_tokens.create_token(s, emma, actor=emma, name="x", scopes="read sign")
        with pytest.raises(TokenError, match="1 to 366 days"):
            api_tokens.create_token(s, emma, actor=emma, name="x", scopes="read",
                                    expires_in_days=0)
        with pytest.raises(NotAuthorized):
            api_tokens.create_token(s, identity.system_user(s), actor=ada, name="x",
                                    scopes="read", reason="r")
        made = api_tokens.create_token(s, lims, actor=ada, name="LIMS prod",
                                       scopes="read write", reason="go-live")
    assert made.info.username == "lims" and made.info.scopes == ("read", "write")


def test_missing_malformed_unknown_expired_and_revoked_tokens_get_401(client, engine, org):
    """R-P11-10d-1 R-P11-300c-1: without a valid token every route answers 401 with a
    stable code; an expired or revoked token stops working at once."""
    assert err(call(client, "GET", "/records"))["code"] == "token_missing"
    r = client.get(f"{API}/records", headers={"Authorization": "Basic ZW1tYTp4"})
    assert r.status_code == 401 and err(r)["code"] == "token_missing"
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert err(call(client, "GET", "/records", "not-a-token"))["code"] == "token_invalid"
    assert err(call(client, "GET", "/records", "qms_" + "x" * 43))["code"] == "token_invalid"
    short = token(engine, "emma", "read", days=1)
    assert call(client, "GET", "/me", short).status_code == 200
    clock.advance(timedelta(days=1, seconds=1))
    r = call(client, "GET", "/me", short)
    assert r.status_code == 401 and err(r)["code"] == "token_expired"
    tok = token(engine, "emma", "read")
    with engine.unit() as s:
        api_tokens.revoke_token(s, api_tokens.find_token(s, tok[:12]),
                                actor=identity.get_user(s, "emma"))
    r = call(client, "GET", "/me", tok)
    assert r.status_code == 401 and err(r)["code"] == "token_revoked"


def test_token_widened_with_sql_gets_401_tampered(client, engine, org):
    """R-P11-10d-1 R-P11-300c-1 R-P11-10a-2: a read token whose scopes were widened with plain
    SQL fails its seal: the API answers 401 token_tampered, also for the read it had."""
    tok = token(engine, "emma", "read")
    assert call(client, "GET", "/me", tok).status_code == 200
    with engine.unit() as s:
        s.execute(ApiToken.__table__.update().where(ApiToken.prefix == tok[:12])
                  .values(scopes="read write sign"))
    r = call(client, "GET", "/me", tok)
    assert r.status_code == 401 and err(r)["code"] == "token_tampered"
    assert "fails its integrity check" in err(r)["message"]


def test_deactivated_account_401_and_locked_account_403(client, engine, org):
    """R-P11-10d-1: deactivating or locking the token's user stops the token at once."""
    tok = token(engine, "emma", "read")
    with engine.unit() as s:
        u = identity.get_user(s, "emma")
        u.locked_at = clock.now()
    r = call(client, "GET", "/me", tok)
    assert r.status_code == 403 and err(r)["code"] == "account_locked"
    with engine.unit() as s:
        identity.deactivate_user(s, identity.get_user(s, "emma", active=False),
                                 actor=identity.system_user(s), reason="left")
    r = call(client, "GET", "/me", tok)
    assert r.status_code == 401 and err(r)["code"] == "account_deactivated"


def test_scopes_are_enforced(client, engine, org):
    """R-API-1 R-P11-10g-1: a read token cannot write, a write-only token cannot read
    (403)."""
    read = token(engine, "emma", "read")
    write = token(engine, "emma", "write")
    r = call(client, "POST", "/records", read, {"workflow": "deviation", "data": DEV})
    assert r.status_code == 403 and err(r) == {
        "code": "insufficient_scope", "required_scope": "write",
        "message": err(r)["message"]}
    assert call(client, "GET", "/records", write).status_code == 403
    with engine.reader() as s:
        assert s.execute(select(func.count()).select_from(Record)).scalar_one() == 0
    assert call(client, "POST", "/records", write,
                {"workflow": "deviation", "data": DEV}).status_code == 201


def test_browser_session_cookie_never_authenticates_the_api(client, engine, org):
    """R-API-1 R-P11-30-1 R-P11-10d-1: a logged-in browser's cookie is ignored by the API: a write
    with only the cookie is refused (401) and changes nothing; no cookie is set by the API."""
    assert login(client, "emma").status_code == 302
    assert client.get("/").status_code == 200  # the cookie works for the web UI
    r = call(client, "POST", "/records", body={"workflow": "deviation", "data": DEV})
    assert r.status_code == 401 and err(r)["code"] == "token_missing"
    assert call(client, "GET", "/records").status_code == 401
    assert "Set-Cookie" not in r.headers
    with engine.reader() as s:
        assert s.execute(select(func.count()).select_from(Record)).scalar_one() == 0


def test_me_and_last_use_is_recorded(client, engine, org):
    """R-P11-10h-1: a token use acts as its user and is recorded (last_used_at)."""
    tok = token(engine, "quinn", "read", "write")
    body = call(client, "GET", "/me", tok).get_json()
    assert body == {"username": "quinn", "name": "Quinn Tester", "roles": ["employee", "qa"],
                    "token": {"prefix": tok[:12], "scopes": ["read", "write"]}}
    with engine.reader() as s:
        assert s.execute(select(ApiToken.last_used_at)).scalar_one() == clock.now()


def test_rate_limit_per_token_429_then_the_next_minute(engine, org, tmp_path, monkeypatch):
    """R-A11-5-1: a token over QMS_API_RATE_PER_MINUTE gets 429 with Retry-After."""
    monkeypatch.setenv("QMS_INSTANCE_DIR", str(tmp_path))
    app = create_app({"TESTING": True, "SECRET_KEY": "t", "QMS_ENGINE": engine,
                      "QMS_API_RATE_PER_MINUTE": 2})
    client = app.test_client()
    tok, other = token(engine, "emma", "read"), token(engine, "quinn", "read")
    assert [call(client, "GET", "/me", tok).status_code for _ in range(3)] == [200, 200, 429]
    r = call(client, "GET", "/me", tok)
    assert err(r)["code"] == "rate_limited" and 1 <= int(r.headers["Retry-After"]) <= 60
    assert call(client, "GET", "/me", other).status_code == 200  # per token
    clock.advance(timedelta(seconds=61))
    assert call(client, "GET", "/me", tok).status_code == 200
    assert "2 requests per token per minute" in client.get(f"{API}/openapi.json").get_json()[
        "info"]["description"]


# ------------------------------------------------------------------ records


def test_lims_service_account_raises_a_deviation(client, engine, org):
    """R-API-1 R-P11-10h-1 R-P11-10e-2: a service account's token creates a record through the
    engine; the audit trail names the service account."""
    with engine.unit() as s:
        system = identity.system_user(s)
        lims = api_tokens.create_service_account(s, "lims", "LIMS interface",
                                                 roles=("employee",), actor=system,
                                                 reason="LIMS go-live")
        tok = api_tokens.create_token(s, lims, actor=system, name="LIMS", scopes="read write",
                                      reason="LIMS go-live").secret
    r = call(client, "POST", "/records", tok, {"workflow": "deviation", "data": DEV,
                                               "reason": "OOS result LIMS-RES-77"})
    assert r.status_code == 201, r.get_json()
    rec = r.get_json()
    assert r.headers["Location"] == f"{API}/records/{rec['number']}"
    assert rec["state"] == "reported" and rec["version"] == 1 and rec["workflow"] == "deviation"
    assert rec["data"]["batch"] == "B-1001" and rec["created_by"] == {
        "username": "lims", "name": "LIMS interface"}
    trail = call(client, "GET", f"/records/{rec['number']}/audit", tok).get_json()["items"]
    assert trail[0]["action"] == "create" and trail[0]["actor"] == "LIMS interface"
    assert trail[0]["actor_username"] == "lims" and trail[0]["reason"] == "OOS result LIMS-RES-77"
    assert trail[0]["changes"]["batch"] == [None, "B-1001"]


def test_create_record_rule_violations_are_422_and_roles_403(client, engine, org):
    """R-A11-5-1 R-P11-10f-2 R-P11-10g-1: field errors, guards and unknown workflows are
    422 naming the rule; a caller without a start role gets 403; nothing is created."""
    tok = token(engine, "emma", "read", "write")
    r = call(client, "POST", "/records", tok, {"workflow": "deviation",
                                               "data": {**DEV, "area": "", "colour": "red"}})
    assert r.status_code == 422
    e = err(r)
    assert e["code"] == "validation_failed" and set(e["errors"]) >= {"colour"}
    r = call(client, "POST", "/records", tok, {"workflow": "deviation",
                                               "data": {**DEV, "occurred_on": "2026-03-02",
                                                        "discovered_on": "2026-03-01"}})
    assert r.status_code == 422 and err(r)["code"] == "guard_failed"
    assert "discovered before it occurred" in err(r)["message"]
    r = call(client, "POST", "/records", tok, {"workflow": "nope", "data": {}})
    assert r.status_code == 422 and err(r)["code"] == "unknown_workflow"
    ivy = token(engine, "ivy", "read", "write")
    r = call(client, "POST", "/records", ivy, {"workflow": "deviation", "data": DEV})
    assert r.status_code == 403 and err(r)["code"] == "not_authorized"
    assert "employee" in err(r)["required_roles"]
    with engine.reader() as s:
        assert s.execute(select(func.count()).select_from(Record)).scalar_one() == 0


def test_a_nul_character_through_the_api_is_refused_naming_the_field(client, engine, org):
    """R-PERF-75 R-A11-5-1: a NUL in a text value sent to the API (which a browser form
    hardly sends, a script easily) is refused before the engine sees it, naming where it
    is, on both databases (the engine's own field check, beneath it, is tested in
    test_record_data_jsonb.py); nothing is created."""
    tok = token(engine, "emma", "read", "write")
    r = call(client, "POST", "/records", tok, {"workflow": "deviation",
                                               "data": {**DEV, "area": "Pack\u0000aging"}})
    assert r.status_code == 400
    assert err(r)["code"] == "bad_request"
    assert err(r)["message"].startswith("body/data/area: not valid text (a NUL character")
    with engine.reader() as s:
        assert s.execute(select(func.count()).select_from(Record)).scalar_one() == 0


def test_malformed_requests_are_400_and_change_nothing(client, engine, org):
    """R-A11-5-1: malformed JSON, bodies and parameters are refused with 400."""
    tok = token(engine, "quinn", "read", "write")
    number = engine.start("deviation", "emma", DEV).number
    cases = [
        ("POST", "/records", "{not json", "invalid_json"),
        ("POST", "/records", "NaN", "invalid_json"),
        ("POST", "/records", [1, 2], "bad_request"),
        ("POST", "/records", {"workflow": "deviation"}, "bad_request"),
        ("POST", "/records", {"workflow": "deviation", "data": "x"}, "bad_request"),
        ("POST", f"/records/{number}/transitions/triage", {"data": TRIAGE}, "bad_request"),
        ("POST", f"/records/{number}/transitions/triage",
         {"expected_version": "1", "data": TRIAGE}, "bad_request"),
        ("POST", f"/records/{number}/transitions/triage",
         {"expected_version": 1, "signature": {"username": "quinn"}}, "bad_request"),
        ("GET", "/records?limit=abc", None, "bad_request"),
        ("GET", "/records?limit=1000", None, "bad_request"),
        ("GET", "/records?cursor=!!!", None, "bad_cursor"),
        ("GET", "/records?cursor=YWJj", None, "bad_cursor"),
        ("GET", "/tasks?scope=everything", None, "bad_request"),
        ("GET", "/tasks?overdue=maybe", None, "bad_request"),
        ("GET", "/tasks?cursor=MjAyNnwx", None, "bad_cursor"),
        ("GET", "/definitions/deviation?version=x", None, "bad_request"),
    ]
    for method, path, body, code in cases:
        r = call(client, method, path, tok, body)
        assert (r.status_code, err(r)["code"]) == (400, code), (method, path, body)
    assert version(engine, number) == 1


def test_list_records_filters_keyset_pages_and_visibility(client, engine, org):
    """R-P11-10d-2: the list shows only records the caller may see; filters and keyset
    pagination (newest first, no OFFSET)."""
    numbers = [engine.start("deviation", "emma", {**DEV, "title": f"OOS {i}"}).number
               for i in range(3)]
    engine.fire(numbers[0], "triage", "quinn", TRIAGE)
    trn = engine.start("training_assignment", "tina", {
        "title": "SOP-1", "document": "SOP-1", "document_version": "1", "trainee": "olga",
        "due_date": "2026-04-01"}).number
    tok = token(engine, "quinn", "read")
    page1 = call(client, "GET", "/records?workflow=deviation&limit=2", tok).get_json()
    assert [i["number"] for i in page1["items"]] == numbers[:0:-1]
    page2 = call(client, "GET", f"/records?workflow=deviation&limit=2&cursor="
                                f"{page1['next_cursor']}", tok).get_json()
    assert [i["number"] for i in page2["items"]] == [numbers[0]] and page2["next_cursor"] is None
    got = call(client, "GET", "/records?state=investigation", tok).get_json()["items"]
    assert [i["number"] for i in got] == [numbers[0]]
    got = call(client, "GET", "/records?q=%22oos%201%22", tok).get_json()["items"]
    assert [i["number"] for i in got] == [numbers[1]]
    # ivy (ISMS only) sees neither deviations nor training assignments
    assert call(client, "GET", "/records", token(engine, "ivy", "read")).get_json()[
        "items"] == []
    # the list agrees with the engine's own visibility rule, record by record
    everything = set(numbers) | {trn}
    for user in ("emma", "olga", "quinn", "ivy", "tina"):
        listed = {i["number"] for i in call(client, "GET", "/records",
                                            token(engine, user, "read")).get_json()["items"]}
        visible = set()
        for n in everything:
            try:
                engine.get(n, viewer=user)
                visible.add(n)
            except RecordNotFound:
                pass
        assert listed == visible, user


def test_get_record_and_invisible_or_unknown_records_are_404(client, engine, org):
    """R-P11-10d-2: another workflow's record answers 404 like a missing one, on every
    record route, revealing nothing."""
    trn = engine.start("training_assignment", "tina", {
        "title": "SOP-1", "document": "SOP-1", "document_version": "1", "trainee": "emma",
        "due_date": "2026-04-01"}).number
    ivy = token(engine, "ivy", "read", "write")
    for path in (f"/records/{trn}", f"/records/{trn}/transitions", f"/records/{trn}/audit",
                 f"/records/{trn}/signatures", "/records/NOPE-2026-0001", "/records/1"):
        r = call(client, "GET", path, ivy)
        assert r.status_code == 404 and err(r)["code"] == "not_found", path
    before = version(engine, trn)
    r = call(client, "POST", f"/records/{trn}/transitions/acknowledge", ivy,
             {"expected_version": before})
    assert r.status_code == 404 and err(r)["code"] == "not_found"
    assert version(engine, trn) == before
    rec = call(client, "GET", f"/records/{trn}", token(engine, "tina", "read")).get_json()
    assert rec["number"] == trn and rec["data"]["trainee"] == "emma"
    assert rec["created_by"]["username"] == "tina" and rec["state"] == "assigned"


# ------------------------------------------------------------------ transitions


def test_available_transitions_follow_roles(client, engine, org):
    """R-P11-10g-1: the caller sees the steps their roles allow now."""
    number = engine.start("deviation", "emma", DEV).number
    q = call(client, "GET", f"/records/{number}/transitions",
             token(engine, "quinn", "read")).get_json()
    assert q["version"] == 1 and q["state"] == "reported"
    names = {t["name"]: t for t in q["items"]}
    assert set(names) == {"triage", "cancel"}
    assert names["cancel"]["signature"] == {"meaning": "Cancelled", "roles": ["qa"], "quorum": 1}
    assert names["triage"]["signature"] is None and "investigator" in names["triage"]["requires"]
    e = call(client, "GET", f"/records/{number}/transitions",
             token(engine, "emma", "read")).get_json()
    assert e["items"] == []


def test_fire_moves_the_record_and_errors_name_the_rule(client, engine, org):
    """R-API-1 R-P11-10f-1 R-P11-10f-2 R-P11-10f-3 R-P11-10g-1: the engine's path: stale version
    409 with the current version, guard 422, unavailable step 422, role 403; nothing
    changes on a refusal."""
    number = engine.start("deviation", "emma", DEV).number
    qa = token(engine, "quinn", "read", "write")
    path = f"/records/{number}/transitions/triage"
    r = call(client, "POST", path, qa, {"expected_version": 1,
                                        "data": {**TRIAGE, "classification": "major"}})
    assert r.status_code == 422 and err(r)["code"] == "guard_failed"
    assert "always needs a CAPA" in err(r)["message"] and err(r)["transition"] == "triage"
    r = call(client, "POST", path, token(engine, "emma", "write"),
             {"expected_version": 1, "data": TRIAGE})
    assert r.status_code == 403 and err(r)["code"] == "not_authorized"
    r = call(client, "POST", f"/records/{number}/transitions/approve", qa,
             {"expected_version": 1})
    assert r.status_code == 422 and err(r)["code"] == "transition_not_available"
    assert set(err(r)["available"]) == {"triage", "cancel"}
    r = call(client, "POST", path, qa, {"expected_version": 1, "data": {"investigator": 5}})
    assert r.status_code == 422 and err(r)["code"] == "validation_failed"
    assert version(engine, number) == 1
    r = call(client, "POST", path, qa, {"expected_version": 1, "data": TRIAGE,
                                        "reason": "triaged"})
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert body["moved"] and body["record"]["state"] == "investigation"
    assert body["record"]["version"] == 2 and body["created"] == []
    r = call(client, "POST", path, qa, {"expected_version": 1, "data": TRIAGE})
    assert r.status_code == 409
    assert err(r)["code"] == "stale_record" and err(r)["current_version"] == 2
    assert err(r)["expected_version"] == 1


def test_segregation_of_duties_is_422_naming_the_rule(client, engine, org):
    """R-P11-10g-2: the initiator may not approve their own deviation: 422 with the rule."""
    number = engine.start("deviation", "quinn", DEV).number
    engine.fire(number, "triage", "quentin", TRIAGE)
    engine.fire(number, "submit_investigation", "olga", INVESTIGATION)
    tok = token(engine, "quinn", "read", "write", "sign")
    v = version(engine, number)
    r = call(client, "POST", f"/records/{number}/transitions/approve", tok, {
        "expected_version": v, "signature": {"username": "quinn", "password": PASSWORD}})
    assert r.status_code == 422
    assert err(r)["code"] == "segregation_of_duties" and err(r)["rule"] == "not_initiator"
    assert version(engine, number) == v


# ------------------------------------------------------------------ signing


def _signatures(engine) -> int:
    with engine.reader() as s:
        return s.execute(select(func.count()).select_from(Signature)).scalar_one()


def _failed_attempts(engine, username: str) -> int:
    with engine.reader() as s:
        return identity.get_user(s, username).failed_attempts


def test_a_token_alone_never_signs(client, engine, org):
    """R-API-1 R-P11-200-1 R-P11-200-3: a signed step needs the 'sign' scope AND the signer's own
    credentials; without either, nothing is signed and nothing moves."""
    number = at_qa_review(engine)
    v = version(engine, number)
    path = f"/records/{number}/transitions/approve"
    sig = {"username": "quentin", "password": PASSWORD}
    no_sign = token(engine, "quentin", "read", "write")
    r = call(client, "POST", path, no_sign, {"expected_version": v, "signature": sig})
    assert r.status_code == 403 and err(r) | {"message": ""} == {
        "code": "insufficient_scope", "required_scope": "sign", "message": ""}
    signer = token(engine, "quentin", "read", "write", "sign")
    r = call(client, "POST", path, signer, {"expected_version": v})
    assert r.status_code == 422 and err(r)["code"] == "signature_required"
    assert err(r)["meaning"] == "Approved"
    r = call(client, "POST", path, signer, {"expected_version": v,
                                            "signature": {**sig, "username": "quinn"}})
    assert r.status_code == 422 and err(r)["code"] == "signature_credentials_rejected"
    assert version(engine, number) == v and _signatures(engine) == 0


def test_wrong_password_via_api_is_refused_counted_and_changes_nothing(client, engine, org):
    """R-P11-300d-1 R-P11-300d-2 R-P11-200-1: a wrong password signs nothing, leaves the
    record as it was, and counts toward lockout like in the UI; the Nth locks the account
    and its token stops working."""
    number = at_qa_review(engine)
    v = version(engine, number)
    tok = token(engine, "quentin", "read", "write", "sign")
    body = {"expected_version": v, "data": {"qa_comments": "fine"},
            "signature": {"username": "quentin", "password": "wrong-password-1"}}
    path = f"/records/{number}/transitions/approve"
    r = call(client, "POST", path, tok, body)
    assert r.status_code == 422 and err(r)["code"] == "signature_credentials_rejected"
    assert "password is wrong" in err(r)["message"]
    rec = engine.get(number)
    assert rec.version == v and rec.state == "qa_review" and "qa_comments" not in rec.data
    assert _signatures(engine) == 0 and _failed_attempts(engine, "quentin") == 1
    with engine.reader() as s:
        ev = s.execute(select(AuditEvent).where(AuditEvent.action == "signature_failed")
                       ).scalar_one()
    assert ev.chain == "system" and ev.changes["detail"] == "wrong password"
    codes = [err(call(client, "POST", path, tok, body))["code"] for _ in range(4)]
    assert codes == ["signature_credentials_rejected"] * 3 + ["account_locked"]
    r = call(client, "GET", "/me", tok)
    assert r.status_code == 403 and err(r)["code"] == "account_locked"
    assert engine.get(number).version == v


def test_signing_via_api_with_password_and_totp_and_the_manifestation(client, engine, account,
                                                                     org):
    """R-P11-200-1 R-P11-50-1 R-P11-70-1 R-SEC-29: without a session every API signing needs every
    component (TOTP when enrolled); the signature lists printed name, UTC time, meaning."""
    account("qiana", "qa", "employee", totp=True)
    number = at_qa_review(engine)
    v = version(engine, number)
    tok = token(engine, "qiana", "read", "write", "sign")
    path = f"/records/{number}/transitions/approve"
    sig = {"username": "qiana", "password": PASSWORD}
    r = call(client, "POST", path, tok, {"expected_version": v, "signature": sig})
    # no code given: asked for, not counted as a failed attempt (R-SEC-29)
    assert r.status_code == 422 and err(r)["code"] == "signature_rejected"
    assert "authentication code" in err(r)["message"]
    assert _signatures(engine) == 0
    code = account.totp["qiana"].at(clock.now())
    r = call(client, "POST", path, tok, {"expected_version": v, "data": {"qa_comments": "ok"},
                                         "signature": {**sig, "totp": code}})
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert body["moved"] and body["record"]["state"] == "closed" and body["signature_id"]
    sigs = call(client, "GET", f"/records/{number}/signatures", tok).get_json()["items"]
    assert len(sigs) == 1
    m = sigs[0]["manifestation"]
    assert m["printed_name"] == "Qiana Tester" and m["meaning"] == "Approved"
    assert m["signed_at_utc"] == "2026-03-02T09:00:31Z"
    assert m["text"] == "Qiana Tester, 2026-03-02 09:00:31 UTC, Approved"
    assert sigs[0]["method"] == "password+totp" and sigs[0]["username"] == "qiana"


# ------------------------------------------------------------------ tasks, definitions


def test_tasks_are_the_callers_inbox_with_keyset_pages(client, engine, org):
    """R-API-1: the caller's inbox (workflow.inbox): their tasks and tasks open to their roles."""
    numbers = [engine.start("deviation", "emma", {**DEV, "title": f"OOS {i}"}).number
               for i in range(3)]
    tok = token(engine, "quinn", "read")
    p1 = call(client, "GET", "/tasks?limit=2", tok).get_json()
    assert p1["total"] == 3 and p1["counts"] == {"deviation": 3} and p1["next_cursor"]
    p2 = call(client, "GET", f"/tasks?limit=2&cursor={p1['next_cursor']}", tok).get_json()
    got = [t["number"] for t in p1["items"] + p2["items"]]
    assert sorted(got) == numbers and p2["next_cursor"] is None
    t = p1["items"][0]
    assert t["role"] == "qa" and t["assignee"] is None and not t["mine"] and not t["overdue"]
    assert call(client, "GET", "/tasks?scope=mine", tok).get_json()["items"] == []
    assert call(client, "GET", "/tasks", token(engine, "emma", "read")).get_json()["total"] == 0
    clock.advance(timedelta(days=3))
    assert call(client, "GET", "/tasks?overdue=true", tok).get_json()["total"] == 3


def test_definitions_list_and_one_with_source_and_hash(client, engine, org):
    """R-P11-10k-1 R-P11-10a-3: published versions with their hashes and source."""
    tok = token(engine, "emma", "read")
    items = call(client, "GET", "/definitions", tok).get_json()["items"]
    keys = {d["key"]: d for d in items}
    assert {"deviation", "capa", "change_request", "access_review",
            "training_assignment"} <= set(keys)
    assert keys["deviation"]["latest_version"] == 1
    d = call(client, "GET", "/definitions/deviation", tok).get_json()
    assert d["version"] == 1 and d["content_hash"] == keys["deviation"]["versions"][0][
        "content_hash"]
    assert d["source"].startswith("# Deviation") and "area" in d["start"]["requires"]
    assert call(client, "GET", "/definitions/deviation?version=1", tok).status_code == 200
    for path in ("/definitions/deviation?version=7", "/definitions/nope"):
        r = call(client, "GET", path, tok)
        assert r.status_code == 404 and err(r)["code"] == "not_found"


def test_unknown_api_paths_and_methods_answer_json(client, engine, org):
    """R-A11-5-1: errors outside the route table are JSON too (404, 405, 413)."""
    r = client.get(f"{API}/nothing-here")
    assert r.status_code == 404 and err(r)["code"] == "not_found"
    r = client.delete(f"{API}/records")
    assert r.status_code == 405 and err(r)["code"] == "method_not_allowed"
    tok = token(engine, "emma", "read", "write")
    r = call(client, "POST", "/records", tok, "[" + "1," * 1_100_000 + "1]")
    assert r.status_code == 413 and err(r)["code"] == "payload_too_large"
    assert client.get("/no-such-page").status_code == 404  # the web UI keeps its HTML page
    assert "text/html" in client.get("/no-such-page").content_type


# ------------------------------------------------------------------ the tokens page, CLI


def test_tokens_page_creates_shows_once_and_revokes(client, engine, org):
    """R-P11-300c-1 R-P11-30-1: a user creates a token on a CSRF-protected page (shown
    once), it works at /api/v1, and revoking it stops it at once."""
    login(client, "emma")
    page = "/account/tokens/"
    assert client.post(page, data={"name": "x", "scopes": ["read"],
                                   "expires": "30"}).status_code == 400  # no CSRF token
    r = client.post(page, data={"csrf_token": csrf(client, page), "name": "Reporting",
                                "scopes": ["read"], "expires": "30"})
    assert r.status_code == 200
    secret = re.search(r"(qms_[A-Za-z0-9_-]{43})", r.get_data(as_text=True)).group(1)
    assert secret not in client.get(page).get_data(as_text=True)  # shown once
    assert call(client, "GET", "/me", secret).get_json()["username"] == "emma"
    with engine.reader() as s:
        row = s.execute(select(ApiToken)).scalar_one()
    assert row.prefix in client.get(page).get_data(as_text=True)
    r = client.post(f"{page}revoke", data={"csrf_token": csrf(client, page),
                                           "token_id": row.id})
    assert r.status_code == 302
    assert call(client, "GET", "/me", secret).status_code == 401


def test_tokens_page_cannot_revoke_someone_elses_token(client, engine, org):
    """R-P11-10g-1: the page only touches the user's own tokens."""
    other = token(engine, "quinn", "read")
    with engine.reader() as s:
        tid = s.execute(select(ApiToken.id)).scalar_one()
    login(client, "emma")
    page = "/account/tokens/"
    client.post(f"{page}revoke", data={"csrf_token": csrf(client, page), "token_id": tid})
    assert call(client, "GET", "/me", other).status_code == 200


def test_cli_service_account_token_list_and_revoke(engine, org, monkeypatch):
    """R-P11-10h-1 R-A11-12-1: `qms tokens service-account|create|list|revoke`."""
    from workflow import cli
    from workflow.cli import tokens as cli_tokens

    monkeypatch.setattr(cli_tokens, "checked_engine", lambda **_kw: (engine, None))
    run = CliRunner().invoke
    r = run(cli.main, ["tokens", "service-account", "hr", "--name", "HR system",
                       "--role", "training_coordinator", "--reason", "HR interface"])
    assert r.exit_code == 0, r.output
    r = run(cli.main, ["tokens", "create", "emma", "--name", "x", "--reason", "y"])
    assert r.exit_code == 1 and "only they can create their own" in r.output
    r = run(cli.main, ["tokens", "create", "hr", "--name", "HR prod", "--scope", "read",
                       "--scope", "write", "--reason", "go-live"])
    assert r.exit_code == 0, r.output
    secret = re.search(r"(qms_\S{43})", r.output).group(1)
    with engine.reader() as s:
        hr = identity.get_user(s, "hr")
        assert hr.password_hash is None and api_tokens.is_service_account(hr)
    r = run(cli.main, ["tokens", "list"])
    assert secret[:12] in r.output and secret not in r.output and "active" in r.output
    r = run(cli.main, ["tokens", "revoke", secret[:12], "--reason", "rotated"])
    assert r.exit_code == 0, r.output
    assert "revoked" in run(cli.main, ["tokens", "list", "--user", "hr"]).output
    with engine.reader() as s:
        ev = s.execute(select(AuditEvent).where(AuditEvent.action == "api_token_revoked")
                       ).scalar_one()
    assert "rotated" in ev.reason and "qms CLI" in ev.reason


def test_hr_system_creates_training_assignments_for_a_new_hire(client, engine, org):
    """R-API-1 R-P11-10h-1: the docs/api.md HR example: a training coordinator service
    account assigns training; the trainee finds it in their inbox."""
    with engine.unit() as s:
        system = identity.system_user(s)
        hr = api_tokens.create_service_account(s, "hr", "HR system", actor=system,
                                               roles=("training_coordinator",), reason="HR")
        tok = api_tokens.create_token(s, hr, actor=system, name="HR", scopes="read write",
                                      reason="HR").secret
    for doc in ("SOP-QA-001", "SOP-GMP-002"):
        r = call(client, "POST", "/records", tok, {"workflow": "training_assignment", "data": {
            "title": f"{doc} for new hire", "document": doc, "document_version": "3",
            "trainee": "emma", "due_date": "2026-03-30"}})
        assert r.status_code == 201, r.get_json()
    inbox = call(client, "GET", "/tasks?scope=mine", token(engine, "emma", "read")).get_json()
    assert inbox["total"] == 2 and all(t["mine"] for t in inbox["items"])


# ------------------------------------------------------------------ schemathesis


def test_schemathesis_finds_no_server_error_and_responses_match_the_document(app, engine,
                                                                              org):
    """R-A11-5-1: generated requests (valid and invalid) against every documented operation
    never cause a server error, and every response matches the OpenAPI document (status
    code, content type, schema). Bounded: a few examples per operation."""
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, given, settings
    from schemathesis.checks import (
        content_type_conformance,
        not_a_server_error,
        response_schema_conformance,
        status_code_conformance,
    )
    from schemathesis.generation import GenerationMode

    number = at_qa_review(engine)
    tok = token(engine, "quinn", "read", "write", "sign")
    schema = schemathesis.openapi.from_wsgi(f"{API}/openapi.json", app)
    checks = [not_a_server_error, status_code_conformance, content_type_conformance,
              response_schema_conformance]
    ran = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        # random values, then the same with a real record and definition in the path
        real = {k: v for k, v in (("number", number), ("key", "deviation"))
                if "{" + k + "}" in operation.path}
        runs = [(GenerationMode.POSITIVE, None), (GenerationMode.NEGATIVE, None)]
        if real:
            runs.append((GenerationMode.POSITIVE, real))
        for mode, path_parameters in runs:

            @settings(max_examples=5, deadline=None, database=None, derandomize=True,
                      suppress_health_check=list(HealthCheck))
            @given(case=operation.as_strategy(generation_mode=mode,
                                              path_parameters=path_parameters))
            def run(case: Any) -> None:
                response = case.call(headers={"Authorization": f"Bearer {tok}"})
                case.validate_response(response, checks=checks)

            run()
            ran += 1
    assert ran >= 20
