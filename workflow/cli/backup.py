"""``qms backup`` and ``qms restore``: a backup of the database with a manifest of SHA-256
hashes and the newest checkpoint, and its restore, verified (workflow/backup.py;
docs/operations.md "Backup and restore"; 21 CFR 11.10(c), EU GMP Annex 11 §7.2)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from workflow import backup as backups
from workflow import config
from workflow.audit import checkpoints
from workflow.audit.trail import ChainProblem
from workflow.cli.common import CliError, checked_engine, cli_reason, friendly, operator
from workflow.db import engines as db
from workflow.db.uow import Units
from workflow.errors import BackupError, WorkflowError
from workflow.scheduling.claims import runner_name
from workflow.scheduling.jobs.verify_audit import verify_now
from workflow.signatures.keys import key_provider


@click.command("backup")
@click.option("--to", "to", type=click.Path(file_okay=False), default=None,
              help="Write the backup folder here instead of QMS_BACKUP_DIR.")
@friendly
def backup_command(to: str | None) -> None:
    """Back the database up: a new folder qms-backup-<UTC time> holding the database
    (SQLite: online backup API; PostgreSQL: pg_dump), a copy of the newest signed checkpoint
    and manifest.json (SHA-256 of each file, counts, schema revision, the checkpoint). The
    keys are not in it: back them up apart (docs/keys.md)."""
    try:
        made = backups.create(to=Path(to) if to else None)
    except BackupError as exc:
        raise CliError(str(exc)) from None
    m = made.manifest
    counts = m["counts"]
    click.echo(f"backup {made.path}")
    click.echo(f"  {m['dialect']} {m['database']} at revision {m['schema_revision']}: "
               f"{counts['records']} records, {counts['audit_events']} audit events, "
               f"{counts['signatures']} signatures")
    cp = m["checkpoint"]
    click.echo(f"  checkpoint {cp['file']} ({cp['created_at']})" if cp else
               "  no checkpoint yet (`qms audit checkpoint`; the scheduler writes one hourly)")
    for name, f in sorted(m["files"].items()):
        click.echo(f"  {name}  sha256 {f['sha256']}  {f['bytes']} bytes")


def _checkpoint_problems(engine: Units, path: Path) -> list[ChainProblem]:
    return checkpoints.verify_since(engine, path, key_provider().anchor_keys())


@click.command("restore")
@click.argument("folder", type=click.Path(exists=True, file_okay=False))
@click.option("--force", is_flag=True,
              help="Replace a database that holds data (stop the web server and the scheduler "
                   "first).")
@click.option("--reason", default="restored from backup", show_default=True,
              help="Why (recorded on the system audit trail).")
@friendly
def restore_command(folder: str, force: bool, reason: str) -> None:
    """Restore the backup in FOLDER into the configured database, then verify it: every
    file's SHA-256 against the manifest first, `qms verify-audit` after, and whether the
    restored database extends the checkpoint taken before the backup. Exit status 0 only
    when the restore is verified. A database that holds data is replaced only with --force."""
    why = cli_reason(reason)
    try:
        found = backups.load(Path(folder))
        shown = backups.restore(found, force=force)
    except BackupError as exc:
        raise CliError(str(exc)) from None
    m = found.manifest
    click.echo(f"restored {found.path.name} ({m['created_at']}; {m['counts']['audit_events']} "
               f"audit events, {m['counts']['records']} records) into {shown}")
    config.reset()
    if m["schema_revision"] != db.head_revision():
        click.echo(f"NOT VERIFIED: the backup's schema is at revision {m['schema_revision']}, "
                   "this version needs the newest: run `qms db upgrade`, then "
                   "`qms verify-audit --since-checkpoint`", err=True)
        sys.exit(1)
    engine, _ = checked_engine()
    copy = found.checkpoint_copy
    extra = None if copy is None else (lambda: _checkpoint_problems(engine, copy))
    try:
        _, report = verify_now(engine, runner_name(), operator(), extra=extra)
    except WorkflowError as exc:  # e.g. the anchor key to check the checkpoint is missing
        raise CliError(f"restored, NOT VERIFIED: {exc}") from None
    try:  # the restore itself, on the restored system trail
        backups.record_restore(engine, found, report.ok, why)
        recorded = None
    except WorkflowError as exc:  # a trail that fails verification takes no new event
        recorded = str(exc)
    if not report.ok:
        click.echo(f"restored, VERIFICATION FAILED: {len(report.problems)} problem(s); first: "
                   f"{report.problems[0]}", err=True)
        for p in report.problems[1:]:
            click.echo(f"  also: [{p.kind}] {p}", err=True)
        if recorded:
            click.echo(f"the restore could not be recorded on the audit trail: {recorded}",
                       err=True)
        sys.exit(1)
    if recorded:
        raise CliError(f"restored and verified, but not recorded on the audit trail: {recorded}")
    click.echo(f"verify-audit OK: {report.chains} chains, {report.events} events, "
               f"{report.signatures} signatures verified")
    if copy is not None:
        click.echo(f"OK: the restored database extends checkpoint {m['checkpoint']['file']} "
                   "(taken before the backup)")
    newest = checkpoints.files(config.settings().checkpoint_path)
    if newest and (m["checkpoint"] is None or newest[-1].name != m["checkpoint"]["file"]):
        later = _checkpoint_problems(engine, newest[-1])
        if later:
            click.echo(f"note: checkpoint {newest[-1].name} is newer than this backup; what was "
                       f"written after the backup is not in the restored database "
                       f"({len(later)} difference(s); first: {later[0]})")
