"""``qms users ...``: accounts, roles, passwords and authenticators from the command line.

Each command calls one function of workflow.identity.admin, acting as the system user; the
reason names the operating-system account that ran it. Every change is audited."""

from __future__ import annotations

import sys
from datetime import date, datetime

import click

from workflow.cli.common import act_as, acting_options, checked_engine, cli_reason, friendly
from workflow.identity import admin, profile
from workflow.identity.policy import Policy
from workflow.identity.users import SYSTEM_USERNAME


@click.group("users")
def users_group() -> None:
    """Users, roles, passwords and authenticators (every change is audited)."""


@users_group.command("create")
@click.argument("username")
@click.option("--name", "full_name", required=True, help="Printed full name (shown on signatures).")
@click.option("--email", default="")
@click.option("--timezone", default=None,
              help="tz database name (default: QMS_TIMEZONE, UTC unless set).")
@click.option("--role", "roles", multiple=True, help="Grant this role too (repeatable).")
@click.option("--reason", required=True, help="Why (recorded in the audit trail).")
@click.option("--password-stdin", is_flag=True,
              help="Read an initial password from standard input instead of generating one.")
@friendly
def users_create(username: str, full_name: str, email: str, timezone: str | None,
                 roles: tuple[str, ...], reason: str, password_stdin: bool) -> None:
    """Create a user with a temporary password that must be changed at first login."""
    engine, _ = checked_engine()
    why = cli_reason(reason)
    password = sys.stdin.readline().rstrip("\n") if password_stdin else None
    created = admin.create_user(engine, username, full_name, email=email, timezone=timezone,
                                roles=roles, actor=SYSTEM_USERNAME, reason=why,
                                policy=Policy.from_settings(), password=password)
    granted = [r for r in roles if r not in created.pending]
    click.echo(f"created {username}" + (f" with roles {', '.join(granted)}" if granted else ""))
    if created.pending:
        click.echo(f"awaiting a second administrator: {', '.join(created.pending)} "
                   "(privileged; see `qms users review`)")
    if not password_stdin:
        click.echo("temporary password (shown once, must be changed at first login): "
                   f"{created.password}")


def parse_day(value: str) -> date:
    """A YYYY-MM-DD option value."""
    try:
        return datetime.strptime(value, "%Y-%m-%d").date()
    except ValueError:
        raise click.UsageError("--expires takes a date YYYY-MM-DD") from None


@users_group.command("grant")
@click.argument("username")
@click.argument("role")
@click.option("--reason", required=True)
@click.option("--expires", default=None, help="Expiry date YYYY-MM-DD (UTC end of day).")
@friendly
def users_grant(username: str, role: str, reason: str, expires: str | None) -> None:
    """Grant ROLE to USERNAME."""
    day = parse_day(expires) if expires else None
    engine, _ = checked_engine()
    pending = admin.grant_role(engine, username, role, actor=SYSTEM_USERNAME,
                               reason=cli_reason(reason), expires_on=day)
    if pending is None:
        click.echo(f"granted {role} to {username}")
    else:
        click.echo(f"{role} is a privileged role: grant request #{pending} awaits a second "
                   f"administrator (`qms users approve-grant {pending} --as ADMIN` or the "
                   "Privileged accounts page)")


@users_group.command("approve-grant")
@click.argument("request_id", type=int)
@acting_options()
@click.option("--reason", required=True)
@friendly
def users_approve_grant(request_id: int, actor: str | None, password_stdin: bool,
                        totp: str | None, maintenance: bool, reason: str) -> None:
    """Approve grant request REQUEST_ID as a second administrator (--as, with the password)."""
    engine, _ = checked_engine()
    who = act_as(engine, actor, password_stdin=password_stdin, totp=totp,
                 maintenance=maintenance, command=f"users approve-grant {request_id}")
    assert who.username is not None  # --as is required
    what = admin.approve_grant(engine, request_id, actor=who.username, reason=reason)
    click.echo(f"grant request #{request_id} approved: {what} granted")


@users_group.command("reject-grant")
@click.argument("request_id", type=int)
@acting_options()
@click.option("--reason", required=True)
@friendly
def users_reject_grant(request_id: int, actor: str | None, password_stdin: bool,
                       totp: str | None, maintenance: bool, reason: str) -> None:
    """Reject grant request REQUEST_ID as a second administrator (--as, with the password)."""
    engine, _ = checked_engine()
    who = act_as(engine, actor, password_stdin=password_stdin, totp=totp,
                 maintenance=maintenance, command=f"users reject-grant {request_id}")
    assert who.username is not None  # --as is required
    what = admin.reject_grant(engine, request_id, actor=who.username, reason=reason)
    click.echo(f"grant request #{request_id} rejected: {what}")


