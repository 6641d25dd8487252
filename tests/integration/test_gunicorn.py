"""gunicorn with the shipped configuration (webapp/gunicorn_conf.py): every line it writes is
JSON through the one handler, the application's own lines included (they used to have no
handler under gunicorn), and each access line carries the request id of the X-Request-ID
header and the client address a trusted proxy forwarded."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from workflow import config

ROOT = Path(__file__).resolve().parents[2]
KEY_HEX = "cd" * 32

pytest.importorskip("gunicorn")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, headers: dict[str, str]) -> tuple[int, dict[str, str], str]:
    req = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, dict(r.headers), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()


@pytest.mark.committed
def test_gunicorn_logs_json_with_request_ids_and_forwarded_client(committed_url: str,
                                                                   tmp_path: Path) -> None:
    """R-OPS-14: under gunicorn with webapp/gunicorn_conf.py the app's lines, gunicorn's own
    and the access lines are JSON on one handler; the access line names the request id the
    app sent and the client address from X-Forwarded-For (QMS_TRUSTED_PROXIES=1)."""
    port = _free_port()
    env = config.environment_without_qms()
    env.update({"QMS_DATABASE_URL": committed_url, "QMS_INSTANCE_DIR": str(tmp_path),
                "QMS_SIGNATURE_KEY": KEY_HEX, "QMS_SECRET_KEY": "s" * 32,
                "QMS_TRUSTED_PROXIES": "1", "GUNICORN_BIND": f"127.0.0.1:{port}",
                "WEB_CONCURRENCY": "1", "PYTHONPATH": str(ROOT)})
    log_path = tmp_path / "gunicorn.log"
    with log_path.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c",
                                 "python:webapp.gunicorn_conf"], cwd=tmp_path, env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                status, headers, body = _get(f"http://127.0.0.1:{port}/readyz", {
                    "X-Request-ID": "probe-0000000001", "X-Forwarded-For": "203.0.113.9"})
                break
            except OSError:
                assert proc.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.3)
        assert status == 200, body
        assert headers["X-Request-ID"] == "probe-0000000001"
        status, headers, body = _get(f"http://127.0.0.1:{port}/no/such/page", {})
        assert status == 404
        missing_id = headers["X-Request-ID"]
        assert f"Reference <code>{missing_id}</code>" in body
        time.sleep(0.5)
    finally:
        proc.terminate()
        proc.wait(30)
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    assert lines, "gunicorn wrote nothing"
    assert {"gunicorn.error", "gunicorn.access", "webapp"} <= {line["logger"] for line in lines}
    assert any(line["logger"] == "webapp" and line["message"].startswith("web app ready")
               for line in lines)
    access = [line for line in lines if line["logger"] == "gunicorn.access"]
    ready = next(a for a in access if a["path"] == "/readyz")
    assert ready["request_id"] == "probe-0000000001"
    assert ready["client"] == "203.0.113.9" and ready["status"] == 200
    assert ready["method"] == "GET" and ready["duration_ms"] >= 0
    missing = next(a for a in access if a["path"] == "/no/such/page")
    assert missing["request_id"] == missing_id and missing["status"] == 404
    assert missing["client"] == "127.0.0.1"  # no X-Forwarded-For: the connecting address
    assert KEY_HEX not in log_path.read_text()
    assert os.environ.get("QMS_SECRET_KEY") != "s" * 32
