"""Operations over HTTP (issue 16, item 4): liveness and readiness probes, request ids in the
response header, on the error pages and on every log line of the request, JSON log lines."""

from __future__ import annotations

import io
import json
import logging
import re
from pathlib import Path

import pytest
from sqlalchemy import event

from tests.conftest import TEST_KEY
from webapp import create_app
from workflow import health, logs
from workflow.config import Settings
from workflow.db import engines as db
from workflow.engine.core import Engine
from workflow.registry import Registry


def _statements(app) -> list[str]:
    seen: list[str] = []
    bind = app.config["QMS_ENGINE"].sessions.kw["bind"].engine
    event.listen(bind, "before_cursor_execute", lambda *a: seen.append(a[2]))
    return seen


def test_healthz_answers_without_the_database(app, client, account) -> None:
    """R-OPS-11: /healthz is liveness only: 200 JSON without a login and without a database
    statement, also with a session cookie."""
    seen = _statements(app)
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json == {"status": "ok"}
    client.set_cookie("qms_session", "whatever")
    assert client.get("/healthz").status_code == 200
    assert seen == []
    assert r.headers["Cache-Control"] == "no-store"


def test_readyz_reports_database_schema_and_keys_without_secrets(app, client) -> None:
    """R-OPS-11: /readyz checks the database, the schema revision and the keys; 200 JSON,
    no login, and nothing an attacker could use (no URL, path, revision id or key)."""
    r = client.get("/readyz")
    assert r.status_code == 200, r.get_data(as_text=True)
    # no backup in the test's instance directory yet: flagged, but ready (R-OPS-4)
    assert r.json == {"status": "ready", "checks": {"database": {"ok": True},
                                                    "schema": {"ok": True},
                                                    "keys": {"ok": True},
                                                    "backup": {"ok": False,
                                                               "detail": "no backup yet",
                                                               "backup_age_hours": None}}}
    text = r.get_data(as_text=True)
    bind = app.config["QMS_ENGINE"].sessions.kw["bind"].engine
    assert str(bind.url.database) not in text and TEST_KEY.hex() not in text
    assert db.head_revision() not in text


def _app_on(url: str, tmp_path: Path):
    dbe = db.make_engine(url)
    eng = Engine(db.make_sessionmaker(dbe), TEST_KEY, registry=Registry())
    settings = Settings(instance_dir=tmp_path, secret_key="s" * 32)
    return create_app({"TESTING": True, "QMS_ENGINE": eng}, settings=settings), dbe


def test_readyz_is_503_on_a_database_without_the_schema_or_unreachable(tmp_path) -> None:
    """R-OPS-11: not initialised -> 503 naming the schema; an unreachable database -> 503
    naming the database; the reasons are short words, not exception texts."""
    app, dbe = _app_on(f"sqlite:///{tmp_path / 'empty.db'}", tmp_path)
    r = app.test_client().get("/readyz")
    assert r.status_code == 503
    assert r.json["status"] == "not ready"
    assert r.json["checks"]["database"] == {"ok": True}
    assert r.json["checks"]["schema"] == {"ok": False, "detail": "not initialised"}
    dbe.dispose()
    app, dbe = _app_on(f"sqlite:///{tmp_path / 'no' / 'such' / 'dir.db'}", tmp_path)
    r = app.test_client().get("/readyz")
    assert r.status_code == 503
    assert r.json["checks"]["database"] == {"ok": False, "detail": "unreachable"}
    assert "no/such" not in r.get_data(as_text=True)
    dbe.dispose()


