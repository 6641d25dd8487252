"""/records (find any record) and GET /api/v1/records: the page, its paging links, CSV
export, saved searches and visibility, through the Flask client (issue 17, item 1)."""

from __future__ import annotations

import csv
import io
import re

from tests.web.conftest import csrf, login
from tests.web.test_api import call, token

DEV = {"title": "Dev", "description": "d", "occurred_on": "2026-03-01",
       "discovered_on": "2026-03-01", "area": "Filling", "immediate_actions": "hold"}


def _setup(engine, account):
    account("emma", "employee")
    account("quinn", "qa", "employee")
    account("otto", "deviation_owner")  # no role of the CAPA workflow
    hidden = engine.start("capa", "quinn", {"title": "Hidden pump recall",
                                            "description": "=HYPERLINK(\"x\")"}).number
    mine = [engine.start("deviation", "otto", {**DEV, "title": f"Pump issue {i}"}).number
            for i in range(5)]
    return hidden, mine


def _numbers(html: str) -> list[str]:
    return re.findall(r'class="recno" href="/records/([A-Z]+-\d{4}-\d{4})"', html)


def test_search_page_pages_both_ways_and_never_shows_invisible_records(client, engine,
                                                                        account, monkeypatch):
    """R-UI-30 R-UI-31 R-UI-32: the nav leads to /records; a search shows the matching
    records the person may see, with a count, paged by first / previous / next links; a
    record they may not open appears in no page, count or CSV."""
    from webapp.views import search as view

    monkeypatch.setattr(view, "PAGE", 2)
    hidden, mine = _setup(engine, account)
    login(client, "otto")
    home = client.get("/").get_data(as_text=True)
    assert 'href="/records/"' in home and ">Records</a>" in home
    r = client.get("/records/?q=pump")
    html = r.get_data(as_text=True)
    assert r.status_code == 200 and "<strong>5</strong> records" in html
    assert _numbers(html) == mine[::-1][:2] and hidden not in html
    nxt = re.search(r'rel="next" href="([^"]+)"', html).group(1).replace("&amp;", "&")
    html2 = client.get(nxt).get_data(as_text=True)
    assert _numbers(html2) == mine[::-1][2:4]
    prev = re.search(r'rel="prev" href="([^"]+)"', html2).group(1).replace("&amp;", "&")
    assert _numbers(client.get(prev).get_data(as_text=True)) == mine[::-1][:2]
    assert "« First" in html2 and "« First" not in html
    # the hidden CAPA: not by its number, not by its words, not in the export
    for q in (hidden, "recall", "hyperlink"):
        page = client.get(f"/records/?q={q}").get_data(as_text=True)
        assert hidden not in _numbers(page) and "<strong>0</strong> records" in page
        assert "No records found" in page
    body = client.get("/records/?q=pump&format=csv").get_data(as_text=True)
    assert hidden not in body and {row[0] for row in csv.reader(io.StringIO(body))} == {
        "number", *mine}


def test_csv_export_is_the_result_named_after_the_filter(client, engine, account):
    """R-UI-30: the CSV holds every matching visible record (not just the page) with labels,
    named after the filter; formula-like cells are neutralised (webapp/csvexport.py)."""
    hidden, _ = _setup(engine, account)
    login(client, "quinn")
    r = client.get("/records/?q=recall&workflow=capa&format=csv&bom=1")
    assert r.status_code == 200
    assert r.headers["Content-Disposition"] == 'attachment; filename="records-capa-recall.csv"'
    body = r.get_data(as_text=True)
    assert body.startswith("\ufeff")
    rows = list(csv.reader(io.StringIO(body.lstrip("\ufeff"))))
    assert rows[0][:5] == ["number", "title", "workflow", "state", "status"]
    assert rows[1][:5] == [hidden, "Hidden pump recall", "Corrective and Preventive Action",
                           rows[1][3], "open"]
    assert rows[1][3] and rows[1][3] != "open"  # the state's label


