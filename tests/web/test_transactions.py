"""Transactions per request (issue #12): a page reads through ONE read session, and writes
only through commands, each its own unit. Counted with a Session ``after_begin`` listener:
a session carrying the unit of work's server key is a write unit, any other a read."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from tests.web.conftest import PASSWORD, csrf, login
from workflow import clock
from workflow.db.models import UserSession
from workflow.db.uow import KEY
from workflow.identity import tokens as api_tokens
from workflow.identity import users as identity
from workflow.identity.sessions import TOUCH_EVERY

DEVIATION = {"title": "T", "description": "d", "occurred_on": "2026-03-01",
             "discovered_on": "2026-03-01", "area": "Filling", "immediate_actions": "hold"}


@contextmanager
def counting() -> Iterator[list[str]]:
    """The kind ("read" / "write") of every transaction begun inside the block, in order."""
    kinds: list[str] = []
    begun: list[Session] = []

    def after_begin(session: Session, _transaction: Any, _connection: Any) -> None:
        begun.append(session)

    event.listen(Session, "after_begin", after_begin)
    try:
        yield kinds
    finally:
        event.remove(Session, "after_begin", after_begin)
        kinds.extend("write" if s.info.get(KEY) else "read" for s in begun)


def count(fn: Callable[[], Any]) -> tuple[Any, list[str]]:
    with counting() as kinds:
        r = fn()
    return r, kinds


@pytest.fixture
def record(client, account, engine) -> str:
    """A deviation raised by emma; quinn (QA) is logged in."""
    account("emma", "employee")
    account("quinn", "qa", "employee")
    number = engine.start("deviation", "emma", DEVIATION).number
    assert login(client, "quinn").status_code == 302
    return number


def _last_seen(engine) -> Any:
    with engine.reader() as s:
        return s.execute(select(UserSession.last_seen_at)).scalar_one()


def test_a_record_page_is_one_read_transaction(client, record, engine):
    r, kinds = count(lambda: client.get(f"/records/{record}"))
    assert r.status_code == 200 and record in r.get_data(as_text=True)
    assert kinds == ["read"]


def test_the_session_row_is_written_only_when_its_refresh_is_due(client, record, engine):
    seen = _last_seen(engine)
    clock.advance(TOUCH_EVERY - timedelta(seconds=1))
    r, kinds = count(lambda: client.get(f"/records/{record}"))
    assert r.status_code == 200 and kinds == ["read"]
    assert _last_seen(engine) == seen  # not refreshed yet

    clock.advance(timedelta(seconds=1))  # now the stored time is TOUCH_EVERY old
    r, kinds = count(lambda: client.get(f"/records/{record}"))
    assert r.status_code == 200 and sorted(kinds) == ["read", "write"]
    assert _last_seen(engine) == clock.now()


def test_the_idle_timeout_counts_from_the_stored_last_seen_time(client, record, engine):
    """With the throttle a session may end up to TOUCH_EVERY sooner than 15 minutes (the
    policy's idle limit) after the last request, never later."""
    policy_idle = timedelta(minutes=15)
    clock.advance(TOUCH_EVERY / 2)
    assert client.get(f"/records/{record}").status_code == 200  # throttled: not written
    clock.advance(policy_idle - TOUCH_EVERY / 2)  # idle minutes after the stored time
    assert client.get(f"/records/{record}").status_code == 200  # still live; refreshed
    clock.advance(TOUCH_EVERY / 2)
    assert client.get(f"/records/{record}").status_code == 200  # throttled again
    # idle minutes and a second after the stored time, less than that after the last request
    clock.advance(policy_idle - TOUCH_EVERY / 2 + timedelta(seconds=1))
    r = client.get(f"/records/{record}")
    assert r.status_code == 302 and "/login" in r.headers["Location"]
    with engine.reader() as s:
        assert s.execute(select(UserSession.end_reason)).scalar_one() == "idle"


def test_a_signing_post_is_one_read_and_one_write(client, record, engine):
    rec = engine.get(record)
    token = csrf(client, f"/records/{record}/do/cancel")
    r, kinds = count(lambda: client.post(f"/records/{record}/do/cancel", data={
        "csrf_token": token, "expected_version": str(rec.version), "sig_username": "quinn",
        "sig_password": PASSWORD, "reason": "duplicate report"}))
    assert r.status_code == 302, r.get_data(as_text=True)
    assert kinds == ["read", "write"]
    assert engine.get(record).state != rec.state


def test_the_inbox_is_one_read_transaction(client, record):
    r, kinds = count(lambda: client.get("/"))
    assert r.status_code == 200 and kinds == ["read"]


def test_the_api_record_get_is_one_read_transaction(client, record, engine):
    with engine.unit() as s:
        quinn = identity.get_user(s, "quinn")
        tok = api_tokens.create_token(s, quinn, actor=quinn, name="t", scopes="read").secret
    headers = {"Authorization": f"Bearer {tok}"}
    assert client.get(f"/api/v1/records/{record}", headers=headers).status_code == 200
    r, kinds = count(lambda: client.get(f"/api/v1/records/{record}", headers=headers))
    assert r.status_code == 200 and r.get_json()["number"] == record
    assert kinds == ["read"]


def test_a_read_after_a_write_in_the_same_request_sees_the_write(client, record, engine):
    """The API's fire answers with the record as the write left it: a new read session
    begins after the write (an open snapshot would still show the old state)."""
    with engine.unit() as s:
        quinn = identity.get_user(s, "quinn")
        tok = api_tokens.create_token(s, quinn, actor=quinn, name="t",
                                      scopes="read write sign").secret
    headers = {"Authorization": f"Bearer {tok}"}
    rec = engine.get(record)
    assert client.get(f"/api/v1/records/{record}", headers=headers).status_code == 200
    r, kinds = count(lambda: client.post(
        f"/api/v1/records/{record}/transitions/cancel", headers=headers, json={
            "expected_version": rec.version, "reason": "duplicate report",
            "signature": {"username": "quinn", "password": PASSWORD}}))
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["record"]["state"] == engine.get(record).state != rec.state
    assert kinds == ["read", "write", "read"]


class TestWithRealCommits:
    """The same requests on a database of its own with real commits (the other tests nest
    every unit as a SAVEPOINT on one connection, where every session sees every write):
    a write during a request is committed and seen by the next read."""

    @pytest.fixture
    def engine(self, committed_engine):
        return committed_engine

    def test_record_page_and_signing_post(self, client, record, engine):
        r, kinds = count(lambda: client.get(f"/records/{record}"))
        assert r.status_code == 200 and kinds == ["read"]
        rec = engine.get(record)
        token = csrf(client, f"/records/{record}/do/cancel")
        r, kinds = count(lambda: client.post(f"/records/{record}/do/cancel", data={
            "csrf_token": token, "expected_version": str(rec.version), "sig_username": "quinn",
            "sig_password": PASSWORD, "reason": "duplicate report"}))
        assert r.status_code == 302 and kinds == ["read", "write"]
        after = engine.get(record)
        assert after.state != rec.state
        page = client.get(r.headers["Location"]).get_data(as_text=True)
        assert engine.definition_of(after).states[after.state].label in page

    def test_api_fire_answers_with_the_committed_state(self, client, record, engine):
        with engine.unit() as s:
            quinn = identity.get_user(s, "quinn")
            tok = api_tokens.create_token(s, quinn, actor=quinn, name="t",
                                          scopes="read write sign").secret
        headers = {"Authorization": f"Bearer {tok}"}
        rec = engine.get(record)
        r = client.post(f"/api/v1/records/{record}/transitions/cancel", headers=headers, json={
            "expected_version": rec.version, "reason": "duplicate report",
            "signature": {"username": "quinn", "password": PASSWORD}})
        assert r.status_code == 200, r.get_json()
        body = r.get_json()["record"]
        assert body["state"] == engine.get(record).state != rec.state
        assert body["version"] == rec.version + 1
