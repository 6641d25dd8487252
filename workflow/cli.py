"""The ``qms`` command. Every change goes through the engine's unit of work; no command
commits on its own. Errors are printed as one clear line and exit with status 1 (2 for
usage errors)."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any

import click
from sqlalchemy import func, select

from . import db
from .errors import DefinitionError, WorkflowError

log = logging.getLogger("qms")


class CliError(click.ClickException):
    """One line on stderr, ``error: ...``, exit status 1 (like domain errors)."""

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.message}", err=True)


def _engine(*, check_schema: bool = True):
    """The engine; unless initialising, refuse clearly when the schema is missing or old."""
    from .service import open_engine

    engine, dbe = open_engine()
    if check_schema:
        try:
            current = db.current_revision(dbe)
        except Exception as exc:  # unreachable server, bad URL...: one clear line
            raise CliError(f"cannot reach the database "
                                f"({dbe.url.render_as_string(hide_password=True)}): "
                                f"{type(exc).__name__}: {str(exc).splitlines()[0]}") from None
        head = db.head_revision()
        if current != head:
            state = ("the database is not initialised" if current is None else
                     f"the database schema is at revision {current}, the code needs {head}")
            raise CliError(f"{state}: run `qms init` (or `qms db upgrade`) first")
    return engine, dbe


def _friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn domain errors into one line on stderr and exit status 1."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except DefinitionError as exc:
            for p in exc.problems:
                click.echo(str(p), err=True)
            sys.exit(1)
        except WorkflowError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)

    return wrapper


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Log more.")
def main(verbose: bool) -> None:
    """QMS workflow engine: deviations, CAPAs, change control, access reviews, training."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")


# ------------------------------------------------------------------ database


@main.group("db")
def db_group() -> None:
    """Schema management (Alembic is the only way the schema changes)."""


