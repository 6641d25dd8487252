"""``qms records ...``: start, move and inspect records (signed steps are done in the web UI
or the API)."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, time
from typing import Any

import click
from sqlalchemy import select

from workflow.cli.common import act_as, acting_options, checked_engine, friendly
from workflow.db.models import AuditEvent, Record, Signature
from workflow.queries import records as records_query
from workflow.signatures.part11 import PasswordSignature


@click.group("records")
def records_group() -> None:
    """Start, move and inspect records."""


def parse_data(pairs: tuple[str, ...]) -> dict[str, Any]:
    """``--set FIELD=VALUE`` options as record data (a value starting with [ or { is JSON)."""
    data: dict[str, Any] = {}
    for p in pairs:
        if "=" not in p:
            raise click.UsageError(f"--set takes FIELD=VALUE, not {p!r}")
        k, v = p.split("=", 1)
        try:
            data[k] = json.loads(v) if v[:1] in "[{" else v
        except json.JSONDecodeError as exc:
            raise click.UsageError(f"{k}: not valid JSON ({exc})") from None
    return data


@records_group.command("start")
@click.argument("workflow")
@acting_options()
@click.option("--set", "pairs", multiple=True, help="FIELD=VALUE (repeatable; JSON for lists).")
@friendly
def records_start(workflow: str, actor: str | None, password_stdin: bool, totp: str | None,
                  maintenance: bool, pairs: tuple[str, ...]) -> None:
    """Start a WORKFLOW record as the person --as (with their password)."""
    data = parse_data(pairs)
    engine, _ = checked_engine()
    who = act_as(engine, actor, password_stdin=password_stdin, totp=totp,
                 maintenance=maintenance, command=f"records start {workflow}")
    assert who.username is not None  # --as is required
    r = engine.start(workflow, who.username, data)
    click.echo(f"{r.number} created in state {r.state} (version {r.version})")


@records_group.command("fire")
@click.argument("number")
@click.argument("transition")
@acting_options()
@click.option("--set", "pairs", multiple=True, help="FIELD=VALUE (repeatable).")
@click.option("--reason", default=None)
@click.option("--expected-version", type=int, default=None)
@friendly
def records_fire(number: str, transition: str, actor: str | None, password_stdin: bool,
                 totp: str | None, maintenance: bool, pairs: tuple[str, ...],
                 reason: str | None, expected_version: int | None) -> None:
    """Fire an unsigned TRANSITION as the person --as, with their password (signed steps
    are done in the web UI or API)."""
    data = parse_data(pairs)
    engine, _ = checked_engine()
    who = act_as(engine, actor, password_stdin=password_stdin, totp=totp,
                 maintenance=maintenance, command=f"records fire {number} {transition}")
    assert who.username is not None  # --as is required
    r = engine.fire(number, transition, who.username, data, reason=reason,
                    expected_version=expected_version)
    click.echo(f"{r.number} is now in state {r.state} (version {r.version})")


@records_group.command("list")
@click.option("--workflow", default=None)
def records_list(workflow: str | None) -> None:
    engine, _ = checked_engine()
    with engine.reader() as s:
        q = select(Record).order_by(Record.id)
        if workflow:
            q = q.where(Record.workflow_key == workflow)
        for r in s.execute(q).scalars():
            due = f"due {r.due_current:%Y-%m-%d}" if r.due_current else ""
            click.echo(f"{r.number:16} {r.state:22} v{r.version:<3} {due:14} {r.title}")


@records_group.command("show")
@click.argument("number")
@friendly
def records_show(number: str) -> None:
    engine, _ = checked_engine()
    with engine.reader() as s:
        r = engine.get(number, session=s)
        click.echo(f"{r.number}  {r.title}\nworkflow {r.workflow_key}  state {r.state}  "
                   f"version {r.version}")
        for k, v in sorted(r.data.items()):
            click.echo(f"  {k}: {json.dumps(v, ensure_ascii=False)}")
        for sig in s.execute(select(Signature).where(Signature.record_id == r.id)).scalars():
            click.echo(f"  signed: {sig.signer_name} ({sig.signer_username}), "
                       f"{sig.signed_at:%Y-%m-%d %H:%M:%S} UTC, meaning: {sig.meaning}")
        click.echo("audit trail:")
        for ev in s.execute(select(AuditEvent).where(AuditEvent.record_id == r.id)
                            .order_by(AuditEvent.seq)).scalars():
            move = f" {ev.from_state or ''}->{ev.to_state}" if ev.to_state else ""
            click.echo(f"  #{ev.seq} {ev.at:%Y-%m-%d %H:%M:%S} {ev.actor_name}: "
                       f"{ev.action}{' ' + ev.transition if ev.transition else ''}{move}"
                       f"{' reason: ' + ev.reason if ev.reason else ''}")


# ------------------------------------------------------------------ due-date extensions


@records_group.command("request-extension")
@click.argument("number")
@click.option("--as", "actor", required=True, help="Username asking.")
@click.option("--until", "until", required=True,
              type=click.DateTime(formats=["%Y-%m-%d"]),
              help="New due date, YYYY-MM-DD (due at the end of that day, UTC).")
@click.option("--reason", required=True, help="The justification.")
@click.option("--expected-version", type=int, default=None)
@friendly
def records_request_extension(number: str, actor: str, until: datetime, reason: str,
                              expected_version: int | None) -> None:
    """Ask to move a record's current due date (R-WF-16); the definition's extension roles
    decide with `qms records decide-extension`."""
    engine, _ = checked_engine()
    # due at the end of that day (23:59:59 UTC), as the web form and the API ask
    new_due = datetime.combine(until.date(), time(23, 59, 59), tzinfo=UTC)
    ext_id = engine.request_extension(number, actor, new_due, reason,
                                      expected_version=expected_version)
    click.echo(f"extension request #{ext_id} on {number}: due {until:%Y-%m-%d} asked, "
               "waiting for a decision")


@records_group.command("decide-extension")
@click.argument("extension_id", type=int)
@click.option("--as", "actor", required=True, help="Username deciding (an extension role).")
@click.option("--approve/--reject", "approve", required=True,
              help="Approve (signed \"Extension approved\") or reject (with --reason).")
@click.option("--reason", default=None, help="Required to reject.")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin's first line.")
@click.option("--totp", default=None, help="Authenticator code (when the signer has one).")
@friendly
def records_decide_extension(extension_id: int, actor: str, approve: bool, reason: str | None,
                             password_stdin: bool, totp: str | None) -> None:
    """Approve (with your electronic signature) or reject a due-date extension request."""
    engine, _ = checked_engine()
    signature = None
    if approve:
        password = (sys.stdin.readline().rstrip("\r\n") if password_stdin else
                    click.prompt(f"Password for {actor} (signing 'Extension approved')",
                                 hide_input=True, err=True))
        signature = PasswordSignature(actor, password, totp=totp)
    r = engine.decide_extension(extension_id, actor, approve, signature=signature,
                                reason=(reason or "").strip() or None)
    with engine.reader() as s:
        rec = engine.get(r.number, session=s)
        due = f"{rec.due_current:%Y-%m-%d %H:%M} UTC" if rec.due_current else "none"
    click.echo(f"extension request #{extension_id} on {r.number} "
               f"{'approved' if approve else 'rejected'}; current due {due}")


@records_group.command("extensions")
@click.argument("number")
@friendly
def records_extensions(number: str) -> None:
    """A record's original and current due dates and its extension requests."""
    engine, _ = checked_engine()
    with engine.reader() as s:
        rec = engine.get(number, session=s)
        click.echo(f"{rec.number}: original due {_day(rec.due_original)}, current due "
                   f"{_day(rec.due_current)}")
        for e in records_query.extensions(s, rec):
            decided = (f"; {e.status} by {e.decided_by}" +
                       (f": {e.decision_reason}" if e.decision_reason else "")
                       if e.decided_by else "")
            click.echo(f"  #{e.id} {e.status}: {_day(e.old_due)} -> {_day(e.new_due)}, asked by "
                       f"{e.requested_by}: {e.reason}{decided}")


def _day(value: datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M} UTC" if value else "none"
