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

from workflow.db import engines as db
from workflow.errors import DefinitionError, WorkflowError

log = logging.getLogger("qms")


class CliError(click.ClickException):
    """One line on stderr, ``error: ...``, exit status 1 (like domain errors)."""

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.message}", err=True)


def _engine(*, check_schema: bool = True):
    """The engine; unless initialising, refuse clearly when the schema is missing or old."""
    from workflow.bootstrap import open_engine

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
    from workflow.bootstrap import load_definitions

    engine, dbe = _engine(check_schema=False)
    db.upgrade(dbe)
    click.echo(f"database ready at revision {db.current_revision(dbe)} ({_safe_url(dbe)})")
    for line in load_definitions(engine):
        click.echo(f"  {line}")
    if demo:
        from workflow.demo import seed
        from workflow.signatures.part11 import Part11Verifier

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

    from workflow.spec.model import DEFAULT_DEFINITIONS_DIR, _peek_keys, load_file

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
    from workflow.db.models import DefinitionVersion

    engine, _ = _engine()
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
@_friendly
def definitions_export(key: str, version: int | None, output: str | None) -> None:
    """Export a published definition version as the exact YAML that was approved (its
    SHA-256 is printed on standard error so the copy can be checked)."""
    from workflow.db.models import DefinitionVersion

    engine, _ = _engine()
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
@_friendly
def definitions_load(reason: str) -> None:
    """Publish shipped workflows new to this database (changed ones go through `publish`)."""
    from workflow.bootstrap import load_definitions

    engine, _ = _engine()
    for line in load_definitions(engine, reason=reason):
        click.echo(line)


@definitions_group.command("migrate")
@click.argument("plan_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--dry-run", is_flag=True, help="Show what would move; change nothing.")
@click.option("--as", "actor", help="Who migrates and signs (QA or the process owner role).")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin's first line.")
@click.option("--totp", default=None, help="Authenticator code (when the signer has one).")
@click.option("--reason", default="", help="Why (recorded in each record's audit trail).")
@_friendly
def definitions_migrate(plan_file: str, dry_run: bool, actor: str | None, password_stdin: bool,
                        totp: str | None, reason: str) -> None:
    """Move running records to a later definition version with the migration plan PLAN_FILE
    (docs/definitions.md, "Migrating running records"). The plan is validated first; the
    migration is signed "Migration approved" with your password (and authenticator code)."""
    from workflow.change_control import plans as migration_plans
    from workflow.signatures.part11 import PasswordSignature

    plan = migration_plans.load_plan(plan_file)
    engine, _ = _engine()
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
        engine, plan, actor, PasswordSignature(actor, password, totp=totp),
        _cli_reason(reason))
    for number in outcome.migrated:
        click.echo(f"{number}: migrated to {plan.workflow} v{plan.to_version}")
    for number, error in outcome.skipped:
        click.echo(f"{number}: skipped: {error}", err=True)
    click.echo(f"plan {plan.id}: {len(outcome.migrated)} migrated, "
               f"{len(outcome.skipped)} skipped")
    sys.exit(1 if outcome.skipped else 0)


@definitions_group.command("publish")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--as", "username", required=True,
              help="The process owner submitting the change (holds role process_owner).")
@click.option("--summary", required=True, help="What changes and why (on the DCR record).")
@_friendly
def definitions_publish(file: str, username: str, summary: str) -> None:
    """Submit FILE as a new version under change control.

    A draft of FILE's workflow is created and submitted: a definition change record (DCR)
    starts, and the new version is published only when QA approves that record with an
    electronic signature ("Approved for use"; not the submitter). Same rules as the editor.
    """
    from workflow.change_control.drafts import DraftInvalid, publish_file

    engine, _ = _engine()
    try:
        draft, result = publish_file(engine, file, username, _cli_reason(summary))
    except DraftInvalid as exc:
        for f in exc.findings:
            click.echo(f"{file}:{f.line}: {f.message}", err=True)
        sys.exit(1)
    click.echo(f"draft #{draft.id} of {draft.key} submitted for approval as {result.number}; "
               "it is published when QA approves it with an electronic signature")


# ------------------------------------------------------------------ integrity


