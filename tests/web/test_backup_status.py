"""The newest backup's age on /readyz and the dashboard (issue 16, item 7; R-OPS-4).

The backups are manifests written into QMS_BACKUP_DIR as ``qms backup`` writes them (the
backup itself is tested in tests/integration/test_backup.py); the clock is the tests'.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from tests.web.conftest import login
from workflow import clock
from workflow import config as qms_config


def _backup(folder: Path, hours_ago: float) -> str:
    when = clock.now() - timedelta(hours=hours_ago)
    name = f"qms-backup-{when:%Y%m%dT%H%M%SZ}"
    (folder / name).mkdir(parents=True)
    (folder / name / "manifest.json").write_text(json.dumps(
        {"format": "qms-backup/1", "created_at": when.isoformat()}))
    return name


def test_readyz_reports_the_backup_age_without_becoming_unready(client, tmp_path,
                                                                 monkeypatch) -> None:
    """R-OPS-4: /readyz carries ``backup_age_hours`` of the newest complete backup; none or
    one older than QMS_BACKUP_MAX_AGE_HOURS is flagged while the process stays ready."""
    monkeypatch.setenv("QMS_BACKUP_DIR", str(tmp_path / "bk"))
    client.application.config["QMS_SETTINGS"] = qms_config.settings()
    r = client.get("/readyz")
    assert r.status_code == 200 and r.json["status"] == "ready"
    assert r.json["checks"]["backup"] == {"ok": False, "detail": "no backup yet",
                                          "backup_age_hours": None}
    _backup(tmp_path / "bk", 30)
    r = client.get("/readyz")
    assert r.status_code == 200 and r.json["status"] == "ready"
    assert r.json["checks"]["backup"] == {"ok": False, "detail": "older than 26 hours",
                                          "backup_age_hours": 30.0}
    (tmp_path / "bk" / "qms-backup-29990101T000000Z").mkdir()  # interrupted: no manifest
    _backup(tmp_path / "bk", 2.25)
    r = client.get("/readyz")
    assert r.json["checks"]["backup"] == {"ok": True, "backup_age_hours": 2.2}
    assert str(tmp_path) not in r.get_data(as_text=True)  # no path on an open endpoint


def test_dashboard_shows_the_newest_backup(client, account, tmp_path, monkeypatch) -> None:
    """R-OPS-4: the dashboard's data-integrity section shows the newest backup's age and
    name, flagged when it is overdue."""
    monkeypatch.setenv("QMS_BACKUP_DIR", str(tmp_path / "bk"))
    client.application.config["QMS_SETTINGS"] = qms_config.settings()
    account("quinn", "qa", "employee")
    login(client, "quinn")
    html = client.get("/dashboard/").get_data(as_text=True)
    assert "Newest backup: <strong>none yet</strong>" in html
    old = _backup(tmp_path / "bk", 40)
    html = client.get("/dashboard/").get_data(as_text=True)
    assert f"<strong>40.0 hours ago</strong> ({old}): older than 26 hours" in html
    assert 'integrity-bad backup-age' in html
    new = _backup(tmp_path / "bk", 1)
    html = client.get("/dashboard/").get_data(as_text=True)
    assert f"<strong>1.0 hours ago</strong> ({new})." in html
    assert 'integrity-ok backup-age' in html
