"""The audit-trail pages as an inspector reads them (issue 17, item 5): labels, printed
names, formatted values and signatures, the chain sequence in the # column, paging both
ways, clear answers to unusable filters, the action menu without a scan, CSV named after
the filter."""

from __future__ import annotations

import re

from tests.web.conftest import PASSWORD, login
from tests.web.test_queries import counting
from workflow.signatures.part11 import PasswordSignature

DEV = {"title": "Cold room excursion", "description": "9.4 C for 3 h", "occurred_on": "2026-03-01",
       "discovered_on": "2026-03-01", "area": "Warehouse", "immediate_actions": "Quarantine"}


def _closed_deviation(engine, account):
    account("emma", "employee")
    account("quinn", "qa", "employee")
    account("ivy", "deviation_owner", "employee")
    n = engine.start("deviation", "emma", DEV).number
    engine.fire(n, "triage", "quinn", {
        "classification": "major", "classification_rationale": "Potential product impact.",
        "capa_required": True, "investigator": "ivy", "regulatory_reportable": False})
    engine.fire(n, "submit_investigation", "ivy", {
        "root_cause_category": "human_error", "root_cause": "Door left open.",
        "impact_assessment": "No impact.", "batch_disposition": "release_with_conditions"})
    engine.fire(n, "approve", "quinn", {"qa_comments": "Adequate."},
                signature=PasswordSignature("quinn", PASSWORD, None))
    return n


def _cells(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_record_trail_reads_as_labels_names_and_manifestations(client, engine, account):
    """R-UI-35: field labels and choice labels from the definition, Yes/No, printed names,
    state and step labels, the signature as printed name, meaning and time - no Python
    reprs, no usernames alone, no internal ids; the change column is given room."""
    n = _closed_deviation(engine, account)
    login(client, "emma")
    html = client.get(f"/records/{n}/audit").get_data(as_text=True)
    text = _cells(html)
    for shown in ("Classification: — → Major", "CAPA required: — → Yes",
                  "Reportable to a competent authority: — → No",
                  "Investigator: — → Ivy Tester (ivy)", "Root cause category: — → Human error",
                  "Proposed batch disposition: — → Release with conditions",
                  "State: Reported: QA triage → Investigation", "Triage and assign investigation",
                  "Signature: Approved by Quinn Tester, 2026-03-02 09:00:00 UTC (as Quality "
                  "Assurance)"):
        assert shown in text, shown
    for repr_ in ("True", "False", "None", "['", "{'", "content_hash", "record:", "capa_required"):
        assert repr_ not in text, repr_
    seqs = re.findall(r'<td class="nowrap muted">\s*(\d+)\s*</td>', html)
    assert seqs == [str(i) for i in range(1, len(seqs) + 1)] and len(seqs) >= 7
    r = client.get("/static/qms.css")
    try:
        assert "table.audit td.changes { min-width: 22rem" in r.get_data(as_text=True)
    finally:
        r.close()


def test_system_trail_pages_both_ways(client, engine, account, monkeypatch):
    """R-UI-36: "Older events" and "Newer events" walk the whole filtered trail by keyset,
    each event once, with the filter kept (the old link passed `before` twice: a 500)."""
    from webapp.views import audit as view

    monkeypatch.setattr(view, "PAGE", 4)
    _closed_deviation(engine, account)
    login(client, "quinn")
    seen, url, pages = [], "/audit/?user=tester", []
    while url:
        html = client.get(url).get_data(as_text=True)
        assert client.get(url).status_code == 200, url
        rows = re.findall(r'<td class="nowrap">(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)[^<]*</td>',
                          html)
        pages.append((url, html))
        seen.append(html.count("<tr>") - 1)
        m = re.search(r'rel="next" href="([^"]+)"', html)
        url = m.group(1).replace("&amp;", "&") if m else None
        if url:
            assert "user=tester" in url and url.count("before=") == 1
        assert rows
    assert len(pages) >= 3 and all(n == 4 for n in seen[:-1]) and 1 <= seen[-1] <= 4
    # back from the last page with "Newer events": the same pages in reverse
    html = pages[-1][1]
    for url, expected in reversed(pages[:-1]):
        m = re.search(r'rel="prev" href="([^"]+)"', html)
        assert m, url
        html = client.get(m.group(1).replace("&amp;", "&")).get_data(as_text=True)
        body = html.split("<tbody>")[1].split("</tbody>")[0]
        assert body == expected.split("<tbody>")[1].split("</tbody>")[0]
    assert 'rel="prev"' not in pages[0][1]


def test_unusable_filters_answer_clearly(client, engine, account):
    """R-UI-36: a 20-digit page cursor is a 400 naming it; From after To says so (400)
    instead of an empty table; an empty result says nothing matched."""
    _closed_deviation(engine, account)
    login(client, "quinn")
    r = client.get("/audit/?before=" + "9" * 20)
    assert r.status_code == 400 and "before" in r.get_data(as_text=True)
    r = client.get("/audit/?from=2026-03-05&to=2026-03-01")
    assert r.status_code == 400
    assert "before the &#39;From&#39; date" in r.get_data(as_text=True)
    r = client.get("/audit/?record=NOPE-1")
    assert r.status_code == 200 and "No event matches this filter" in r.get_data(as_text=True)
    r = client.get("/audit/?format=csv&from=2026-03-05&to=2026-03-01")
    assert r.status_code == 400


def test_action_menu_is_the_known_actions_not_a_scan(client, engine, account):
    """R-UI-36: the action menu lists the known actions with their labels, grouped, and the
    page reads no DISTINCT over the trail; filtering by one works."""
    _closed_deviation(engine, account)
    login(client, "quinn")
    client.get("/audit/")
    with counting(engine) as seen:
        html = client.get("/audit/").get_data(as_text=True)
    assert not [s for s in seen if "DISTINCT" in s.upper()]
    assert '<optgroup label="Record events">' in html and '<optgroup label="System events">' in html
    assert '<option value="sign" >Signed</option>' in html or 'value="sign"' in html
    assert 'value="role_granted"' in html and ">Role granted</option>" in html
    html = client.get("/audit/?action=sign").get_data(as_text=True)
    assert _cells(html).count("Signature: Approved by Quinn Tester") == 1


def test_csv_is_named_after_the_filter(client, engine, account):
    """R-UI-36: the export's file name says what it holds; the page cursor is not part of
    the export (the whole filtered trail is)."""
    n = _closed_deviation(engine, account)
    login(client, "quinn")
    r = client.get(f"/audit/?format=csv&record={n.lower()}&action=update&from=2026-03-01"
                   "&to=2026-03-31&before=999999")
    assert r.status_code == 200
    assert r.headers["Content-Disposition"] == (
        f'attachment; filename="audit-trail-{n}-update-2026-03-01-to-2026-03-31.csv"')
    assert r.get_data(as_text=True).count(n) == 3  # the three updates, cursor ignored
    r = client.get("/audit/?format=csv")
    assert r.headers["Content-Disposition"] == 'attachment; filename="audit-trail.csv"'
