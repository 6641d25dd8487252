"""Record search (workflow/queries/search.py) on SQLite FTS5 and PostgreSQL tsvector alike:
words, filters, keyset paging both ways, visibility, saved searches, and the index kept by
the same unit of work as the record (issue 17, item 1)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import insert, select, text

from workflow import clock
from workflow.db.engines import is_sqlite
from workflow.db.models import Record, Task, TaskStatus, User
from workflow.errors import ValidationFailed
from workflow.identity import users as identity
from workflow.queries import search
from workflow.queries.search import RecordQuery

DEV = {"title": "Dev", "description": "d", "occurred_on": "2026-03-01",
       "discovered_on": "2026-03-01", "area": "Filling", "immediate_actions": "hold"}


def _find(engine, username, rq=None, **kw):
    with engine.reader() as s:
        user = s.execute(select(User).where(User.username == username)).scalar_one()
        roles = identity.roles_of(s, user)
        page = search.search(s, engine.registry, user, roles, rq or RecordQuery(), **kw)
        return page, [r.number for r in page.records]


def _numbers(engine, username, **filters):
    return _find(engine, username, RecordQuery(**filters), limit=200)[1]


def dev(engine, who, **data):
    return engine.start("deviation", who, {**DEV, **data}).number


def test_words_match_number_title_and_text_values(engine, people):
    """R-UI-30: a search finds records by number, title and the text values of their data,
    every word as a word or a word's start, case and accents ignored where the index does;
    other records are not found."""
    a = dev(engine, people["emp"], title="Pump seal leaking", description="Łódź plant, line 3",
            batch="B-1001")
    b = dev(engine, people["emp"], title="Label misprint", description="Wrong expiry printed")
    c = engine.start("capa", people["emp"], {"title": "Calibration overdue",
                                             "description": "Balance 7 not calibrated"}).number
    qa = people["qa"]
    assert _numbers(engine, qa, q="pump") == [a]
    assert _numbers(engine, qa, q="PUMP LEAK") == [a]  # every word, prefixes, any case
    assert _numbers(engine, qa, q="pump label") == []
    assert _numbers(engine, qa, q="łódź") == [a]  # a text field, non-ASCII
    assert _numbers(engine, qa, q="b-1001") == [a]
    assert _numbers(engine, qa, q="b-10") == [a]  # words in a row, the last one started
    assert _numbers(engine, qa, q='"pump seal"') == [a]  # quoted: exactly, in a row
    assert _numbers(engine, qa, q='"seal pump"') == []
    assert _numbers(engine, qa, q='"pump sea"') == []
    assert _numbers(engine, qa, q="expiry") == [b]
    assert _numbers(engine, qa, q="calib") == [c]
    assert _numbers(engine, qa, q=a) == [a]  # the record number itself
    assert a in _numbers(engine, qa, q=a.lower()[:-1])  # the start of a number
    # operators of either query language are just punctuation here
    assert _numbers(engine, qa, q="pump OR label") == []
    assert _numbers(engine, qa, q="pump* -seal ^ 'x' & | ! ( ) : \\") == []
    assert _numbers(engine, qa, q='pump"') == [a]
    assert set(_numbers(engine, qa, q="")) >= {a, b, c}  # no words: every visible record


def test_index_follows_each_change_in_the_same_unit(engine, people, make_user):
    """R-UI-30: the index is written in the unit of work that changes the record: a step
    that changes a text value is found by the new words at once; a step refused (the unit
    rolled back) leaves nothing of its words in the index."""
    inv = make_user("ivy", "deviation_owner", "employee")
    n = dev(engine, people["emp"], title="Tablet weight out of range")
    assert _numbers(engine, people["qa"], q="granulator") == []
    engine.fire(n, "triage", people["qa"], {
        "classification": "major", "classification_rationale": "Granulator speed drift.",
        "capa_required": True, "investigator": inv})
    assert _numbers(engine, people["qa"], q="granulator drift") == [n]
    with pytest.raises(ValidationFailed):  # root cause missing: the whole step is refused
        engine.fire(n, "submit_investigation", inv, {"impact_assessment": "Xylophone impact"})
    assert _numbers(engine, people["qa"], q="xylophone") == []


def test_another_persons_invisible_record_never_appears(engine, people, make_user):
    """R-UI-31: visibility is the engine's rule (rules.visible_clause): a person without a
    role of the workflow, who did not start the record and never had a task on it, finds
    it neither in a page, nor in the count, nor in the export - whatever they search for."""
    outsider = make_user("otto", "deviation_owner")  # no role of the CAPA workflow
    hidden = engine.start("capa", people["qa"], {"title": "Secret recall plan",
                                                 "description": "confidential"}).number
    own = dev(engine, outsider, title="Secret spill in my area")
    for q in ("", "secret", hidden, "confidential"):
        page, found = _find(engine, outsider, RecordQuery(q=q), count=True)
        assert hidden not in found
        assert page.total == len(found)
    page, found = _find(engine, outsider, RecordQuery(q="secret"), count=True)
    assert found == [own] and page.total == 1 and not page.capped
    with engine.reader() as s:
        user = s.execute(select(User).where(User.username == outsider)).scalar_one()
        every = search.every(s, engine.registry, user, identity.roles_of(s, user),
                             RecordQuery(), limit=10_000)
    assert hidden not in [r.number for r in every] and own in [r.number for r in every]
    # QA (a role of the CAPA workflow) finds it
    assert _numbers(engine, people["qa"], q="secret") == sorted(
        [hidden, own], key=lambda n: -_id(engine, n))


def _id(engine, number):
    with engine.reader() as s:
        return s.execute(select(Record.id).where(Record.number == number)).scalar_one()


@pytest.mark.parametrize("sort", list(search.SORTS))
def test_keyset_paging_both_ways_visits_every_record_once(engine, people, sort):
    """R-UI-32: first / next / previous pages by keyset (no OFFSET) in every sort: going
    forward visits each matching record exactly once in order; going back from the last
    page returns the same pages."""
    made = []
    for i in range(11):
        clock.advance(timedelta(minutes=7 * (i % 4)))  # equal times for some: ties on id
        made.append(dev(engine, people["emp"], title=f"Paging case {i:02d}"))
    if sort == "due":  # a few without a due date: they come last
        with engine.unit() as s:
            s.execute(text("UPDATE records SET due_current = NULL WHERE number IN (:a, :b)"),
                      {"a": made[2], "b": made[5]})
    rq = RecordQuery(q="paging", sort=sort)
    pages, cursor = [], None
    while True:
        page, found = _find(engine, people["qa"], rq, cursor=cursor, limit=3)
        pages.append((page, found))
        if page.next is None:
            break
        cursor = page.next
    flat = [n for _, f in pages for n in f]
    assert sorted(flat) == sorted(made) and len(flat) == len(made)
    full = _find(engine, people["qa"], rq, limit=100)[1]
    assert flat == full  # pages concatenate to the one-page order
    assert pages[0][0].previous is None and [len(f) for _, f in pages] == [3, 3, 3, 2]
    # back from the last page
    back, cursor = [pages[-1][1]], pages[-1][0].previous
    while cursor:
        page, found = _find(engine, people["qa"], rq, cursor=cursor, limit=3)
        back.append(found)
        cursor = page.previous
    assert back[::-1] == [f for _, f in pages]


def test_filters(engine, people, make_user):
    """R-UI-30: workflow, state, open/closed, initiator, owner (open task assigned), overdue
    and created/updated dates each narrow the result as named."""
    inv = make_user("ivy", "deviation_owner", "employee")
    early = dev(engine, people["emp"], title="Filter early")
    clock.advance(timedelta(days=40))
    late = dev(engine, people["qa"], title="Filter late")
    capa = engine.start("capa", people["emp"], {"title": "Filter capa",
                                                "description": "d"}).number
    engine.fire(late, "triage", people["qa"], {
        "classification": "minor", "classification_rationale": "r", "capa_required": False,
        "capa_rationale": "Not systemic at all, a one-off.", "investigator": inv})
    qa = people["qa"]
    assert set(_numbers(engine, qa, q="filter")) == {early, late, capa}
    assert set(_numbers(engine, qa, q="filter", workflow="deviation")) == {early, late}
    assert _numbers(engine, qa, q="filter", workflow="deviation",
                    state="investigation") == [late]
    assert _numbers(engine, qa, q="filter", initiator="EMMA") == [capa, early]
    assert _numbers(engine, qa, q="filter", assignee=inv) == [late]
    assert _numbers(engine, qa, q="filter", initiator="nobody-at-all") == []
    # the early deviation's due date (30 days) has passed; the others' have not
    assert _numbers(engine, qa, q="filter", overdue=True) == [early]
    assert set(_numbers(engine, qa, q="filter", status="open")) == {early, late, capa}
    assert _numbers(engine, qa, q="filter", status="closed") == []
    cut = clock.now() - timedelta(days=1)
    assert _numbers(engine, qa, q="filter", created_to=cut) == [early]
    assert set(_numbers(engine, qa, q="filter", created_from=cut)) == {late, capa}
    assert set(_numbers(engine, qa, q="filter", updated_from=cut)) == {late, capa}


@pytest.mark.parametrize("bad, field", [
    (RecordQuery(sort="random()"), "sort"),
    (RecordQuery(status="maybe"), "status"),
    (RecordQuery(created_from=clock.now(), created_to=clock.now() - timedelta(days=1)),
     "created_to"),
])
def test_unusable_filters_are_refused_by_name(engine, people, bad, field):
    """R-UI-30: a filter that cannot be used is refused, naming it."""
    with pytest.raises(ValidationFailed) as exc:
        _find(engine, people["qa"], bad)
    assert field in exc.value.errors


@pytest.mark.parametrize("cursor", ["x", "WyJhIiwxLDJd", "W10", "WyJhIiwiMSIsMV0",
                                    "WyJhIiwgbnVsbCwgMTAwMDAwMDAwMDAwMDAwMDAwMDAwXQ"])
def test_a_forged_cursor_is_refused(engine, people, cursor):
    """R-UI-32: a cursor this search did not make is a clear error, never a crash."""
    with pytest.raises(ValidationFailed) as exc:
        _find(engine, people["qa"], RecordQuery(), cursor=cursor)
    assert "cursor" in exc.value.errors


def test_counts_are_capped(engine, people, monkeypatch):
    """R-UI-30: the count stops at the cap instead of walking every row."""
    monkeypatch.setattr(search, "COUNT_CAP", 3)
    for i in range(5):
        dev(engine, people["emp"], title=f"Counted {i}")
    page, found = _find(engine, people["qa"], RecordQuery(q="counted"), count=True, limit=2)
    assert page.total == 3 and page.capped and len(found) == 2


def test_saved_searches_are_per_person(engine, people):
    """R-UI-33: a person keeps named searches (the filters only); saving under the same
    name replaces; nobody sees or deletes another person's."""
    row = search.save(engine, people["emp"], "  My  deviations ",
                      {"q": "pump", "workflow": "deviation", "password": "x", "sort": ""})
    search.save(engine, people["emp"], "My deviations", {"q": "seal"})
    with engine.reader() as s:
        emma = s.execute(select(User).where(User.username == people["emp"])).scalar_one()
        quinn = s.execute(select(User).where(User.username == people["qa"])).scalar_one()
        mine = search.saved(s, emma)
        assert [(x.name, x.query) for x in mine] == [("My deviations", '{"q": "seal"}')]
        assert search.saved(s, quinn) == []
    assert not search.forget(engine, people["qa"], mine[0].id)
    assert search.forget(engine, people["emp"], mine[0].id)
    assert row.name == "My deviations"
    with pytest.raises(ValidationFailed):
        search.save(engine, people["emp"], "   ", {"q": "x"})