@db_group.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Create or upgrade the database schema."""
    dbe = db.make_engine()
    db.upgrade(dbe, revision)
    click.echo(f"database at revision {db.current_revision(dbe)} ({_safe_url(dbe)})")


@db_group.command("current")
def db_current() -> None:
    """Show the schema revision of the database."""
    dbe = db.make_engine()
    click.echo(db.current_revision(dbe) or "empty (run `qms db upgrade`)")


def _safe_url(dbe: Any) -> str:
    return dbe.url.render_as_string(hide_password=True)


@main.command("init")
@click.option("--demo", is_flag=True, help="Also add demo users and a dozen demo records.")
@_friendly
def init(demo: bool) -> None:
    """Create or upgrade the database and load the shipped definitions (safe to re-run)."""
    from .service import load_definitions

    engine, dbe = _engine(check_schema=False)
    db.upgrade(dbe)
    click.echo(f"database ready at revision {db.current_revision(dbe)} ({_safe_url(dbe)})")
    for line in load_definitions(engine):
        click.echo(f"  {line}")
    if demo:
        from .auth import Part11Verifier
        from .demo import seed

        # demo records are seeded with vouched signatures (method "demo-seed"); people sign
        # with their own password (and authenticator) in the UI and API
        engine.verifier = Part11Verifier(engine.signing_key, allow_vouched=True)
        for line in seed(engine):
            click.echo(line)


# ------------------------------------------------------------------ definitions


@main.group("definitions")
def definitions_group() -> None:
    """Validate and list workflow definitions."""


@definitions_group.command("validate")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
def definitions_validate(files: tuple[str, ...]) -> None:
    """Validate definition FILES; print every problem as file:line: message.

    Workflows named by create_record actions and reference fields may be among FILES or
    among the shipped definitions.
    """
    from pathlib import Path

    from .definition import DEFAULT_DEFINITIONS_DIR, _peek_keys, load_file

    shipped = sorted(DEFAULT_DEFINITIONS_DIR.glob("*.yaml"))
    known: dict[str, Any] = {k: None for k in _peek_keys(shipped + [Path(f) for f in files])}
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
    from .models import DefinitionVersion

    engine, _ = _engine()
    with engine.reader() as s:
        for row in s.execute(select(DefinitionVersion).order_by(DefinitionVersion.key,
                                                                DefinitionVersion.version)).scalars():
            click.echo(f"{row.key:22} v{row.version:<3} {row.published_at:%Y-%m-%d %H:%M} "
                       f"sha256 {row.content_hash[:16]}  {row.title}")


@definitions_group.command("load")
@click.option("--reason", required=True, help="Why (recorded in the audit trail).")
@_friendly
def definitions_load(reason: str) -> None:
    """Publish changed shipped definitions as new versions (running records keep theirs)."""
    from .service import load_definitions

    engine, _ = _engine()
    for line in load_definitions(engine, reason=reason):
        click.echo(line)


# ------------------------------------------------------------------ integrity


@main.command("verify-audit")
def verify_audit() -> None:
    """Recompute every audit chain and signature; exit non-zero naming the first problem."""
    from .integrity import verify

    engine, _ = _engine()
    with engine.reader() as s:
        report = verify(s, engine.signing_key)
    if report.ok:
        click.echo(f"OK: {report.chains} chains, {report.events} events, "
                   f"{report.signatures} signatures verified")
        return
    click.echo(f"FAILED: {len(report.problems)} problem(s) in {report.chains} chains "
               f"({report.events} events, {report.signatures} signatures)", err=True)
    click.echo(f"first: {report.problems[0]}", err=True)
    for p in report.problems[1:20]:
        click.echo(f"  also: {p}", err=True)
    sys.exit(1)


# ------------------------------------------------------------------ users


def _cli_reason(reason: str) -> str:
    """Attribute command-line administration to the operating-system account that ran it."""
    import getpass

    if not reason.strip():
        raise click.UsageError("--reason must say why")
    return f"{reason.strip()} [qms CLI, OS user {getpass.getuser()}]"


@main.group("users")
def users_group() -> None:
    """Users, roles, passwords and authenticators (every change is audited)."""


@users_group.command("create")
@click.argument("username")
@click.option("--name", "full_name", required=True, help="Printed full name (shown on signatures).")
@click.option("--email", default="")
@click.option("--timezone", default="UTC", show_default=True)
@click.option("--role", "roles", multiple=True, help="Grant this role too (repeatable).")
@click.option("--reason", required=True, help="Why (recorded in the audit trail).")
@click.option("--password-stdin", is_flag=True,
              help="Read an initial password from standard input instead of generating one.")
@_friendly
def users_create(username: str, full_name: str, email: str, timezone: str,
                 roles: tuple[str, ...], reason: str, password_stdin: bool) -> None:
    """Create a user with a temporary password that must be changed at first login."""
    import secrets

    from . import auth, identity

    engine, _ = _engine()
    why = _cli_reason(reason)
    password = sys.stdin.readline().rstrip("\n") if password_stdin else \
        f"Tmp-{secrets.token_urlsafe(12)}"
    with engine.unit() as s:
        actor = identity.system_user(s)
        u = identity.create_user(s, username, full_name, email=email, timezone=timezone,
                                 actor=actor, reason=why)
        auth.set_password(s, u, password, actor=actor, policy=auth.Policy.from_env(),
                          reason=why, temporary=True)
        for r in roles:
            identity.grant_role(s, u, r, actor=actor, reason=why)
    click.echo(f"created {username}" + (f" with roles {', '.join(roles)}" if roles else ""))
    if not password_stdin:
        click.echo(f"temporary password (shown once, must be changed at first login): {password}")


@users_group.command("grant")
@click.argument("username")
@click.argument("role")
@click.option("--reason", required=True)
@click.option("--expires", default=None, help="Expiry date YYYY-MM-DD (UTC end of day).")
@_friendly
def users_grant(username: str, role: str, reason: str, expires: str | None) -> None:
    """Grant ROLE to USERNAME."""
    from datetime import UTC, datetime, time, timedelta

    from . import identity

    expires_at = None
    if expires:
        try:
            day = datetime.strptime(expires, "%Y-%m-%d").date()
        except ValueError:
            raise click.UsageError("--expires takes a date YYYY-MM-DD") from None
        expires_at = datetime.combine(day + timedelta(days=1), time(0), tzinfo=UTC)
    engine, _ = _engine()
    with engine.unit() as s:
        identity.grant_role(s, identity.get_user(s, username), role,
                            actor=identity.system_user(s), reason=_cli_reason(reason),
                            expires_at=expires_at)
    click.echo(f"granted {role} to {username}")


@users_group.command("revoke")
@click.argument("username")
@click.argument("role")
@click.option("--reason", required=True)
@_friendly
def users_revoke(username: str, role: str, reason: str) -> None:
    """Revoke ROLE from USERNAME (effective at once)."""
    from . import identity

    engine, _ = _engine()
    with engine.unit() as s:
        n = identity.revoke_role(s, identity.get_user(s, username, active=False), role,
                                 actor=identity.system_user(s), reason=_cli_reason(reason))
    if not n:
        raise WorkflowError(f"{username} does not hold the role {role!r}.")
    click.echo(f"revoked {role} from {username}")


@users_group.command("deactivate")
@click.argument("username")
@click.option("--reason", required=True)
@_friendly
def users_deactivate(username: str, reason: str) -> None:
    """Deactivate USERNAME: no login, no signing; the username is never reused."""
    from . import identity

    engine, _ = _engine()
    with engine.unit() as s:
        identity.deactivate_user(s, identity.get_user(s, username, active=False),
                                 actor=identity.system_user(s), reason=_cli_reason(reason))
    click.echo(f"deactivated {username}")


@users_group.command("unlock")
@click.argument("username")
@click.option("--reason", required=True)
@_friendly
def users_unlock(username: str, reason: str) -> None:
    """Unlock an account locked after failed attempts."""
    from . import auth, identity

    engine, _ = _engine()
    auth.unlock(engine, username, actor=identity.SYSTEM_USERNAME, reason=_cli_reason(reason))
    click.echo(f"unlocked {username}")


@users_group.command("reset-totp")
@click.argument("username")
@click.option("--reason", required=True)
@_friendly
def users_reset_totp(username: str, reason: str) -> None:
    """Revoke USERNAME's authenticator and recovery codes (lost or compromised device)."""
    from . import auth, identity

    engine, _ = _engine()
    auth.reset_totp(engine, username, actor=identity.SYSTEM_USERNAME, reason=_cli_reason(reason))
    click.echo(f"authenticator reset for {username}; they enrol again at next login")


