"""``qms backup`` and ``qms restore`` (issue 16, item 7; docs/operations.md "Backup and
restore"): a backup carries the database, a manifest with SHA-256 hashes and the newest
checkpoint; a restore refuses to overwrite a live database without --force, checks the
hashes, restores, and runs verify-audit and the checkpoint comparison, reporting the result.

Real commands on a database of the test's own: a SQLite file (online backup API), or with
QMS_TEST_DATABASE_URL a fresh PostgreSQL database (pg_dump / pg_restore, migrated as the
schema owner and used as the runtime role, as in production).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.factories import Qms, drop_pg_database, is_pg, new_pg_database
from workflow import backup as backups
from workflow import clock
from workflow import config as qms_config
from workflow.db import engines as db
from workflow.db.models import AuditEvent, User

PASSWORD = "Backup-Restore-Passw0rd"


class Site:
    """An installation: a database of its own, an instance directory with keys, qms."""

    def __init__(self, database_url: str, tmp_path: Path, label: str = "site") -> None:
        self.name = f"qms_bk_{uuid.uuid4().hex[:10]}"
        self.admin_url = database_url
        self.url = (new_pg_database(database_url, self.name) if is_pg(database_url)
                    else f"sqlite:///{tmp_path / (label + '.db')}")
        self.instance = tmp_path / label
        self.env = {"QMS_INSTANCE_DIR": str(self.instance),
                    "QMS_CHECKPOINT_DIR": str(self.instance / "checkpoints")}
        self.qms = Qms(self.url, key_hex="", env=self.env)

    def ok(self, *args: str, input: str | None = None) -> str:
        r = self.qms(*args, input=input)
        assert r.exit_code == 0, (args, r.output)
        return str(r.output)

    def usernames(self) -> set[str]:
        dbe = db.make_engine(self.url)
        try:
            with dbe.connect() as c:
                return set(c.execute(select(User.username)).scalars())
        finally:
            dbe.dispose()

    def actions(self) -> list[str]:
        dbe = db.make_engine(self.url)
        try:
            with dbe.connect() as c:
                return list(c.execute(select(AuditEvent.action).order_by(AuditEvent.id)).scalars())
        finally:
            dbe.dispose()

    def close(self) -> None:
        self.qms.close()
        if is_pg(self.url):
            drop_pg_database(self.admin_url, self.name)


@pytest.fixture
def site(database_url: str, tmp_path: Path) -> Iterator[Site]:
    s = Site(database_url, tmp_path)
    s.ok("init")
    # the first administrator, as docs/deployment.md creates it (granted directly: bootstrap)
    s.ok("users", "create", "ada", "--name", "Ada Admin", "--role", "admin", "--password-stdin",
         "--reason", "first administrator", input=PASSWORD + "\n")
    s.ok("users", "create", "bea", "--name", "Bea Backup", "--role", "employee",
         "--password-stdin", "--reason", "before the backup", input=PASSWORD + "\n")
    s.ok("audit", "checkpoint")
    yield s
    s.close()


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_backup_writes_the_database_a_manifest_and_the_checkpoint(site: Site) -> None:
    """R-P11-10c-3 R-A11-7-1: the backup folder holds the database, a copy of the newest
    checkpoint and a manifest naming both with their SHA-256, the counts of the database
    backed up and the schema revision; a second backup never overwrites the first."""
    out = site.ok("backup")
    [folder] = backups.backups(site.instance / "backups")
    assert f"backup {folder}" in out
    m = json.loads((folder / "manifest.json").read_text())
    data = "qms.dump" if is_pg(site.url) else "qms.db"
    assert m["format"] == "qms-backup/1" and m["data"] == data
    assert m["dialect"] == ("postgresql" if is_pg(site.url) else "sqlite")
    assert set(m["files"]) == {data, "checkpoint.json"}
    for name, f in m["files"].items():
        assert f["sha256"] == _sha(folder / name) and f["bytes"] == (folder / name).stat().st_size
    [cp] = sorted((site.instance / "checkpoints").glob("*.json"))
    assert m["checkpoint"]["file"] == cp.name
    assert (folder / "checkpoint.json").read_bytes() == cp.read_bytes()
    assert m["counts"]["audit_events"] == len(site.actions()) > 0
    assert m["schema_revision"] == db.head_revision()
    assert "password" not in m["database"].lower() or "***" in m["database"]
    site.ok("backup", "--to", str(site.instance / "elsewhere"))
    site.ok("backup")
    assert len(backups.backups(site.instance / "backups")) == 2


def test_restore_refuses_a_live_database_then_restores_and_verifies(site: Site) -> None:
    """R-P11-10c-3 R-A11-7-1: restoring over a database that holds data is refused without
    --force (nothing changes); with --force the backup replaces it, verify-audit passes, the
    restored database extends the checkpoint taken before the backup, a later checkpoint
    names what the restore lacks, and the restore is on the system audit trail."""
    site.ok("backup")
    [folder] = backups.backups(site.instance / "backups")
    site.ok("users", "create", "carl", "--name", "Carl After", "--role", "employee",
            "--password-stdin", "--reason", "after the backup", input=PASSWORD + "\n")
    site.ok("audit", "checkpoint")  # a checkpoint newer than the backup
    assert {"bea", "carl"} <= site.usernames()

    refused = site.qms("restore", str(folder))
    assert refused.exit_code == 1 and "holds data" in refused.output and "--force" in refused.output
    assert "carl" in site.usernames()

    out = site.ok("restore", str(folder), "--force")
    assert f"restored {folder.name}" in out
    assert "verify-audit OK" in out
    assert "extends checkpoint" in out
    assert "is newer than this backup" in out  # carl's events are not in the restore
    names = site.usernames()
    assert "bea" in names and "carl" not in names
    assert site.actions()[-1] == "database_restored"
    assert "OK" in site.ok("verify-audit")


def test_restore_into_an_empty_database_needs_no_force(site: Site, database_url: str,
                                                       tmp_path: Path) -> None:
    """R-P11-10c-3: a backup restores into a new, empty database of another installation
    holding the same keys (the disaster case) and is verified there."""
    site.ok("backup")
    [folder] = backups.backups(site.instance / "backups")
    other = Site(database_url, tmp_path, "other")
    try:
        other.instance.mkdir()
        for key in ("signature.key", "anchor.key"):  # the keys, restored from their own backup
            (other.instance / key).write_bytes((site.instance / key).read_bytes())
        out = other.ok("restore", str(folder))
        assert "verify-audit OK" in out and "extends checkpoint" in out
        assert "bea" in other.usernames()
    finally:
        other.close()


def test_a_damaged_backup_or_the_wrong_key_is_caught(site: Site) -> None:
    """R-P11-10c-3 R-A11-7-1: a backup file that differs from its manifest is refused before
    anything is restored; restored with another HMAC key, verify-audit fails and the command
    says so with exit status 1."""
    site.ok("backup")
    [folder] = backups.backups(site.instance / "backups")
    m = json.loads((folder / "manifest.json").read_text())
    data = folder / m["data"]
    original = data.read_bytes()
    data.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    r = site.qms("restore", str(folder), "--force")
    assert r.exit_code == 1 and "does not match its SHA-256" in r.output
    assert "bea" in site.usernames()
    data.write_bytes(original)

    wrong = Qms(site.url, key_hex="55" * 32, env=site.env)
    try:
        r = wrong("restore", str(folder), "--force")
    finally:
        wrong.close()
    assert r.exit_code == 1 and "VERIFICATION FAILED" in r.output, r.output
    assert "Traceback" not in r.output


def test_backup_age_hours(site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """R-OPS-4: the age of the newest complete backup in QMS_BACKUP_DIR, in hours (None
    before the first); an interrupted backup (no manifest) does not count."""
    monkeypatch.setenv("QMS_INSTANCE_DIR", str(site.instance))
    assert backups.status(qms_config.settings()).age_hours is None
    site.ok("backup")
    (site.instance / "backups" / "qms-backup-29990101T000000Z").mkdir()  # no manifest
    clock.advance(timedelta(hours=5, minutes=30))
    assert backups.status(qms_config.settings()).age_hours == 5.5