def test_search_query_uses_the_indexes_on_postgresql(engine, people, make_user):
    """R-UI-34: on PostgreSQL the search never reads ``records`` sequentially: the words go
    through the GIN index, order and paging through an index of records (EXPLAIN, with
    sequential scans priced out so a missing index shows)."""
    with engine.reader() as s:
        if is_sqlite(s):
            pytest.skip("PostgreSQL plan")
    for i in range(30):
        dev(engine, people["emp"], title=f"Explained pump {i}")
    with engine.unit() as s:
        s.execute(text("ANALYZE records"))
        s.execute(text("ANALYZE record_search"))
        user = s.execute(select(User).where(User.username == people["owner"])).scalar_one()
        roles = identity.roles_of(s, user)
        s.execute(text("SET LOCAL enable_seqscan = off"))
        for rq in (RecordQuery(q="pump"), RecordQuery(), RecordQuery(q="pump", sort="updated"),
                   RecordQuery(q="explained", workflow="deviation")):
            q, ident = search._filtered(s, engine.registry, user, roles, rq)
            _label, col, asc = search.SORTS[rq.sort]
            q = q.order_by(*search._order(col, asc, True, ident)).limit(51)
            sql = str(q.compile(s.connection(), compile_kwargs={"literal_binds": True}))
            plan = "\n".join(s.execute(text("EXPLAIN " + sql)).scalars())
            assert "Seq Scan on records" not in plan, plan
            if rq.q:
                assert "record_search" in plan and "Seq Scan on record_search" not in plan, plan


