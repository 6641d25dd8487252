"""Backups of the database and their restore (``qms backup``, ``qms restore``; 21 CFR
11.10(c), EU GMP Annex 11 §7.2; docs/operations.md "Backup and restore").

A backup is one folder ``qms-backup-<UTC time>`` in ``QMS_BACKUP_DIR`` (or ``--to``):

* the database: ``qms.db`` (SQLite, copied with SQLite's online backup API, consistent while
  the application writes) or ``qms.dump`` (PostgreSQL, ``pg_dump --format=custom`` run on a
  snapshot exported by this module, so the counts in the manifest are those of the dump);
* ``checkpoint.json``: a copy of the newest signed checkpoint (QMS_CHECKPOINT_DIR) at the
  time of the backup, when there is one: the restored database must extend it;
* ``manifest.json``: format, creation time, database kind, schema revision, counts (records,
  audit events, signatures), the newest audit event id, the checkpoint reference, and the
  SHA-256 and size of each file. Written last: a folder without it is not a backup.

The folder is written under a temporary name and renamed when complete. The keys are never
in a backup (back them up apart, docs/keys.md). A restore checks every SHA-256 first, refuses
to overwrite a database that holds tables unless forced, and replaces the database with the
backup's; the caller then verifies it (``qms restore`` runs verify-audit and compares the
checkpoint).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
from dataclasses import dataclass
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, func, inspect, select, text
from sqlalchemy import Engine as DBEngine
from sqlalchemy.engine import URL, make_url

from workflow import clock, config
from workflow.audit import checkpoints
from workflow.audit import trail as audit
from workflow.db import engines as db
from workflow.db import roles
from workflow.db.models import AuditEvent, Record, Signature
from workflow.db.uow import Units
from workflow.errors import BackupError
from workflow.identity.users import system_user

FORMAT = "qms-backup/1"
PREFIX = "qms-backup-"
MANIFEST = "manifest.json"
CHECKPOINT = "checkpoint.json"
SQLITE_FILE = "qms.db"
PG_FILE = "qms.dump"


@dataclass(frozen=True)
class Backup:
    """A complete backup folder and its manifest."""

    path: Path
    manifest: dict[str, Any]

    @property
    def created_at(self) -> datetime:
        return datetime.fromisoformat(self.manifest["created_at"])

    @property
    def checkpoint_copy(self) -> Path | None:
        return self.path / CHECKPOINT if self.manifest.get("checkpoint") else None


def owner_url(settings: config.Settings) -> str:
    """The URL backups and restores connect with: the schema owner's (QMS_MIGRATION_DATABASE_URL,
    which can read and recreate every table), else the application's."""
    return settings.migration_database_url or db.default_database_url(settings)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _version() -> str:
    try:
        return metadata.version("qms-workflow")
    except metadata.PackageNotFoundError:  # pragma: no cover - a source tree not installed
        return "unknown"


def _figures(conn: Connection) -> dict[str, Any]:
    """Counts and the newest audit event id, read on ``conn`` (the snapshot backed up)."""
    def count(model: Any) -> int:
        return int(conn.execute(select(func.count()).select_from(model)).scalar_one())

    return {"counts": {"records": count(Record), "audit_events": count(AuditEvent),
                       "signatures": count(Signature)},
            "last_audit_event_id": conn.execute(select(func.max(AuditEvent.id))).scalar_one(),
            "schema_revision": conn.execute(text("SELECT version_num FROM alembic_version")
                                            ).scalar_one_or_none()}


# --------------------------------------------------------------------------- PostgreSQL tools


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise BackupError(f"{name} is not installed: install the PostgreSQL client "
                                "programs of the server's major version (or newer)")
    return found


def _libpq(url: URL) -> tuple[str, dict[str, str]]:
    """A libpq connection URI without the password, and the environment carrying it (a
    password never appears on a command line)."""
    env = config.environment_without_qms()
    if url.password:
        env["PGPASSWORD"] = str(url.password)
    uri = url.set(drivername="postgresql", password=None).render_as_string(hide_password=False)
    return uri, env


def _run(cmd: list[str], env: dict[str, str], what: str) -> None:
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise BackupError(f"{what} failed (exit {proc.returncode}): "
                                  + (detail[-1] if detail else "no message"))


# --------------------------------------------------------------------------- backing up