@users_group.command("set-password")
@click.argument("username")
@click.option("--reason", required=True)
@_friendly
def users_set_password(username: str, reason: str) -> None:
    """Give USERNAME a new temporary password (they must change it at next login)."""
    import secrets

    from . import auth, identity

    engine, _ = _engine()
    password = f"Tmp-{secrets.token_urlsafe(12)}"
    with engine.unit() as s:
        auth.set_password(s, identity.get_user(s, username), password,
                          actor=identity.system_user(s), policy=auth.Policy.from_env(),
                          reason=_cli_reason(reason), temporary=True)
    click.echo(f"temporary password for {username} (shown once): {password}")


@users_group.command("list")
def users_list() -> None:
    """List users with their roles and account state."""
    from . import identity
    from .models import User

    engine, _ = _engine()
    with engine.reader() as s:
        for u in s.execute(select(User).where(User.is_system.is_(False))
                           .order_by(User.username)).scalars():
            roles = ", ".join(sorted(identity.roles_of(s, u))) or "-"
            state = "DEACTIVATED" if not u.active else "LOCKED" if u.locked_at else "active"
            totp = "totp" if u.totp_enabled_at else "-"
            click.echo(f"{u.username:16} {u.full_name:28} {state:11} {totp:5} {roles}")


# ------------------------------------------------------------------ records


@main.group("records")
def records_group() -> None:
    """Start, move and inspect records."""


def _parse_data(pairs: tuple[str, ...]) -> dict[str, Any]:
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
@click.option("--as", "actor", required=True, help="Username acting.")
@click.option("--set", "pairs", multiple=True, help="FIELD=VALUE (repeatable; JSON for lists).")
@_friendly
def records_start(workflow: str, actor: str, pairs: tuple[str, ...]) -> None:
    engine, _ = _engine()
    r = engine.start(workflow, actor, _parse_data(pairs))
    click.echo(f"{r.number} created in state {r.state} (version {r.version})")


@records_group.command("fire")
@click.argument("number")
@click.argument("transition")
@click.option("--as", "actor", required=True, help="Username acting.")
@click.option("--set", "pairs", multiple=True, help="FIELD=VALUE (repeatable).")
@click.option("--reason", default=None)
@click.option("--expected-version", type=int, default=None)
@_friendly
def records_fire(number: str, transition: str, actor: str, pairs: tuple[str, ...],
                 reason: str | None, expected_version: int | None) -> None:
    """Fire an unsigned TRANSITION (signed steps are done in the web UI or API)."""
    engine, _ = _engine()
    r = engine.fire(number, transition, actor, _parse_data(pairs), reason=reason,
                    expected_version=expected_version)
    click.echo(f"{r.number} is now in state {r.state} (version {r.version})")


@records_group.command("list")
@click.option("--workflow", default=None)
def records_list(workflow: str | None) -> None:
    from .models import Record

    engine, _ = _engine()
    with engine.reader() as s:
        q = select(Record).order_by(Record.id)
        if workflow:
            q = q.where(Record.workflow_key == workflow)
        for r in s.execute(q).scalars():
            due = f"due {r.due_current:%Y-%m-%d}" if r.due_current else ""
            click.echo(f"{r.number:16} {r.state:22} v{r.version:<3} {due:14} {r.title}")


@records_group.command("show")
@click.argument("number")
@_friendly
def records_show(number: str) -> None:
    from .models import AuditEvent, Signature

    engine, _ = _engine()
    with engine.reader() as s:
        r = engine._get(s, number)
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


# ------------------------------------------------------------------ timers


@main.group("timers")
def timers_group() -> None:
    """Timers set by definitions (escalations)."""


@timers_group.command("run")
def timers_run() -> None:
    """Fire every due timer now."""
    engine, _ = _engine()
    lines = engine.run_due_timers()
    for line in lines:
        click.echo(line)
    click.echo(f"{len(lines)} timer(s) handled")


@main.command("stats")
def stats() -> None:
    """Counts per table (a quick health check)."""
    from .models import AuditEvent, Record, Signature, Task

    engine, _ = _engine()
    with engine.reader() as s:
        for m in (Record, Task, Signature, AuditEvent):
            click.echo(f"{m.__tablename__:14} {s.execute(select(func.count()).select_from(m)).scalar_one()}")


if __name__ == "__main__":  # pragma: no cover
    main()
