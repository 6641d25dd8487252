"""``qms verify-audit`` and ``qms export``: the integrity check of every audit chain and
signature, and a record's true copy."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from workflow import config
from workflow.cli.anchor import compare_checkpoint, since_checkpoint
from workflow.cli.common import (
    act_as,
    acting_options,
    checked_engine,
    cli_reason,
    friendly,
    operator,
)
from workflow.queries import copies
from workflow.queries.copies import record_pdf
from workflow.scheduling.claims import runner_name
from workflow.scheduling.jobs.verify_audit import verify_now
from workflow.signatures.keys import key_provider


@click.command("verify-audit")
@click.option("--since-checkpoint", "since", is_flag=False, flag_value="", default=None,
              metavar="[FILE]",
              help="Also prove the database still extends this signed checkpoint (without "
                   "FILE: the newest in QMS_CHECKPOINT_DIR): names a deleted record, a cut "
                   "chain tail, a restored old backup.")
def verify_audit(since: str | None) -> None:
    """Verify everything the engine relies on (audit chains, signatures, record rows,
    definitions, users, grants, tokens, record numbers, the append-only triggers); exit
    non-zero listing every problem, the first one first. The result is kept for the
    dashboard; a failure is also a security event and a message to the security role."""
    engine, _ = checked_engine()
    checkpoint = None if since is None else since_checkpoint(since)  # refused before verifying
    # kept for the dashboard's data-integrity tile (last run, result, events verified)
    # the checkpoint's problems are part of the run's result (and of its alarm)
    extra = None if checkpoint is None else (lambda: compare_checkpoint(engine, checkpoint))
    _, report = verify_now(engine, runner_name(), operator(), extra=extra)
    if report.ok:
        click.echo(f"OK: {report.chains} chains, {report.events} events, "
                   f"{report.signatures} signatures verified")
        if checkpoint is not None:
            click.echo(f"OK: the database extends checkpoint {checkpoint}")
        return
    click.echo(f"FAILED: {len(report.problems)} problem(s) in {report.chains} chains "
               f"({report.events} events, {report.signatures} signatures)", err=True)
    click.echo(f"first: {report.problems[0]}", err=True)
    # every problem, in the order found; the kind says which check found it
    for p in report.problems[1:]:
        click.echo(f"  also: [{p.kind}] {p}", err=True)
    sys.exit(1)


@click.command("export")
@click.argument("number")
@click.option("--format", "fmt", type=click.Choice(["json", "pdf"]), default="json",
              show_default=True, help="json: electronic copy; pdf: human-readable copy.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Write to this file instead of standard output.")
@click.option("--reason", default="true copy", show_default=True,
              help="Why the copy is made (audited with the export).")
@acting_options(required=False)
@friendly
def export(number: str, fmt: str, output: str | None, reason: str, actor: str | None,
           password_stdin: bool, totp: str | None, maintenance: bool) -> None:
    """A record's true copy: fields with labels, state history, links, signature
    manifestations, the audit trail, its seal and chain head and the last checkpoint covering
    it, signed with the Ed25519 anchor key (JSON: a ``signature`` member; PDF: FILE.sig). The
    export is audited and names the person --as who made it, with their password.
    ``qms verify-copy`` checks it with the public key alone."""
    if fmt == "pdf" and not output:
        raise click.UsageError("--format pdf needs --output FILE")
    engine, _ = checked_engine()
    who = act_as(engine, actor, password_stdin=password_stdin, totp=totp,
                 maintenance=maintenance, command=f"export {number}", required=False)
    anchor = key_provider().anchor_keys()
    doc = copies.export(engine, number, fmt, cli_reason(reason), actor=who.username,
                        anchor=anchor, checkpoint_dir=config.settings().checkpoint_path)
    if fmt == "pdf" and output:  # (--format pdf without --output was refused above)
        pdf = record_pdf(doc)
        with open(output, "wb") as fh:
            fh.write(pdf)
        sig = copies.sign_pdf(pdf, doc, anchor, Path(output).name)
        with open(output + ".sig", "w", encoding="utf-8") as fh:
            fh.write(json.dumps(sig, indent=1) + "\n")
        click.echo(f"{doc['record']['number']}: true copy written to {output}, its signature "
                   f"to {output}.sig", err=True)
        return
    text = json.dumps(doc, indent=2, ensure_ascii=False, sort_keys=False)
    if output:
        with open(output, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
        click.echo(f"{doc['record']['number']}: true copy written to {output}", err=True)
    else:
        click.echo(text)
