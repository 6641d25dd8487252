"""``qms records ...``: start, move and inspect records (signed steps are done in the web UI
or the API)."""

from __future__ import annotations

import json
from typing import Any

import click
from sqlalchemy import select

from workflow import clock
from workflow.cli.common import act_as, acting_options, checked_engine, friendly
from workflow.db.models import AuditEvent, Record, Signature


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
            day = clock.deadline_day(r.due_current)
            due = (f"due {day or f'{clock.as_utc(r.due_current):%Y-%m-%d %H:%M}Z'}"
                   if r.due_current else "")
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