def _dump_sqlite(url: URL, out: Path) -> dict[str, Any]:
    source = Path(str(url.database))
    if not source.is_file():
        raise BackupError(f"no database file at {source}")
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    dst = sqlite3.connect(out)
    try:
        with dst:
            src.backup(dst)  # the online backup API: a consistent copy while others write
    finally:
        src.close()
        dst.close()
    copy = db.make_engine(f"sqlite:///{out}")
    try:
        with copy.connect() as conn:
            return _figures(conn)
    finally:
        copy.dispose()


def _dump_pg(dbe: DBEngine, url: URL, out: Path) -> dict[str, Any]:
    pg_dump = _tool("pg_dump")
    uri, env = _libpq(url)
    # one snapshot for the figures and the dump: the manifest's counts are the dump's
    with dbe.connect().execution_options(isolation_level="REPEATABLE READ") as conn:
        snapshot = conn.execute(text("SELECT pg_export_snapshot()")).scalar_one()
        figures = _figures(conn)
        _run([pg_dump, "--format=custom", "--no-password", f"--snapshot={snapshot}",
              f"--file={out}", f"--dbname={uri}"], env, "pg_dump")
        conn.rollback()
    return figures


def _checkpoint_ref(settings: config.Settings, folder: Path) -> dict[str, Any] | None:
    found = checkpoints.files(settings.checkpoint_path)
    if not found:
        return None
    newest = found[-1]
    doc = checkpoints.load(newest)
    shutil.copyfile(newest, folder / CHECKPOINT)
    return {"file": newest.name, "created_at": doc["checkpoint"]["created_at"],
            "key_id": doc["signature"]["key_id"]}


