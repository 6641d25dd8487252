"""``qms tokens ...``: service accounts and their API tokens (people create their own tokens
on the API tokens page). Each command calls one function of workflow.identity.admin."""

from __future__ import annotations

import click

from workflow.cli.common import checked_engine, cli_reason, friendly
from workflow.identity import admin
from workflow.identity.users import SYSTEM_USERNAME


@click.group("tokens")
def tokens_group() -> None:
    """API tokens for service accounts (people create their own on the API tokens page)."""


@tokens_group.command("service-account")
@click.argument("username")
@click.option("--name", "full_name", required=True, help="Printed name, e.g. 'LIMS (service)'.")
@click.option("--role", "roles", multiple=True, help="Grant this role (repeatable).")
@click.option("--reason", required=True, help="Why (recorded in the audit trail).")
@friendly
def tokens_service_account(username: str, full_name: str, roles: tuple[str, ...],
                           reason: str) -> None:
    """Create a service account: no password, so it can never log in or sign; it acts only
    through the API tokens created for it."""
    engine, _ = checked_engine()
    admin.create_service_account(engine, username, full_name, roles=roles,
                                 actor=SYSTEM_USERNAME, reason=cli_reason(reason))
    click.echo(f"created service account {username}"
               + (f" with roles {', '.join(roles)}" if roles else ""))


@tokens_group.command("create")
@click.argument("username")
@click.option("--name", required=True, help="What the token is for, e.g. 'LIMS production'.")
@click.option("--scope", "scopes", multiple=True, default=("read",), show_default=True,
              type=click.Choice(["read", "write", "sign"]), help="Repeatable.")
@click.option("--expires-days", default=90, show_default=True, type=int)
@click.option("--reason", required=True, help="Why (recorded in the audit trail).")
@friendly
def tokens_create(username: str, name: str, scopes: tuple[str, ...], expires_days: int,
                  reason: str) -> None:
    """Create an API token for the service account USERNAME; the token is printed once."""
    engine, _ = checked_engine()
    created = admin.create_token(engine, username, actor=SYSTEM_USERNAME, name=name,
                                 scopes=scopes, expires_in_days=expires_days,
                                 reason=cli_reason(reason))
    info = created.info
    click.echo(f"token #{info.id} {info.prefix} for {username}: scopes {' '.join(info.scopes)}, "
               f"expires {info.expires_at:%Y-%m-%d %H:%M} UTC")
    click.echo(f"token (shown once, store it in the client's secret store): {created.secret}")


@tokens_group.command("list")
@click.option("--user", "username", default=None, help="Only this user's tokens.")
@friendly
def tokens_list(username: str | None) -> None:
    """List tokens (never the secrets): number, prefix, user, scopes, expiry, last use."""
    engine, _ = checked_engine()
    for t in admin.list_tokens(engine, username):
        used = f"{t.last_used_at:%Y-%m-%d %H:%M}" if t.last_used_at else "never"
        expires = f"{t.expires_at:%Y-%m-%d}" if t.expires_at else "-"
        click.echo(f"#{t.id:<5} {t.prefix:13} {t.username:16} {','.join(t.scopes):16} "
                   f"expires {expires}  used {used:16} {t.status():8} {t.name}")


@tokens_group.command("revoke")
@click.argument("token")
@click.option("--reason", required=True, help="Why (recorded in the audit trail).")
@friendly
def tokens_revoke(token: str, reason: str) -> None:
    """Revoke TOKEN (its number or prefix) at once."""
    engine, _ = checked_engine()
    prefix = admin.revoke_token(engine, token, actor=SYSTEM_USERNAME, reason=cli_reason(reason))
    click.echo(f"revoked token {prefix}")
