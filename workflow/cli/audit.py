"""``qms verify-audit`` and ``qms export``: the integrity check of every audit chain and
signature, and a record's true copy."""

from __future__ import annotations

import json
import sys

import click

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


@click.command("verify-audit")
def verify_audit() -> None:
    """Verify everything the engine relies on (audit chains, signatures, record rows,
    definitions, users, grants, tokens, record numbers, the append-only triggers); exit
    non-zero listing every problem, the first one first. The result is kept for the
    dashboard; a failure is also a security event and a message to the security role."""
    engine, _ = checked_engine()
    # kept for the dashboard's data-integrity tile (last run, result, events verified)
    _, report = verify_now(engine, runner_name(), operator())
    if report.ok:
        click.echo(f"OK: {report.chains} chains, {report.events} events, "
                   f"{report.signatures} signatures verified")
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
    manifestations, the audit trail, and its seal and chain head (the export is audited and
    names the person --as who made it, with their password)."""
    if fmt == "pdf" and not output:
        raise click.UsageError("--format pdf needs --output FILE")
    engine, _ = checked_engine()
    who = act_as(engine, actor, password_stdin=password_stdin, totp=totp,
                 maintenance=maintenance, command=f"export {number}", required=False)
    doc = copies.export(engine, number, fmt, cli_reason(reason), actor=who.username)
    if fmt == "pdf" and output:  # (--format pdf without --output was refused above)
        with open(output, "wb") as fh:
            fh.write(record_pdf(doc))
        click.echo(f"{doc['record']['number']}: true copy written to {output}", err=True)
        return
    text = json.dumps(doc, indent=2, ensure_ascii=False, sort_keys=False)
    if output:
        with open(output, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
        click.echo(f"{doc['record']['number']}: true copy written to {output}", err=True)
    else:
        click.echo(text)
