"""``qms config show``: the settings in force, where each came from (default, environment,
.env file), secrets masked; ``QMS_`` variables that are no setting are listed with the nearest
name (R-OPS-10)."""

from __future__ import annotations

import json

import click

from workflow import config


@click.group("config")
def config_group() -> None:
    """The settings (QMS_ variables) this installation runs with."""


@config_group.command("show")
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of a table.")
def config_show(as_json: bool) -> None:
    """Every setting with its value in force and its source; keys and passwords masked."""
    env = config.environment()
    rows = config.shown(config.settings(), env)
    unknown = config.unknown_variables(env.values)
    if as_json:
        click.echo(json.dumps({"settings": rows, "env_file": str(env.file) if env.file else None,
                               "unknown": unknown}, indent=2))
        return
    width = max(len(r["name"]) for r in rows)
    vwidth = min(60, max(len(r["value"]) for r in rows))
    click.echo(f".env file: {env.file or '(none)'}")
    for r in rows:
        click.echo(f"{r['name']:<{width}}  {r['value']:<{vwidth}}  {r['source']}")
    for line in unknown:
        click.echo(f"warning: {line}", err=True)
