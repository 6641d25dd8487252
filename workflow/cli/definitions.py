"""``qms definitions ...``: validate, list, export, load, publish and migrate workflow
definitions. Publishing and migrating go through change control (a QA e-signature)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
from sqlalchemy import select

from workflow.bootstrap import load_definitions
from workflow.change_control import plans as migration_plans
from workflow.change_control.drafts import DraftInvalid
from workflow.change_control.publishing import publish_file
from workflow.cli.common import act_as, acting_options, checked_engine, cli_reason, friendly
from workflow.db.models import DefinitionVersion
from workflow.errors import DefinitionError, WorkflowError
from workflow.signatures.part11 import PasswordSignature
from workflow.spec.load import DEFAULT_DEFINITIONS_DIR, load_file, peek_keys


@click.group("definitions")
def definitions_group() -> None:
    """Validate and list workflow definitions."""


@definitions_group.command("validate")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
def definitions_validate(files: tuple[str, ...]) -> None:
    """Validate definition FILES; print every problem as file:line: message.

    Workflows named by create_record actions and reference fields may be among FILES or
    among the shipped definitions.
    """
    shipped = sorted(DEFAULT_DEFINITIONS_DIR.glob("*.yaml"))
    known: dict[str, Any] = {k: None for k in peek_keys(shipped + [Path(f) for f in files])}
    failed = False
    for f in files:
        try:
            d = load_file(f, known_workflows=known)
        except DefinitionError as exc:
            failed = True
            for p in exc.problems:
                click.echo(str(p))
            continue
        click.echo(f"{f}: ok: {d.summary()}")
    sys.exit(1 if failed else 0)


@definitions_group.command("list")
def definitions_list() -> None:
    """List published definition versions."""
    engine, _ = checked_engine()
    with engine.reader() as s:
        for row in s.execute(select(DefinitionVersion).order_by(DefinitionVersion.key,
                                                                DefinitionVersion.version)).scalars():
            click.echo(f"{row.key:22} v{row.version:<3} {row.published_at:%Y-%m-%d %H:%M} "
                       f"sha256 {row.content_hash[:16]}  {row.title}")


@definitions_group.command("export")
@click.argument("key")
@click.option("--version", "version", type=int, default=None, help="Default: the newest.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Write to this file instead of standard output.")
@friendly
def definitions_export(key: str, version: int | None, output: str | None) -> None:
    """Export a published definition version as the exact YAML that was approved (its
    SHA-256 is printed on standard error so the copy can be checked)."""
    engine, _ = checked_engine()
    with engine.reader() as s:
        q = select(DefinitionVersion).where(DefinitionVersion.key == key)
        q = q.where(DefinitionVersion.version == version) if version else \
            q.order_by(DefinitionVersion.version.desc()).limit(1)
        row = s.execute(q).scalars().first()
    if row is None:
        raise WorkflowError(f"There is no published {key!r}" +
                            (f" version {version}." if version else "."))
    if output:
        with open(output, "w", encoding="utf-8") as fh:
            fh.write(row.source)
    else:
        click.echo(row.source, nl=False)
    click.echo(f"{row.key} version {row.version}, sha256 {row.content_hash}", err=True)


@definitions_group.command("load")
@click.option("--reason", required=True, help="Why (recorded in the audit trail).")
@friendly
def definitions_load(reason: str) -> None:
    """Publish shipped workflows new to this database (changed ones go through `publish`)."""
    engine, _ = checked_engine()
    for line in load_definitions(engine, reason=reason):
        click.echo(line)


@definitions_group.command("migrate")
@click.argument("plan_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--dry-run", is_flag=True, help="Show what would move; change nothing.")
@click.option("--as", "actor", help="Who migrates and signs (QA or the process owner role).")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin's first line.")
@click.option("--totp", default=None, help="Authenticator code (when the signer has one).")
@click.option("--reason", default="", help="Why (recorded in each record's audit trail).")
@friendly
def definitions_migrate(plan_file: str, dry_run: bool, actor: str | None, password_stdin: bool,
                        totp: str | None, reason: str) -> None:
    """Move running records to a later definition version with the migration plan PLAN_FILE
    (docs/definitions.md, "Migrating running records"). The plan is validated first; the
    migration is signed "Migration approved" with your password (and authenticator code)."""
    plan = migration_plans.load_plan(plan_file)
    engine, _ = checked_engine()
    if dry_run:
        preview = migration_plans.dry_run(engine, plan)
        for line in preview.lines():
            click.echo(line, err=line.startswith("refused: "))
        sys.exit(0 if preview.ok else 1)
    if not actor:
        raise click.UsageError("--as USER is required (or use --dry-run)")
    if not reason.strip():
        raise click.UsageError("--reason must say why")
    password = (sys.stdin.readline().rstrip("\r\n") if password_stdin else
                click.prompt(f"Password for {actor} (signing {migration_plans.MEANING!r})",
                             hide_input=True, err=True))
    outcome = migration_plans.execute(
        engine, plan, actor, PasswordSignature(actor, password, totp=totp), cli_reason(reason))
    for number in outcome.migrated:
        click.echo(f"{number}: migrated to {plan.workflow} v{plan.to_version}")
    for number, error in outcome.skipped:
        click.echo(f"{number}: skipped: {error}", err=True)
    click.echo(f"plan {plan.id}: {len(outcome.migrated)} migrated, "
               f"{len(outcome.skipped)} skipped")
    sys.exit(1 if outcome.skipped else 0)


@definitions_group.command("publish")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@acting_options()
@click.option("--summary", required=True, help="What changes and why (on the DCR record).")
@friendly
def definitions_publish(file: str, actor: str | None, password_stdin: bool, totp: str | None,
                        maintenance: bool, summary: str) -> None:
    """Submit FILE as a new version under change control.

    A draft of FILE's workflow is created and submitted: a definition change record (DCR)
    starts, and the new version is published only when QA approves that record with an
    electronic signature ("Approved for use"; not the submitter). Same rules as the editor.
    --as is the process owner submitting the change, with their password.
    """
    engine, _ = checked_engine()
    who = act_as(engine, actor, password_stdin=password_stdin, totp=totp,
                 maintenance=maintenance, command=f"definitions publish {file}")
    assert who.username is not None  # --as is required
    username = who.username
    try:
        draft, result = publish_file(engine, file, username, cli_reason(summary))
    except DraftInvalid as exc:
        for f in exc.findings:
            click.echo(f"{file}:{f.line}: {f.message}", err=True)
        sys.exit(1)
    click.echo(f"draft #{draft.id} of {draft.key} submitted for approval as {result.number}; "
               "it is published when QA approves it with an electronic signature")
