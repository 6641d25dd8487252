"""GET /api/v1/kpis: the dashboard's metrics for the token's user (issue 7), with the period
and workflow filters, only records the caller may see, and its OpenAPI description."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.web.test_api import DEV, call, err, token
from webapp.api.views import ROUTES
from workflow import clock


@pytest.fixture
def org(account) -> dict[str, str]:
    account("emma", "employee")
    account("quinn", "qa", "employee")
    account("olga", "capa_owner", "employee")
    account("otto")
    return {}


def by_key(r) -> dict:
    return {m["key"]: m for m in r.get_json()["items"]}


def test_kpis_for_the_callers_visible_records(client, engine, org):
    """a qa token sees the CAPA and deviation numbers; a token of someone without
    a role in those workflows counts nothing (and no system-wide metrics)."""
    for t in ("A", "B"):
        engine.start("capa", "emma", {"title": t, "description": "d"})
    engine.start("deviation", "emma", DEV)
    clock.advance(timedelta(days=3))
    r = call(client, "GET", "/kpis", token(engine, "quinn"))
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    m = by_key(r)
    assert m["capa.open"]["value"] == 2 and m["capa.open"]["unit"] == "count"
    assert m["dev.created"]["value"] == 1
    assert m["capa.overdue"]["denominator"] == 2
    assert "sec.failed_logins" in m and m["sec.failed_logins"]["workflow"] is None
    assert body["viewer"] == "quinn" and len(body["period"]["from"]) == 7
    other = by_key(call(client, "GET", "/kpis", token(engine, "otto")))
    assert other["capa.open"]["value"] == 0
    assert not [k for k, v in other.items() if v["workflow"] is None]
    # the initiator sees her own records even without a CAPA role
    emma = by_key(call(client, "GET", "/kpis", token(engine, "emma")))
    assert emma["capa.open"]["value"] == 2


def test_kpi_filters_period_and_workflow(client, engine, org):
    """workflow= keeps that workflow's metrics only; from/to choose the months; a
    month written wrongly is 400."""
    engine.start("capa", "emma", {"title": "A", "description": "d"})
    tok = token(engine, "quinn")
    r = call(client, "GET", "/kpis?workflow=capa", tok)
    assert {v["workflow"] for v in r.get_json()["items"]} == {"capa"}
    r = call(client, "GET", "/kpis?from=2025-01&to=2025-02", tok)
    body = r.get_json()
    assert body["period"] == {"from": "2025-01", "to": "2025-02",
                              "start": "2025-01-01T00:00:00Z", "end": "2025-03-01T00:00:00Z"}
    m = by_key(r)
    assert m["capa.open"]["value"] == 0  # created after that period's end
    assert m["capa.on_time"]["value"] is None and m["capa.on_time"]["denominator"] == 0
    assert err(call(client, "GET", "/kpis?from=2025-13", tok))["code"] == "bad_request"
    assert call(client, "GET", "/kpis?workflow=nope", tok).status_code == 400


def test_kpis_need_a_read_token(client, engine, org):
    """no token is 401, a token without the read scope is 403; the route is in the
    OpenAPI document, generated from the route table."""
    assert call(client, "GET", "/kpis").status_code == 401
    r = call(client, "GET", "/kpis", token(engine, "quinn", "write"))
    assert r.status_code == 403 and err(r)["code"] == "insufficient_scope"
    doc = call(client, "GET", "/openapi.json").get_json()
    op = doc["paths"]["/api/v1/kpis"]["get"]
    assert op["operationId"] == "list_kpis"
    assert {p["name"] for p in op["parameters"]} == {"from", "to", "workflow"}
    assert "KpiList" in doc["components"]["schemas"]
    assert any(r.path == "/kpis" for r in ROUTES)