@main.command("verify-audit")
def verify_audit() -> None:
    """Recompute every audit chain and signature; exit non-zero naming the first problem."""
    import getpass

    from workflow import clock
    from workflow.audit.integrity import verify
    from workflow.kpi.calculator import store_verification

    engine, _ = _engine()
    started = clock.now()
    with engine.reader() as s:
        report = verify(s, engine.signing_key)
    # kept for the dashboard's data-integrity tile (last run, result, events verified)
    with engine.unit() as s:
        store_verification(s, report, started, f"qms CLI, OS user {getpass.getuser()}")
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

    from workflow.identity import passwords
    from workflow.identity import users as identity
    from workflow.identity.policy import Policy

    engine, _ = _engine()
    why = _cli_reason(reason)
    password = sys.stdin.readline().rstrip("\n") if password_stdin else \
        f"Tmp-{secrets.token_urlsafe(12)}"
    with engine.unit() as s:
        actor = identity.system_user(s)
        u = identity.create_user(s, username, full_name, email=email, timezone=timezone,
                                 actor=actor, reason=why)
        passwords.set_password(s, u, password, actor=actor, policy=Policy.from_env(),
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

    from workflow.identity import users as identity

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
    from workflow.identity import users as identity

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
    from workflow.identity import users as identity

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
    from workflow.identity import lockout
    from workflow.identity import users as identity

    engine, _ = _engine()
    lockout.unlock(engine, username, actor=identity.SYSTEM_USERNAME, reason=_cli_reason(reason))
    click.echo(f"unlocked {username}")


@users_group.command("reset-totp")
@click.argument("username")
@click.option("--reason", required=True)
@_friendly
def users_reset_totp(username: str, reason: str) -> None:
    """Revoke USERNAME's authenticator and recovery codes (lost or compromised device)."""
    from workflow.identity import totp
    from workflow.identity import users as identity

    engine, _ = _engine()
    totp.reset_totp(engine, username, actor=identity.SYSTEM_USERNAME, reason=_cli_reason(reason))
    click.echo(f"authenticator reset for {username}; they enrol again at next login")


@users_group.command("set-password")
@click.argument("username")
@click.option("--reason", required=True)
@_friendly
def users_set_password(username: str, reason: str) -> None:
    """Give USERNAME a new temporary password (they must change it at next login)."""
    import secrets

    from workflow.identity import passwords
    from workflow.identity import users as identity
    from workflow.identity.policy import Policy

    engine, _ = _engine()
    password = f"Tmp-{secrets.token_urlsafe(12)}"
    with engine.unit() as s:
        passwords.set_password(s, identity.get_user(s, username), password,
                               actor=identity.system_user(s), policy=Policy.from_env(),
                               reason=_cli_reason(reason), temporary=True)
    click.echo(f"temporary password for {username} (shown once): {password}")


@users_group.command("list")
def users_list() -> None:
    """List users with their roles and account state."""
    from workflow.db.models import User
    from workflow.identity import users as identity

    engine, _ = _engine()
    with engine.reader() as s:
        for u in s.execute(select(User).where(User.is_system.is_(False))
                           .order_by(User.username)).scalars():
            roles = ", ".join(sorted(identity.roles_of(s, u))) or "-"
            state = "DEACTIVATED" if not u.active else "LOCKED" if u.locked_at else "active"
            totp = "totp" if u.totp_enabled_at else "-"
            click.echo(f"{u.username:16} {u.full_name:28} {state:11} {totp:5} {roles}")


# ------------------------------------------------------------------ API tokens


@main.group("tokens")
def tokens_group() -> None:
    """API tokens for service accounts (people create their own on the API tokens page)."""


@tokens_group.command("service-account")
@click.argument("username")
@click.option("--name", "full_name", required=True, help="Printed name, e.g. 'LIMS (service)'.")
@click.option("--role", "roles", multiple=True, help="Grant this role (repeatable).")
@click.option("--reason", required=True, help="Why (recorded in the audit trail).")
@_friendly
def tokens_service_account(username: str, full_name: str, roles: tuple[str, ...],
                           reason: str) -> None:
    """Create a service account: no password, so it can never log in or sign; it acts only
    through the API tokens created for it."""
    from workflow.identity import tokens as api_tokens
    from workflow.identity import users as identity

    engine, _ = _engine()
    why = _cli_reason(reason)
    with engine.unit() as s:
        api_tokens.create_service_account(s, username, full_name, roles=roles,
                                          actor=identity.system_user(s), reason=why)
    click.echo(f"created service account {username}"
               + (f" with roles {', '.join(roles)}" if roles else ""))


@tokens_group.command("create")
@click.argument("username")
@click.option("--name", required=True, help="What the token is for, e.g. 'LIMS production'.")
@click.option("--scope", "scopes", multiple=True, default=("read",), show_default=True,
              type=click.Choice(["read", "write", "sign"]), help="Repeatable.")
@click.option("--expires-days", default=90, show_default=True, type=int)
@click.option("--reason", required=True, help="Why (recorded in the audit trail).")
@_friendly
def tokens_create(username: str, name: str, scopes: tuple[str, ...], expires_days: int,
                  reason: str) -> None:
    """Create an API token for the service account USERNAME; the token is printed once."""
    from workflow.identity import tokens as api_tokens
    from workflow.identity import users as identity

    engine, _ = _engine()
    why = _cli_reason(reason)
    with engine.unit() as s:
        created = api_tokens.create_token(s, identity.get_user(s, username),
                                          actor=identity.system_user(s), name=name,
                                          scopes=scopes, expires_in_days=expires_days,
                                          reason=why)
    info = created.info
    click.echo(f"token #{info.id} {info.prefix} for {username}: scopes {' '.join(info.scopes)}, "
               f"expires {info.expires_at:%Y-%m-%d %H:%M} UTC")
    click.echo(f"token (shown once, store it in the client's secret store): {created.secret}")


@tokens_group.command("list")
@click.option("--user", "username", default=None, help="Only this user's tokens.")
@_friendly
def tokens_list(username: str | None) -> None:
    """List tokens (never the secrets): number, prefix, user, scopes, expiry, last use."""
    from workflow.identity import tokens as api_tokens
    from workflow.identity import users as identity

    engine, _ = _engine()
    with engine.reader() as s:
        owner = identity.get_user(s, username, active=False) if username else None
        rows = api_tokens.list_tokens(s, owner)
    for t in rows:
        used = f"{t.last_used_at:%Y-%m-%d %H:%M}" if t.last_used_at else "never"
        expires = f"{t.expires_at:%Y-%m-%d}" if t.expires_at else "-"
        click.echo(f"#{t.id:<5} {t.prefix:13} {t.username:16} {','.join(t.scopes):16} "
                   f"expires {expires}  used {used:16} {t.status():8} {t.name}")


@tokens_group.command("revoke")
@click.argument("token")
@click.option("--reason", required=True, help="Why (recorded in the audit trail).")
@_friendly
def tokens_revoke(token: str, reason: str) -> None:
    """Revoke TOKEN (its number or prefix) at once."""
    from workflow.identity import tokens as api_tokens
    from workflow.identity import users as identity

    engine, _ = _engine()
    with engine.unit() as s:
        row = api_tokens.find_token(s, token)
        api_tokens.revoke_token(s, row, actor=identity.system_user(s), reason=_cli_reason(reason))
        prefix = row.prefix
    click.echo(f"revoked token {prefix}")


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
    from workflow.db.models import Record

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
    from workflow.db.models import AuditEvent, Signature

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


# ------------------------------------------------------------------ scheduler and jobs


def _schedules(path: str | None = None) -> Any:
    from workflow.scheduling.runner import load_schedules

    return load_schedules(path)


@main.command("scheduler")
@click.option("--once", is_flag=True, help="Run what is due now, then exit.")
@_friendly
def scheduler(once: bool) -> None:
    """Run the scheduled jobs (definitions/schedules/schedules.yaml or QMS_SCHEDULES_FILE).

    APScheduler is the clock (one tick a minute, in memory); the database decides what runs:
    each job runs once per period however many schedulers share the database, and a scheduler
    that was down runs a missed period once when it starts."""
    from workflow.scheduling import runner as scheduling

    schedules = _schedules()
    engine, _ = _engine()
    if once:
        lines = scheduling.run_due(engine, schedules)
        for line in lines:
            click.echo(line)
        click.echo(f"{len(lines)} schedule(s) did something")
        return
    logging.getLogger().setLevel(logging.INFO)
    click.echo(f"scheduler {scheduling.runner_name()}: {len(schedules)} schedule(s); "
               "Ctrl-C stops it")
    scheduling.serve(engine, schedules)


@main.group("jobs")
def jobs_group() -> None:
    """Scheduled jobs: list, run one now, validate the schedules file."""


@jobs_group.command("list")
@_friendly
def jobs_list() -> None:
    """Each schedule with its job, when it runs and its last run."""
    from workflow.scheduling import runner as scheduling

    schedules = _schedules()
    engine, _ = _engine()
    runs = scheduling.last_runs(engine)
    for s in schedules.values():
        run = runs.get(s.name)
        last = "never" if run is None else (
            f"{run.status} {run.period_key} at {run.finished_at or run.started_at:%Y-%m-%d %H:%M}"
            + (f" ({run.error})" if run.error else ""))
        click.echo(f"{s.name:26} {s.job:24} "
                   f"{(s.cron + ' per ' + s.period) if s.cron else 'every minute':32} "
                   f"last: {last}")
    click.echo("jobs: " + ", ".join(sorted(scheduling.JOBS)))


@jobs_group.command("run")
@click.argument("name")
@_friendly
def jobs_run(name: str) -> None:
    """Run schedule NAME now (still once per period: a done period is not run again)."""
    from workflow.scheduling import runner as scheduling

    schedules = _schedules()
    if name not in schedules:
        raise CliError(f"no schedule {name!r}; schedules: {', '.join(schedules)}")
    engine, _ = _engine()
    line = scheduling.run_now(engine, schedules[name])
    click.echo(line)
    if ": FAILED:" in line:
        sys.exit(1)


@jobs_group.command("validate")
@click.argument("file", required=False, type=click.Path(dir_okay=False))
def jobs_validate(file: str | None) -> None:
    """Validate the schedules file; print every problem as file:line: message."""
    from workflow.scheduling.runner import ScheduleError, load_schedules, schedules_file

    try:
        schedules = load_schedules(file)
    except ScheduleError as exc:
        for p in exc.problems:
            click.echo(str(p))
        sys.exit(1)
    click.echo(f"{file or schedules_file()}: ok: {len(schedules)} schedule(s)")


@main.group("notifications")
def notifications_group() -> None:
    """Deliver queued notifications; list dead letters."""


@notifications_group.command("dispatch")
def notifications_dispatch() -> None:
    """Deliver pending messages now: in-app, e-mail (QMS_SMTP_URL), due digests."""
    from notifications.dispatcher import dispatch

    engine, _ = _engine()
    report = dispatch(engine)
    click.echo(" ".join(f"{k}={v}" for k, v in report.summary().items()))


@notifications_group.command("dead")
def notifications_dead() -> None:
    """List dead-lettered messages (delivery gave up) with their last error."""
    from notifications.dispatcher import dead_letters

    engine, _ = _engine()
    with engine.reader() as s:
        rows = dead_letters(s)
    for m, who in rows:
        click.echo(f"#{m.id} {m.created_at:%Y-%m-%d %H:%M} to {who or m.recipient_role or '-'} "
                   f"({m.channel}, {m.attempts} attempt(s)): {m.subject} -- {m.last_error}")
    click.echo(f"{len(rows)} dead letter(s)")


@main.command("stats")
def stats() -> None:
    """Counts per table (a quick health check)."""
    from workflow.db.models import AuditEvent, Record, Signature, Task

    engine, _ = _engine()
    with engine.reader() as s:
        for m in (Record, Task, Signature, AuditEvent):
            click.echo(f"{m.__tablename__:14} {s.execute(select(func.count()).select_from(m)).scalar_one()}")


# ------------------------------------------------------------------ validation pack


@main.command("validation-report")
@click.option("--results", "results_path", type=click.Path(dir_okay=False, exists=True),
              default=None, help="Read this results JSON (written by `pytest --trace-report "
                                 "PATH`) instead of running the test suite.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Directory for the HTML, PDF and JSON report "
                   "(default: <QMS_INSTANCE_DIR>/validation-report).")
@click.option("--requirements", "catalogue_path", type=click.Path(dir_okay=False), default=None,
              help="Requirements catalogue (default: docs/requirements.yaml).")
@click.option("--pytest-args", default="", help="Extra pytest arguments when running the "
                                                "suite (a subset is reported as such).")
@click.option("--submit-as", "submit_as", default=None, metavar="USERNAME",
              help="Also start a validation_report record (QA approves it with an "
                   "e-signature) holding the PDF's SHA-256 and path.")
@_friendly
def validation_report(results_path: str | None, out_dir: str | None, catalogue_path: str | None,
                      pytest_args: str, submit_as: str | None) -> None:
    """Write the IQ/OQ validation report (HTML, PDF, JSON) from a run of the test suite."""
    import hashlib
    import shlex
    import tempfile
    from pathlib import Path

    from workflow.validation import catalogue as val
    from workflow.validation.render import render_html, render_pdf

    try:
        catalogue = val.load_catalogue(catalogue_path)
    except val.CatalogueError as exc:
        raise CliError("requirements catalogue " + exc.path + ": "
                       + "; ".join(exc.problems)) from None
    if out_dir is None:
        import os

        out_dir = str(Path(os.environ.get("QMS_INSTANCE_DIR", db.REPO_ROOT / "instance"))
                      / "validation-report")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if results_path is None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "results.json"
            extra = shlex.split(pytest_args)
            if catalogue_path:
                extra += ["--requirements", str(Path(catalogue_path).resolve())]
            click.echo("running the test suite (this takes a minute)...")
            code, output = val.run_suite(path, extra)
            if not path.exists():
                tail = "\n".join(output.strip().splitlines()[-15:])
                raise CliError(f"the test run wrote no results (exit status {code}):\n{tail}")
            (out / "pytest-output.txt").write_text(output, encoding="utf-8")
            results = val.load_results(path)
            (out / "results.json").write_bytes(path.read_bytes())
    else:
        try:
            results = val.load_results(results_path)
        except ValueError as exc:
            raise CliError(str(exc)) from None
    report = val.build_report(results, catalogue, val.gather_iq(catalogue=catalogue))
    html_path, pdf_path = out / "validation-report.html", out / "validation-report.pdf"
    html_path.write_text(render_html(report), encoding="utf-8")
    render_pdf(report, pdf_path)
    (out / "validation-report.json").write_text(
        json.dumps(report, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    digest = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in (html_path, pdf_path)}
    t = report["requirement_totals"]
    click.echo(f"conclusion: {report['conclusion']}  ({t['requirements']} requirements, "
               f"{t['implemented']} implemented, {t['with tests']} with tests; "
               f"{len(report['tests'])} tests: "
               + ", ".join(f"{v} {k}" for k, v in report["test_totals"].items()) + ")")
    for d in report["deviations"]:
        click.echo(f"  deviation: {d}")
    for p, h in digest.items():
        click.echo(f"{p}  sha256 {h}")
    if submit_as:
        engine, _ = _engine()
        product = report["iq"]["product"]
        r = engine.start("validation_report", submit_as, {
            "title": f"Validation report {product['version']} at {product['commit'][:12]}",
            "report_path": str(pdf_path.resolve()),
            "report_sha256": digest[pdf_path],
            "html_sha256": digest[html_path],
            "product_version": product["version"],
            "git_commit": product["commit"][:64],
            "conclusion": report["conclusion"],
            "summary": "; ".join(f"{k}: {v}" for k, v in t.items()),
        })
        click.echo(f"{r.number} created in state {r.state}: QA approves it with an "
                   f"e-signature (meaning Approved)")


@main.command("export")
@click.argument("number")
@click.option("--format", "fmt", type=click.Choice(["json", "pdf"]), default="json",
              show_default=True, help="json: electronic copy; pdf: human-readable copy.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Write to this file instead of standard output.")
@click.option("--reason", default="true copy", show_default=True,
              help="Why the copy is made (audited with the export).")
@_friendly
def export(number: str, fmt: str, output: str | None, reason: str) -> None:
    """A record's true copy: fields with labels, state history, links, signature
    manifestations, the audit trail, and its seal and chain head (the export is audited)."""
    from workflow.identity.users import system_user
    from workflow.queries.copies import export_record, record_pdf

    if fmt == "pdf" and not output:
        raise click.UsageError("--format pdf needs --output FILE")
    engine, _ = _engine()
    with engine.unit() as s:
        doc = export_record(s, engine.registry, number, system_user(s), fmt,
                            _cli_reason(reason))
    if fmt == "pdf":
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


if __name__ == "__main__":  # pragma: no cover
    main()
