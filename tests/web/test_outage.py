"""Database outages (issue 16, item 4): one log line when the database goes away, one summary
line with the count of failed requests when it is back, a 503 "Database unavailable" page with
the reference instead of 500 tracebacks, and recovery without a restart.

Two real outages: PostgreSQL behind a TCP proxy the test cuts and restores (connections
dropped and refused, as when the server restarts), and a SQLite file made read-only (as on a
read-only file system) then writable again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import threading
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests.conftest import TEST_KEY
from webapp import create_app
from workflow.config import Settings
from workflow.db import engines as db
from workflow.db import outage
from workflow.engine.core import Engine
from workflow.identity.policy import Policy
from workflow.registry import Registry

OUTAGE_LOGGER = "workflow.db.outage"


class CuttableProxy:
    """A TCP proxy on 127.0.0.1 in its own thread: ``cut()`` closes every connection and
    refuses new ones, ``restore()`` listens again on the same port."""

    def __init__(self, target_host: str, target_port: int):
        self.target = (target_host, target_port)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server: asyncio.base_events.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.port = 0
        self.restore()

    def _run(self, coro):  # noqa: ANN001, ANN202
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self.writers |= {writer, up_writer}
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def _start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for w in list(self.writers):
            w.transport.abort()  # the server "goes away": connections reset
        self.writers.clear()
        await self.server.wait_closed()

    def restore(self) -> None:
        self._run(self._start())

    def cut(self) -> None:
        self._run(self._stop())

    def close(self) -> None:
        self.cut()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


def _app(url: str, tmp_path: Path, **engine_args: object):
    dbe = db.make_engine(url, **engine_args)
    eng = Engine(db.make_sessionmaker(dbe), TEST_KEY, registry=Registry())
    settings = Settings(instance_dir=tmp_path, secret_key="s" * 32, login_rate_per_ip=0,
                        login_rate_per_account=0)
    app = create_app({"TESTING": True, "WTF_CSRF_ENABLED": False, "QMS_ENGINE": eng,
                      "QMS_POLICY": Policy.from_settings(settings)}, settings=settings)
    return app, dbe


def _failed_login(client) -> int:  # noqa: ANN001
    """A request that reads and writes (a failed login is counted in the database)."""
    return client.post("/login", data={"username": "nobody", "password": "wrong"}).status_code


def _outage_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == OUTAGE_LOGGER]


@pytest.fixture
def pg_url(committed_url: str) -> str:
    if not committed_url.startswith("postgresql"):
        pytest.skip("the proxy outage needs PostgreSQL (QMS_TEST_DATABASE_URL); the SQLite "
                    "outage is the read-only test below")
    return committed_url


@pytest.mark.committed
@pytest.mark.parametrize("pre_ping", [True, False], ids=["pre_ping", "no_pre_ping"])
def test_postgres_outage_logs_once_answers_503_and_recovers_without_restart(
        pg_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture, pre_ping: bool) -> None:
    """R-OPS-13: the server goes away (connections reset, new ones refused) while requests
    come in: each answers 503 "Database unavailable" with its reference, ONE warning is
    logged, no traceback; when the server is back the next request works (same process, same
    pool) and ONE summary line gives the number of failed requests."""
    url = make_url(pg_url)
    proxy = CuttableProxy(url.host or "127.0.0.1", url.port or 5432)
    app, dbe = _app(url.set(host="127.0.0.1", port=proxy.port)
                    .render_as_string(hide_password=False), tmp_path, pool_pre_ping=pre_ping)
    client = app.test_client()
    try:
        assert _failed_login(client) == 401  # pooled connections exist
        caplog.clear()
        with caplog.at_level(logging.INFO):
            proxy.cut()
            for _ in range(25):
                r = client.post("/login", data={"username": "nobody", "password": "wrong"})
                assert r.status_code == 503
                page = r.get_data(as_text=True)
                assert "Database unavailable" in page
                assert f"reference {r.headers['X-Request-ID']}" in page
                assert r.headers["Retry-After"] == "30"
            ready = client.get("/readyz")
            assert ready.status_code == 503
            assert ready.json["checks"]["database"] == {"ok": False, "detail": "unreachable"}
            lines = _outage_lines(caplog)
            assert len(lines) == 1 and lines[0].levelname == "WARNING"
            assert "database unreachable" in lines[0].getMessage()
            assert not url.password or url.password not in lines[0].getMessage()
            assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
            proxy.restore()
            assert _failed_login(client) == 401  # no restart: the same app and pool
            assert client.get("/readyz").status_code == 200
        lines = _outage_lines(caplog)
        assert len(lines) == 2, [r.getMessage() for r in lines]
        summary = lines[1]
        assert "database available again" in summary.getMessage()
        assert summary.failed_requests == 25  # type: ignore[attr-defined]
        assert summary.failed_statements >= 25  # type: ignore[attr-defined]
        assert not outage.outage_of(dbe).down
    finally:
        dbe.dispose()
        proxy.close()


def _make_read_only(path: Path) -> None:
    if os.geteuid() == 0:  # root ignores file modes: the immutable flag stops root too
        r = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"cannot make the file read-only as root here: {r.stderr.strip()}")
    else:
        path.chmod(0o444)


def _make_writable(path: Path) -> None:
    if os.geteuid() == 0:
        subprocess.run(["chattr", "-i", str(path)], check=True)
    else:
        path.chmod(0o644)


@pytest.mark.committed
def test_sqlite_read_only_file_answers_503_and_recovers_when_writable_again(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """R-OPS-13: the database file becomes read-only: a connection opened meanwhile is
    read-only for good (SQLite falls back to read-only when it cannot open the file for
    writing); each write answers 503 "the database is read-only", reads still work, ONE
    warning is logged; once the file is writable again the next write works without a
    restart (the read-only connection was dropped) and ONE summary line is logged."""
    path = tmp_path / "qms.db"
    migrated = db.make_engine(f"sqlite:///{path}")
    db.upgrade(migrated)
    migrated.dispose()
    app, dbe = _app(f"sqlite:///{path}", tmp_path)
    client = app.test_client()
    try:
        assert _failed_login(client) == 401
        caplog.clear()
        with caplog.at_level(logging.INFO):
            _make_read_only(path)
            try:
                # the pool opens new connections (a worker's first, a recycled one): here
                # all of them, so that each is opened while the file is read-only
                dbe.pool.dispose()
                for _ in range(10):
                    r = client.post("/login", data={"username": "nobody", "password": "x"})
                    assert r.status_code == 503
                    assert "The database is read-only at the moment" in r.get_data(as_text=True)
                assert client.get("/login").status_code == 200  # pages that only read work
                ready = client.get("/readyz")
                assert ready.status_code == 503
                assert ready.json["checks"]["database"] == {"ok": False, "detail": "read-only"}
            finally:
                _make_writable(path)
            lines = _outage_lines(caplog)
            assert len(lines) == 1 and "database read-only" in lines[0].getMessage()
            assert _failed_login(client) == 401  # written: no restart needed
            assert client.get("/readyz").status_code == 200
        lines = _outage_lines(caplog)
        assert len(lines) == 2, [r.getMessage() for r in lines]
        assert lines[1].failed_requests == 10  # type: ignore[attr-defined]
        assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
    finally:
        dbe.dispose()


@pytest.mark.committed
def test_errors_that_are_no_outage_stay_500_with_their_traceback(committed_url, tmp_path,
                                                                 caplog) -> None:
    """R-OPS-13: a database error that is a bug (here: a missing table) is no outage: 500
    with the reference, logged with its traceback, the connection kept."""
    from sqlalchemy import text

    from webapp.context import read_session

    app, dbe = _app(committed_url, tmp_path)

    @app.route("/bad-sql")
    def bad_sql():  # noqa: ANN202
        read_session().execute(text("SELECT * FROM no_such_table"))
        return "unreachable"

    app.config["PROPAGATE_EXCEPTIONS"] = False
    with caplog.at_level(logging.INFO):
        r = app.test_client().get("/bad-sql")
    assert r.status_code == 500
    assert f"reference {r.headers['X-Request-ID']}" in r.get_data(as_text=True)
    assert any(rec.exc_info for rec in caplog.records)
    assert not _outage_lines(caplog)
    assert app.test_client().get("/readyz").status_code == 200
    dbe.dispose()


@pytest.mark.committed
def test_scheduler_ticks_during_an_outage_log_once_and_recover(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """R-OPS-13: the scheduler ticking every minute while its database cannot be opened logs
    ONE warning (no traceback per tick); when the database is there again, the next tick
    works and ONE summary line is logged."""
    from workflow.bootstrap import job_registry
    from workflow.scheduling import service
    from workflow.scheduling.schedules import load_schedules_text

    folder = tmp_path / "not-yet"
    dbe = db.make_engine(f"sqlite:///{folder / 'qms.db'}")
    eng = Engine(db.make_sessionmaker(dbe), TEST_KEY, registry=Registry())
    jobs = job_registry()
    schedules = load_schedules_text(
        "schedules:\n  timers: {job: run_timers, every: minute}\n", jobs=jobs)
    tick = service._tick(eng, schedules, jobs)
    try:
        with caplog.at_level(logging.INFO):
            for _ in range(5):
                tick()
            assert len(_outage_lines(caplog)) == 1
            assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
            folder.mkdir()
            db.upgrade(dbe)
            tick()
        lines = _outage_lines(caplog)
        assert len(lines) == 2 and "available again" in lines[1].getMessage()
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    finally:
        dbe.dispose()