def create(settings: config.Settings | None = None, to: Path | None = None) -> Backup:
    """Back the database up into a new folder of ``to`` (default QMS_BACKUP_DIR)."""
    s = settings if settings is not None else config.settings()
    url = make_url(owner_url(s))
    root = Path(to) if to is not None else s.backup_path
    created = clock.now()
    name = f"{PREFIX}{created:%Y%m%dT%H%M%SZ}"
    root.mkdir(parents=True, exist_ok=True)
    n = 1
    while (root / name).exists():
        n += 1
        name = f"{PREFIX}{created:%Y%m%dT%H%M%SZ}-{n}"
    partial = root / f".{name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    try:
        dialect = url.get_backend_name()
        if dialect == "sqlite":
            data = SQLITE_FILE
            figures = _dump_sqlite(url, partial / data)
        elif dialect == "postgresql":
            data = PG_FILE
            dbe = db.make_engine(str(url.render_as_string(hide_password=False)))
            try:
                figures = _dump_pg(dbe, url, partial / data)
            finally:
                dbe.dispose()
        else:
            raise BackupError(f"cannot back up a {dialect} database")
        checkpoint = _checkpoint_ref(s, partial)
        files = {f.name: {"sha256": sha256(f), "bytes": f.stat().st_size}
                 for f in sorted(partial.iterdir())}
        manifest = {"format": FORMAT, "created_at": created.isoformat(), "dialect": dialect,
                    "database": url.render_as_string(hide_password=True), "data": data,
                    "qms_version": _version(), **figures, "checkpoint": checkpoint,
                    "files": files}
        (partial / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        os.replace(partial, root / name)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return Backup(root / name, manifest)


# --------------------------------------------------------------------------- reading backups


def load(path: Path) -> Backup:
    """The backup in folder ``path``, every file's SHA-256 checked against the manifest."""
    path = Path(path)
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except FileNotFoundError:
        raise BackupError(f"{path} is not a backup: no {MANIFEST} "
                                     "(an interrupted backup has none)") from None
    except (OSError, ValueError) as exc:
        raise BackupError(f"cannot read {path / MANIFEST}: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError(f"{path / MANIFEST} is not a {FORMAT} manifest")
    files = manifest.get("files") or {}
    if manifest.get("data") not in files:
        raise BackupError(f"the manifest of {path} lists no database file")
    for name, want in files.items():
        f = path / name
        if not f.is_file():
            raise BackupError(f"{f} is missing from the backup")
        if sha256(f) != want.get("sha256"):
            raise BackupError(f"{f} does not match its SHA-256 in the manifest: the "
                                      "backup was changed or damaged; use another one")
    return Backup(path, manifest)


def backups(directory: Path) -> list[Path]:
    """The complete backup folders of ``directory``, oldest first."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.glob(f"{PREFIX}*") if (p / MANIFEST).is_file())


def latest(settings: config.Settings | None = None) -> Backup | None:
    """The newest complete backup in QMS_BACKUP_DIR (folder names sort by their UTC time;
    None: none). Hashes are not checked here (``qms restore`` does)."""
    s = settings if settings is not None else config.settings()
    for p in reversed(backups(s.backup_path)):
        try:
            b = Backup(p, json.loads((p / MANIFEST).read_text()))
            b.created_at  # noqa: B018 - a manifest without a readable time does not count
        except (OSError, ValueError, KeyError, TypeError):
            continue
        return b
    return None


@dataclass(frozen=True)
class Status:
    """The newest backup as /readyz and the dashboard show it."""

    age_hours: float | None  # None: no backup
    name: str | None
    limit_hours: int  # QMS_BACKUP_MAX_AGE_HOURS (0: never overdue)

    @property
    def ok(self) -> bool:
        """False when there is no backup or the newest is older than the limit."""
        if self.limit_hours == 0:
            return True
        return self.age_hours is not None and self.age_hours <= self.limit_hours

    @property
    def problem(self) -> str:
        if self.ok:
            return ""
        return "no backup yet" if self.age_hours is None else \
            f"older than {self.limit_hours} hours"


def status(settings: config.Settings | None = None) -> Status:
    s = settings if settings is not None else config.settings()
    newest = latest(s)
    if newest is None:
        return Status(None, None, s.backup_max_age_hours)
    age = round((clock.now() - newest.created_at).total_seconds() / 3600, 1)
    return Status(age, newest.path.name, s.backup_max_age_hours)


def record_restore(engine: Units, backup: Backup, verified: bool, reason: str) -> None:
    """Append ``database_restored`` (the backup, its time, whether it verified) to the
    restored database's system audit trail."""
    with engine.unit() as session:
        audit.system_event(session, at=clock.now(), actor=system_user(session),
                           action="database_restored",
                           changes={"backup": backup.path.name,
                                    "backup_created_at": backup.manifest["created_at"],
                                    "verified": verified,
                                    "checkpoint": (backup.manifest.get("checkpoint") or {}
                                                   ).get("file")},
                           reason=reason)


# --------------------------------------------------------------------------- restoring


def holds_data(dbe: DBEngine) -> bool:
    """Whether the database has any table (a live or half-made installation)."""
    return bool(inspect(dbe).get_table_names())


def restore(backup: Backup, settings: config.Settings | None = None, *,
            force: bool = False) -> str:
    """Replace the configured database with ``backup`` (checked with :func:`load`). Refuses
    a database that holds tables unless ``force``. Returns the database URL (no password).
    The web server and the scheduler must be stopped meanwhile (docs/operations.md)."""
    s = settings if settings is not None else config.settings()
    url = make_url(owner_url(s))
    dialect = url.get_backend_name()
    if dialect != backup.manifest["dialect"]:
        raise BackupError(f"the backup is of a {backup.manifest['dialect']} "
                                            f"database, the configured one is {dialect}")
    shown = url.render_as_string(hide_password=True)
    dbe = db.make_engine(url.render_as_string(hide_password=False))
    try:
        if holds_data(dbe) and not force:
            raise BackupError(f"the database {shown} holds data: restoring would "
                                     "replace it. Stop the web server and the scheduler, "
                                     "then run again with --force")
    finally:
        dbe.dispose()
    data = backup.path / backup.manifest["data"]
    if dialect == "sqlite":
        target = Path(str(url.database))
        target.parent.mkdir(parents=True, exist_ok=True)
        src = sqlite3.connect(f"file:{data}?mode=ro", uri=True)
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)  # page by page into the live file: no stale -wal is left behind
        finally:
            src.close()
            dst.close()
    else:
        uri, env = _libpq(url)
        _run([_tool("pg_restore"), "--clean", "--if-exists", "--no-owner", "--no-acl",
              "--single-transaction", "--exit-on-error", "--no-password", f"--dbname={uri}",
              str(data)], env, "pg_restore")
        role = roles.runtime_role(s)
        if role:  # the restored tables are the owner's; the runtime role gets its grants back
            owner = db.make_engine(url.render_as_string(hide_password=False))
            try:
                _, report = db.grant_runtime(owner, role)
            finally:
                owner.dispose()
            if not report.ok:
                raise BackupError(f"restored, but the runtime role {role} is not as it "
                                        f"should be: {'; '.join(report.problems)}")
    return shown