def test_saved_searches_on_the_page(client, engine, account, app):
    """R-UI-33: "Save search" keeps the current filters under a name; the chip runs it; the
    × deletes it; another person cannot delete it."""
    _setup(engine, account)
    login(client, "otto")
    token_ = csrf(client, "/records/?q=pump")
    r = client.post("/records/searches", data={"name": "My pumps", "csrf_token": token_,
                                               "query": "q=pump&workflow=deviation&cursor=x"})
    assert r.status_code == 302 and "q=pump" in r.headers["Location"]
    html = client.get("/records/").get_data(as_text=True)
    link = re.search(r'<a href="([^"]+)">My pumps</a>', html).group(1).replace("&amp;", "&")
    assert link == "/records/?q=pump&workflow=deviation"  # the cursor is not kept
    sid = re.search(r'/records/searches/(\d+)/delete', html).group(1)
    other = app.test_client()
    login(other, "emma")
    r = other.post(f"/records/searches/{sid}/delete",
                   data={"csrf_token": csrf(other, "/records/")}, follow_redirects=True)
    assert "No such saved search of yours" in r.get_data(as_text=True)
    assert "My pumps" in client.get("/records/").get_data(as_text=True)
    client.post(f"/records/searches/{sid}/delete", data={"csrf_token": token_})
    assert "My pumps" not in client.get("/records/").get_data(as_text=True)


def test_unusable_filters_get_a_clear_answer(client, engine, account):
    """R-UI-30 R-UI-32: a bad date or sort, From after To, or a forged page cursor is a 400
    that says what is wrong, never a 500."""
    _setup(engine, account)
    login(client, "otto")
    r = client.get("/records/?created_from=2026-13-01")
    assert r.status_code == 400 and "created_from" in r.get_data(as_text=True)
    r = client.get("/records/?created_from=2026-03-05&created_to=2026-03-01")
    assert r.status_code == 400 and "before the &#39;from&#39; date" in r.get_data(as_text=True)
    for bad in ("sort=random", "cursor=abc", "status=maybe"):
        r = client.get(f"/records/?{bad}")
        assert r.status_code == 400, bad
    r = client.get("/records/?format=csv&sort=random")
    assert r.status_code == 400


def test_api_search_filters_counts_and_visibility(client, engine, account):
    """R-UI-30 R-UI-31: GET /api/v1/records searches the same way, with counts and both
    cursors; the invisible record is not counted."""
    hidden, mine = _setup(engine, account)
    tok = token(engine, "otto", "read")
    got = call(client, "GET", "/records?q=pump&limit=2&count=true", tok).get_json()
    assert [i["number"] for i in got["items"]] == mine[::-1][:2]
    assert got["total"] == 5 and got["total_capped"] is False
    assert got["previous_cursor"] is None
    nxt = call(client, "GET", f"/records?q=pump&limit=2&cursor={got['next_cursor']}",
               tok).get_json()
    assert [i["number"] for i in nxt["items"]] == mine[::-1][2:4]
    back = call(client, "GET", f"/records?q=pump&limit=2&cursor={nxt['previous_cursor']}",
                tok).get_json()
    assert [i["number"] for i in back["items"]] == mine[::-1][:2]
    got = call(client, "GET", f"/records?q={hidden}&count=true", tok).get_json()
    assert got["items"] == [] and got["total"] == 0
    qt = token(engine, "quinn", "read")
    assert [i["number"] for i in call(client, "GET", "/records?q=recall&status=open",
                                      qt).get_json()["items"]] == [hidden]
    r = call(client, "GET", "/records?created_from=2026-03-05&created_to=2026-03-01", tok)
    assert r.status_code == 400 and "before" in r.get_json()["error"]["message"]
    r = call(client, "GET", "/records?sort=up", tok)
    assert r.status_code == 400
