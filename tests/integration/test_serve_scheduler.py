"""`make run` (`qms serve --scheduler`): one process serves the UI and runs the scheduler, so
the demo's notifications reach the bell without a second command (issue 16, item 6)."""

from __future__ import annotations

import http.cookiejar
import re
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from workflow import config
from workflow.demo import DEMO_PASSWORD

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.committed
def test_serve_with_scheduler_fills_the_bell(tmp_path: Path) -> None:
    """R-OPS-15: after `qms init --demo`, `qms serve --scheduler` delivers the demo's queued
    notifications by itself: a demo user logging in sees a bell above 0 within a minute,
    and the log says the scheduler runs in the process."""
    env = config.environment_without_qms()
    env.update({"QMS_INSTANCE_DIR": str(tmp_path), "PYTHONPATH": str(ROOT),
                "QMS_LOG_FORMAT": "text"})
    init = subprocess.run([sys.executable, "-m", "webapp.cli", "init", "--demo"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300)
    assert init.returncode == 0, init.stderr
    with sqlite3.connect(tmp_path / "qms.db") as db:  # nothing delivered yet: queued only
        assert db.execute("SELECT count(*) FROM notifications").fetchone() == (0,)
        assert db.execute("SELECT count(*) FROM outbox WHERE status = 'pending'"
                          ).fetchone()[0] > 0
    port = _free_port()
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "webapp.cli", "serve", "--scheduler",
                             "--port", str(port)], cwd=tmp_path, env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                page = opener.open(f"{base}/login", timeout=10).read().decode()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, \
                    (tmp_path / "serve.log").read_text()
                time.sleep(0.5)
        token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
        opener.open(f"{base}/login", data=urllib.parse.urlencode({
            "username": "emma", "password": DEMO_PASSWORD, "csrf_token": token}).encode(),
            timeout=20)
        unread = 0
        while unread == 0 and time.monotonic() < deadline:
            home = opener.open(f"{base}/", timeout=20).read().decode()
            assert "Notifications:" in home, "not logged in"
            unread = int(re.search(r"Notifications: (\d+) unread", home).group(1))
            if unread == 0:
                time.sleep(2)
        assert unread > 0
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()
    text = (tmp_path / "serve.log").read_text()
    assert "scheduler started in this process" in text
    assert "Traceback" not in text
