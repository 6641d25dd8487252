"""What one API request costs in statements (issue 18, target 3): the caller's token,
user and role grants are read once per request, and a write answers with the record as
written (row, creator, links) instead of rendering the whole record page."""

from __future__ import annotations

from sqlalchemy import event

from tests.web.test_api import DEV, TRIAGE, call, org, token  # noqa: F401


def _run(client, engine, method, path, tok, body=None):
    conn = engine.sessions.kw["bind"]
    seen: list[str] = []

    def grab(_c, _cur, statement, _p, _ctx, _many):
        if not statement.startswith(("SAVEPOINT", "RELEASE")):
            seen.append(" ".join(statement.split()))

    event.listen(conn, "before_cursor_execute", grab)
    try:
        r = call(client, method, path, tok, body)
    finally:
        event.remove(conn, "before_cursor_execute", grab)
    assert r.status_code in (200, 201), r.get_json()
    return r.get_json(), seen


def _grant_reads(seen):
    """The statements reading the caller's role grants outside a unit: the token's own
    (token, user and the user's active grants in one statement), never one of their own
    (a unit reads its actor with their grants itself)."""
    assert not [q for q in seen if q.startswith("SELECT role_grants.")], seen
    return [q for q in seen if q.startswith("SELECT api_tokens.") and "role_grants" in q]


def test_api_reads_the_callers_grants_once_a_request(client, engine, org):  # noqa: F811
    """R-PERF-22: GET /records/{number} and GET /tasks read the caller's token, user and
    role grants in one statement and the user row not again; the record costs its row, its
    creator and its links (measured before: 21 statements, the grants read 5 times; then 5
    and 4, the grants in a statement of their own)."""
    tok = token(engine, "quinn", "read", "write")
    number = engine.start("deviation", "emma", DEV).number
    call(client, "GET", f"/records/{number}", tok)  # warm: first-use look-ups

    body, seen = _run(client, engine, "GET", f"/records/{number}", tok)
    assert body["number"] == number and body["created_by"]["username"] == "emma"
    assert len(_grant_reads(seen)) == 1, seen
    assert not [q for q in seen if q.startswith("SELECT users.")
                and "users.username) = " in q.replace("lower(", "")], seen
    assert len(seen) <= 4, seen

    body, seen = _run(client, engine, "GET", "/tasks", tok)
    assert len(_grant_reads(seen)) == 1 and len(seen) <= 3, seen


def test_a_write_answers_with_the_record_as_written(client, engine, org):  # noqa: F811
    """R-PERF-23: a step through the API answers with the record as written (state,
    version, data, links) in three statements after the unit (row, creator, links): not
    the record page (trail, signatures, step options, extension options), and the grants
    are read once outside the unit (the unit reads the actor with their grants itself)."""
    tok = token(engine, "quinn", "read", "write")
    number = engine.start("deviation", "emma", DEV).number
    version = engine.get(number).version
    body, seen = _run(client, engine, "POST", f"/records/{number}/transitions/triage", tok,
                      {"data": TRIAGE, "expected_version": version})
    rec = body["record"]
    assert body["moved"] and rec["state"] == "investigation" and rec["version"] == version + 1
    assert rec["data"]["classification"] == "minor" and rec["links"] == []
    assert len(_grant_reads(seen)) == 1, seen
    after = seen[[i for i, q in enumerate(seen) if q.startswith("UPDATE records")][-1] + 1:]
    assert len(after) == 3, after
    assert not [q for q in seen if "audit_events.id" in q or "FROM signatures" in q], seen
