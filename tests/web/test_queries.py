"""No N+1 queries: the statements a page runs do not grow with what it lists.

Statements are counted with a SQLAlchemy ``before_cursor_execute`` listener on the test
engine's connection (the SAVEPOINTs of the rolled-back test transaction included: they are
the same for both sizes), so every query a request makes is seen, whichever session runs it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import event, select

from tests.web.conftest import login
from workflow import tasks as wf_inbox
from workflow.db.models import Record, Task, TaskStatus


@contextmanager
def counting(engine) -> Iterator[list[str]]:
    conn = engine.sessions.kw["bind"]  # the test's connection (tests/conftest.py)
    seen: list[str] = []

    def count(_conn, _cursor, statement, _params, _context, _many) -> None:
        seen.append(statement)

    event.listen(conn, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(conn, "before_cursor_execute", count)


def statements(client, engine, path: str) -> list[str]:
    client.get(path)  # warm: first-use lookups (definition cache, templates) are not N+1
    with counting(engine) as seen:
        r = client.get(path)
    assert r.status_code == 200, path
    return seen


def give_olga_tasks(engine, n: int) -> None:
    """``n`` open tasks for olga: CAPAs she owns (assigned) and change requests she drafts,
    so both sizes list the same workflows."""
    for i in range(n):
        if i % 3 == 2:
            engine.start("change_request", "olga", {"title": f"Change {i}", "description": "d"})
        else:
            number = engine.start("capa", "emma", {"title": f"CAPA {i}",
                                                   "description": "d"}).number
            engine.fire(number, "assign", "quinn", {"owner": "olga"})


def test_inbox_queries_do_not_grow_with_the_number_of_tasks(client, account, engine):
    """Issue 4 performance: the inbox runs the same statements for 3 and for 30 tasks (no
    per-row query for the record, the assignee or the definition). R-P11-10d-1: it is
    still the logged-in user's own inbox."""
    account("emma", "employee")
    account("quinn", "qa", "employee")
    account("olga", "capa_owner", "employee")
    give_olga_tasks(engine, 3)
    login(client, "olga")
    few = statements(client, engine, "/")
    give_olga_tasks(engine, 27)
    many = statements(client, engine, "/")
    html = client.get("/").get_data(as_text=True)
    assert "<strong>30</strong> tasks" in html and html.count("/claim") == 0
    assert 0 < len(many) == len(few), "\n".join(many)
    # and the filtered and search pages too
    assert len(statements(client, engine, "/?workflow=capa&overdue=1&q=capa")) == len(
        statements(client, engine, "/?workflow=capa&overdue=1&q=capa"))


def test_inbox_page_is_one_page_whatever_the_total(client, account, engine):
    """A page shows at most 25 rows and its statements stay flat past one page."""
    account("emma", "employee")
    account("quinn", "qa", "employee")
    account("olga", "capa_owner", "employee")
    give_olga_tasks(engine, 30)
    login(client, "olga")
    html = client.get("/").get_data(as_text=True)
    assert html.count('class="recno"') == 25 and "Next page" in html


def test_record_page_queries_do_not_grow_with_the_audit_trail(client, account, engine):
    """Issue 4 performance, R-P11-10e-1: the record page and its audit trail page list 3 or
    30 events with the same statements (the timeline uses the event's stored actor name)."""
    account("emma", "employee")
    account("quinn", "qa", "employee")
    short = engine.start("capa", "emma", {"title": "Short", "description": "d"}).number
    long = engine.start("capa", "emma", {"title": "Long", "description": "d"}).number

    def claim_release(number: str, times: int) -> None:
        with engine.reader() as s:
            task_id = s.execute(select(Task.id).join(Record, Record.id == Task.record_id)
                                .where(Record.number == number,
                                       Task.status == TaskStatus.OPEN)).scalar_one()
        for _ in range(times):
            wf_inbox.claim(engine, task_id, "quinn")
            wf_inbox.release(engine, task_id, "quinn")

    claim_release(short, 1)   # create + 2 = 3 events
    claim_release(long, 14)   # create + 28 = 29 events ...
    with engine.reader() as s:
        task_id = s.execute(select(Task.id).join(Record, Record.id == Task.record_id)
                            .where(Record.number == long)).scalar_one()
    wf_inbox.claim(engine, task_id, "quinn")  # ... + 1 = 30
    login(client, "quinn")
    for page in ("", "/audit"):
        few = statements(client, engine, f"/records/{short}{page}")
        many = statements(client, engine, f"/records/{long}{page}")
        assert len(many) == len(few), (page, "\n".join(many))
    html = client.get(f"/records/{long}/audit").get_data(as_text=True)
    assert html.count("Task claimed") == 15 and html.count("Task released") == 14
