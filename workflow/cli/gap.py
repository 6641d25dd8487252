"""``qms gap-analysis start``: a gap analysis pre-filled from the requirements catalogue."""

from __future__ import annotations

import click

from workflow.cli.common import act_as, acting_options, checked_engine, friendly
from workflow.validation import gap


@click.group("gap-analysis")
def gap_group() -> None:
    """Gap analyses against Part 11, Annex 11 and ISO 27001."""


@gap_group.command("start")
@click.option("--title", required=True, help="Title of the gap analysis.")
@click.option("--frameworks", default="part11,annex11,iso27001", show_default=True,
              help=f"Comma-separated: {', '.join(gap.FRAMEWORKS)}.")
@click.option("--scope", default="", help="Scope of the analysis.")
@click.option("--catalogue", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Requirements catalogue (default docs/requirements.yaml).")
@acting_options()
@friendly
def gap_start(title: str, frameworks: str, scope: str, catalogue: str | None,
              actor: str | None, password_stdin: bool, totp: str | None,
              maintenance: bool) -> None:
    """Start a gap analysis as --as, one row per requirement of the frameworks."""
    engine, _ = checked_engine()
    who = act_as(engine, actor, password_stdin=password_stdin, totp=totp,
                 maintenance=maintenance, command="gap-analysis start")
    assert who.username is not None  # --as is required
    r = gap.start(engine, who.username, title,
                  [f.strip() for f in frameworks.split(",") if f.strip()], scope=scope,
                  catalogue=catalogue)
    rows = len(engine.get(r.number).data.get("requirements") or [])
    click.echo(f"{r.number} created in state {r.state} with {rows} requirements")