@users_group.command("review")
@friendly
def users_review() -> None:
    """The access review: privileged accounts (with the rules each breaks), pending grant
    requests and dormant accounts (no login in QMS_DORMANT_DAYS)."""
    engine, _ = checked_engine()
    r = admin.access_review(engine)
    click.echo(f"privileged accounts ({len(r.privileged)}):")
    for a in r.privileged:
        seen = f"{a.last_login:%Y-%m-%d}" if a.last_login else "never"
        flags = "".join([" [service]" if a.service else "", " [dormant]" if a.dormant else "",
                         "" if a.active else " [deactivated]"])
        click.echo(f"  {a.username:20} {', '.join(a.privileged) or '-':30} last login {seen}"
                   f"{flags}")
        for problem in a.problems:
            click.echo(f"    problem: {problem}")
    click.echo(f"pending grant requests ({len(r.pending)}):")
    for p in r.pending:
        click.echo(f"  #{p.id} {p.role} to {p.username}, requested by {p.requested_by}: "
                   f"{p.reason}")
    click.echo(f"dormant accounts, no login in {r.dormant_days} days ({len(r.dormant)}):")
    for a in r.dormant:
        seen = f"{a.last_login:%Y-%m-%d}" if a.last_login else "never"
        click.echo(f"  {a.username:20} last login {seen}")


@users_group.command("revoke")
@click.argument("username")
@click.argument("role")
@click.option("--reason", required=True)
@friendly
def users_revoke(username: str, role: str, reason: str) -> None:
    """Revoke ROLE from USERNAME (effective at once)."""
    engine, _ = checked_engine()
    admin.revoke_role(engine, username, role, actor=SYSTEM_USERNAME, reason=cli_reason(reason))
    click.echo(f"revoked {role} from {username}")


@users_group.command("deactivate")
@click.argument("username")
@click.option("--reason", required=True)
@friendly
def users_deactivate(username: str, reason: str) -> None:
    """Deactivate USERNAME: no login, no signing; the username is never reused."""
    engine, _ = checked_engine()
    admin.deactivate_user(engine, username, actor=SYSTEM_USERNAME, reason=cli_reason(reason))
    click.echo(f"deactivated {username}")


@users_group.command("unlock")
@click.argument("username")
@click.option("--reason", required=True)
@friendly
def users_unlock(username: str, reason: str) -> None:
    """Unlock an account locked after failed attempts."""
    engine, _ = checked_engine()
    admin.unlock(engine, username, actor=SYSTEM_USERNAME, reason=cli_reason(reason))
    click.echo(f"unlocked {username}")


@users_group.command("reset-totp")
@click.argument("username")
@click.option("--reason", required=True)
@friendly
def users_reset_totp(username: str, reason: str) -> None:
    """Revoke USERNAME's authenticator and recovery codes (lost or compromised device)."""
    engine, _ = checked_engine()
    admin.reset_totp(engine, username, actor=SYSTEM_USERNAME, reason=cli_reason(reason))
    click.echo(f"authenticator reset for {username}; they enrol again at next login")


@users_group.command("set-password")
@click.argument("username")
@click.option("--reason", required=True)
@friendly
def users_set_password(username: str, reason: str) -> None:
    """Give USERNAME a new temporary password (they must change it at next login)."""
    engine, _ = checked_engine()
    password = admin.issue_temporary_password(engine, username, actor=SYSTEM_USERNAME,
                                              reason=cli_reason(reason),
                                              policy=Policy.from_settings())
    click.echo(f"temporary password for {username} (shown once): {password}")


@users_group.command("set-department")
@click.argument("username")
@click.argument("department")
@click.option("--reason", required=True)
@friendly
def users_set_department(username: str, department: str, reason: str) -> None:
    """Set USERNAME's department (area; "" clears it): the ``not_in_area`` separation rule
    keeps people from auditing or approving their own area."""
    engine, _ = checked_engine()
    changed = profile.update_profile(engine, username, actor=SYSTEM_USERNAME,
                                     department=department, reason=cli_reason(reason))
    click.echo(f"department of {username}: {department.strip() or '(none)'}"
               + ("" if changed else " (unchanged)"))


@users_group.command("list")
def users_list() -> None:
    """List users with their roles and account state."""
    engine, _ = checked_engine()
    for a in admin.list_accounts(engine):
        roles = ", ".join(a.roles) or "-"
        state = "DEACTIVATED" if not a.active else "LOCKED" if a.locked else "active"
        totp = "totp" if a.totp_enrolled else "-"
        click.echo(f"{a.username:16} {a.full_name:28} {state:11} {totp:5} {roles}")