def test_assignee_filter_ignores_closed_tasks(engine, people, make_user):
    """R-UI-30: the owner filter means an open task now, not one done long ago."""
    inv = make_user("ivy", "deviation_owner", "employee")
    n = dev(engine, people["emp"], title="Owner filter")
    with engine.unit() as s:
        rec = s.execute(select(Record).where(Record.number == n)).scalar_one()
        s.execute(insert(Task).values(record_id=rec.id, state="x", state_visit=1, role=None,
                                      assignee_id=identity.get_user(s, inv).id,
                                      status=TaskStatus.DONE, opened_at=clock.now()))
    assert _numbers(engine, people["qa"], q="owner filter", assignee=inv) == []


@pytest.mark.parametrize("sort", ["updated", "number", "due"])
def test_common_and_rare_words_give_the_same_pages(engine, people, monkeypatch, sort):
    """R-UI-34: on SQLite a sort other than by id looks few matches up and sorts them, but
    walks the sort's index for a common word; both plans give the same pages."""
    made = [dev(engine, people["emp"], title=f"Dense case {i}") for i in range(7)]
    rq = RecordQuery(q="dense", sort=sort)
    monkeypatch.setattr(search, "DENSE", 100)
    few = _find(engine, people["qa"], rq, limit=100)[1]
    page = _find(engine, people["qa"], rq, limit=3)[0]
    monkeypatch.setattr(search, "DENSE", 2)
    many = _find(engine, people["qa"], rq, limit=100)[1]
    page2 = _find(engine, people["qa"], rq, cursor=page.next, limit=3)[1]
    assert few == many and sorted(few) == sorted(made) and page2 == few[3:6]