def test_a_readiness_check_is_one_function_added_to_the_list(client, monkeypatch) -> None:
    """R-OPS-11: a check (e.g. the newest backup's age) is a function in health.CHECKS; its
    figures are shown; a non-critical failure does not make the process unready; a check
    that raises counts as failed."""
    def backup(p: health.Probe) -> health.Check:
        return health.Check("backup", False, "older than a day", {"backup_age_hours": 30.5},
                            critical=False)

    monkeypatch.setattr(health, "CHECKS", [*health.CHECKS, backup])
    r = client.get("/readyz")
    assert r.status_code == 200
    assert r.json["checks"]["backup"] == {"ok": False, "detail": "older than a day",
                                          "backup_age_hours": 30.5}

    def broken(p: health.Probe) -> health.Check:
        raise RuntimeError("oops")

    monkeypatch.setattr(health, "CHECKS", [*health.CHECKS, broken])
    r = client.get("/readyz")
    assert r.status_code == 503 and r.json["checks"]["broken"] == {"ok": False,
                                                                   "detail": "check failed"}


def test_request_id_header_generated_or_accepted_when_well_formed(client) -> None:
    """R-OPS-12: every answer carries X-Request-ID: a new one, or the caller's when it is
    well-formed (a proxy's id); a malformed one (quotes, too long, too short) is replaced."""
    first = client.get("/login").headers["X-Request-ID"]
    second = client.get("/login").headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", first) and first != second
    given = "lb-2f1c9a77-0001"
    assert client.get("/login", headers={"X-Request-ID": given}).headers["X-Request-ID"] == given
    for bad in ('x" onmouseover="1', "a" * 101, "short", "../../etc", "id with spaces"):
        got = client.get("/healthz", headers={"X-Request-ID": bad}).headers["X-Request-ID"]
        assert got != bad and re.fullmatch(r"[0-9a-f]{32}", got)


@pytest.fixture
def json_log():
    """The JSON handler on the root logger, writing into a buffer; yields the parsed lines."""
    buffer = io.StringIO()
    handler = logs.make_handler("json", buffer)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)

    def lines() -> list[dict]:
        return [json.loads(line) for line in buffer.getvalue().splitlines()]

    yield lines
    root.removeHandler(handler)
    root.setLevel(old_level)


def test_500_page_names_the_reference_found_on_every_log_line(app, json_log) -> None:
    """R-OPS-12: the 500 page gives the request id as its reference (it used to say "tell your
    administrator ." with nothing), the header carries it, and every log line of the request,
    the traceback's too, carries it as JSON."""
    @app.route("/explode")
    def explode():
        logging.getLogger("workflow.test").info("about to fail")
        raise RuntimeError("kaput")

    app.config["PROPAGATE_EXCEPTIONS"] = False
    r = app.test_client().get("/explode")
    assert r.status_code == 500
    rid = r.headers["X-Request-ID"]
    page = r.get_data(as_text=True)
    assert f"tell your administrator the reference {rid}." in page
    assert "administrator ." not in page
    lines = [line for line in json_log() if line["request_id"] == rid]
    assert [line["message"] for line in lines][:1] == ["about to fail"]
    assert any("RuntimeError: kaput" in line.get("exc", "") for line in lines)
    assert all({"ts", "level", "logger", "message", "request_id"} <= set(line)
               for line in json_log())
    # outside a request the lines carry no id
    logging.getLogger("workflow.test").warning("between requests")
    assert json_log()[-1]["request_id"] is None


def test_api_errors_carry_the_request_id_header(client) -> None:
    """R-OPS-12: the JSON API's error answers carry the id too."""
    r = client.get("/api/v1/no-such-thing", headers={"X-Request-ID": "trace-0123456789"})
    assert r.status_code in (401, 404)
    assert r.headers["X-Request-ID"] == "trace-0123456789"


def test_text_log_format_names_the_request_id() -> None:
    """R-OPS-12: QMS_LOG_FORMAT=text writes plain lines, request id in brackets."""
    buffer = io.StringIO()
    handler = logs.make_handler("text", buffer)
    token = logs.request_id.set("req-12345678")
    try:
        handler.handle(logging.LogRecord("workflow.x", logging.WARNING, __file__, 1, "hello %s",
                                         ("there",), None))
    finally:
        logs.request_id.reset(token)
    assert re.search(r"WARNING workflow\.x \[req-12345678\] hello there$", buffer.getvalue()
                     .strip())
