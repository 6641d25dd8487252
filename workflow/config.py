"""Settings: every ``QMS_`` environment variable, parsed and validated once.

:meth:`Settings.from_env` is the one place the process environment is read. A malformed
value stops the process at start-up with a :class:`~workflow.errors.ConfigError` that names
the variable, instead of failing later in the middle of a request or a job. Processes use
the cached :func:`settings`; tests that change the environment call :func:`reset`.

An empty variable counts as unset (its default applies), except ``QMS_TOTP_REQUIRED_ROLES``,
where an empty list means that no role must use an authenticator.

Where the values come from (:func:`environment`): the process environment, over an optional
``.env`` file (``QMS_ENV_FILE``, else ``.env`` in the current directory; parsed by
python-dotenv, never copied into the process environment). A ``QMS_`` variable that is not a
setting is warned about with the nearest known name (a typo would otherwise be ignored);
``QMS_TEST_*`` and ``QMS_BENCH_*`` belong to the tests and benchmarks and are left alone.

The README's configuration table lists exactly these variables (tests/unit/test_config.py);
``qms config show`` prints the values in force, secrets masked.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from workflow.errors import ConfigError

#: the source checkout this module sits in: only for what needs one (the validation report
#: runs the test suite and reads docs/); the running system finds its files through
#: workflow/resources.py and keeps its data in the instance directory
REPO_ROOT = Path(__file__).resolve().parents[1]
PREFIX = "QMS_"
#: QMS_ variables that are not settings of the product: the tests' and benchmarks' own
NOT_SETTINGS = ("QMS_TEST_", "QMS_BENCH_")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Settings:
    """The configuration of a process. Field ``x_y`` comes from ``QMS_X_Y`` (see
    :data:`VARIABLES` for the two exceptions); defaults are the documented ones."""

    # --- storage and keys
    database_url: str | None = None  # None: SQLite file in instance_dir
    # PostgreSQL role separation (workflow/db/roles.py): the migrations' connection (the
    # schema owner; None: database_url) and the runtime role granted after each upgrade
    migration_database_url: str | None = None
    runtime_role: str | None = None  # None: database_url's user when it differs from the owner
    #: ``./instance`` of the working directory when the process starts (never inside the
    #: installed package: an installed wheel writes nothing into site-packages); production
    #: sets QMS_INSTANCE_DIR (docs/deployment.md)
    instance_dir: Path = field(default_factory=lambda: Path.cwd() / "instance")
    signature_key: bytes | None = field(default=None, repr=False)  # None: from the key file
    signature_key_file: Path | None = None  # None: instance_dir / signature.key
    secret_key: str | None = field(default=None, repr=False)  # None: instance file
    # keys by id (workflow/signatures/keys.py): a KMS hook, the Ed25519 anchor keys, and
    # where signed checkpoints go (workflow/audit/checkpoints.py)
    key_provider: str | None = None  # "module:factory"; None: the key files
    anchor_key_file: Path | None = None  # None: instance_dir / anchor.key
    checkpoint_dir: Path | None = None  # None: instance_dir / checkpoints
    # attachments (workflow/blobs.py): where files go, another store, the limits
    attachment_dir: Path | None = None  # None: instance_dir / attachments
    attachment_store: str | None = None  # "module:factory"; None: the local directory
    attachment_max_bytes: int = 25 * 1024 * 1024
    attachment_types: tuple[str, ...] = (
        "application/pdf", "image/png", "image/jpeg", "image/tiff", "text/plain",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
    # where `qms backup` writes (workflow/backup.py; None: instance_dir / backups) and the age
    # after which /readyz and the dashboard flag the newest backup as overdue (0: never)
    backup_dir: Path | None = None
    backup_max_age_hours: int = 26
    # --- web
    cookie_secure: bool = False
    trusted_proxies: int = 0  # reverse proxies in front whose X-Forwarded-* are believed
    api_rate_per_minute: int = 600  # 0: no limit
    base_url: str = "http://127.0.0.1:5000"
    # --- security policy (workflow.identity.policy.Policy.from_settings)
    password_min_length: int = 12
    password_history: int = 5
    password_max_age_days: int = 90  # 0 disables expiry
    lockout_threshold: int = 5
    lockout_mode: str = "timed"  # timed: the lock ends by itself; admin: an administrator unlocks
    lockout_base_minutes: int = 15  # the first lock's length; each further one doubles
    lockout_max_minutes: int = 1440  # the longest a timed lock lasts
    login_rate_per_ip: int = 30  # login attempts per client address per window (0: no limit)
    login_rate_per_account: int = 10  # login attempts per typed username per window (0: none)
    login_rate_window_seconds: int = 300
    session_idle_minutes: int = 15
    session_warn_seconds: int = 120  # the page warns this long before the idle timeout
    draft_max_bytes: int = 65536  # the largest unsubmitted-form draft kept per form
    draft_autosave_seconds: int = 5  # how often a form with changes saves its draft
    session_max_hours: int = 12
    login_step_minutes: int = 5  # how long the second-factor step stays open after a password
    totp_required_roles: tuple[str, ...] = ("qa", "admin")
    totp_issuer: str = "QMS"
    security_role: str = "admin"
    # --- security incidents opened from the system's own security events (scheduled job
    # security_event_incidents): how many events of a kind in one detection period open an
    # incident (0: that cause is not watched)
    incident_lockouts: int = 5  # account_locked events (a lockout storm)
    incident_signature_failures: int = 10  # signature_failed events
    incident_verify_failures: int = 1  # failed audit-trail verifications
    # --- command line: `--maintenance` (act without the named user's credentials) is
    # refused unless this is on; every event then records the OS user (docs/architecture.md)
    cli_maintenance: bool = False
    #: the e-signature policy people accept before they can sign (None: the shipped text,
    #: workflow/data/esignature-policy.txt); first lines "Version: ..." and "Title: ..."
    esign_policy_file: Path | None = None
    # --- segregation of administration (workflow/identity/grants.py)
    #: roles whose grant needs a second administrator, besides admin and every role that
    #: signs in a published definition
    privileged_roles: tuple[str, ...] = ()
    #: pairs of roles one person may not hold together ("admin:qa")
    incompatible_roles: tuple[tuple[str, str], ...] = (("admin", "qa"),)
    #: the only roles a service account (another system) may hold
    service_account_roles: tuple[str, ...] = ("employee", "training_coordinator")
    #: an account with no login for this many days is listed as dormant
    dormant_days: int = 90
    # --- engine, scheduler, dashboard
    system_name: str = "QMS"
    schedules_file: Path | None = None  # None: the shipped definitions/schedules/schedules.yaml
    kpi_thresholds: Path | None = None
    verify_workers: int = 0  # verify-audit processes; 0: automatic (1 for small databases)
    # --- notifications
    smtp_url: str | None = field(default=None, repr=False)  # None: e-mail off
    smtp_from: str = "qms@localhost"
    smtp_max_attempts: int = 5
    smtp_retry_seconds: int = 60
    smtp_timeout: float = 10.0
    digest_hour: int = 7
    # --- installation
    #: the installation's time zone (tz database name): new accounts' zone, pages before login
    timezone: str = "UTC"
    #: the day the system went live: the scheduler opens no period that ended before it
    #: (None: the day `qms init` recorded, else the first definition's publication)
    go_live: date | None = None
    # --- operations
    log_format: str = "json"  # json: one JSON object a line (request id on each); text
    log_level: str = "info"
    #: the .env file read under the environment (None: ./.env when it exists)
    env_file: Path | None = None

    @property
    def signature_key_path(self) -> Path:
        """The key file used when ``QMS_SIGNATURE_KEY`` is not set."""
        return self.signature_key_file or self.instance_dir / "signature.key"

    @property
    def anchor_key_path(self) -> Path:
        """The Ed25519 anchor key file (never the HMAC key file)."""
        return self.anchor_key_file or self.instance_dir / "anchor.key"

    @property
    def attachment_path(self) -> Path:
        """The directory of the local attachment store."""
        return self.attachment_dir or self.instance_dir / "attachments"

    @property
    def checkpoint_path(self) -> Path:
        """The append-only directory signed checkpoints are written to."""
        return self.checkpoint_dir or self.instance_dir / "checkpoints"

    @property
    def backup_path(self) -> Path:
        """The directory ``qms backup`` writes to and the backup age is read from."""
        return self.backup_dir or self.instance_dir / "backups"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Parse and validate every ``QMS_`` variable of ``environ`` (default: the process
        environment); raise :class:`ConfigError` naming the first malformed one."""
        env = _Reader(os.environ if environ is None else environ)
        d = cls()
        roles = env.raw("QMS_TOTP_REQUIRED_ROLES")
        return cls(
            database_url=env.optional("QMS_DATABASE_URL"),
            migration_database_url=env.optional("QMS_MIGRATION_DATABASE_URL"),
            runtime_role=env.optional("QMS_RUNTIME_ROLE"),
            instance_dir=env.path("QMS_INSTANCE_DIR") or d.instance_dir,
            signature_key=env.hex_key("QMS_SIGNATURE_KEY"),
            signature_key_file=env.path("QMS_SIGNATURE_KEY_FILE"),
            secret_key=env.optional("QMS_SECRET_KEY"),
            key_provider=env.hook("QMS_KEY_PROVIDER"),
            anchor_key_file=env.path("QMS_ANCHOR_KEY_FILE"),
            checkpoint_dir=env.path("QMS_CHECKPOINT_DIR"),
            attachment_dir=env.path("QMS_ATTACHMENT_DIR"),
            attachment_store=env.hook("QMS_ATTACHMENT_STORE"),
            attachment_max_bytes=max(1, env.whole("QMS_ATTACHMENT_MAX_BYTES",
                                                  d.attachment_max_bytes, "bytes")),
            attachment_types=env.media_types("QMS_ATTACHMENT_TYPES", d.attachment_types),
            backup_dir=env.path("QMS_BACKUP_DIR"),
            backup_max_age_hours=env.whole("QMS_BACKUP_MAX_AGE_HOURS", d.backup_max_age_hours,
                                           "hours (0: never overdue)"),
            cookie_secure=env.flag("QMS_COOKIE_SECURE", d.cookie_secure),
            trusted_proxies=env.whole("QMS_TRUSTED_PROXIES", d.trusted_proxies, "proxies"),
            api_rate_per_minute=env.whole("QMS_API_RATE_PER_MINUTE", d.api_rate_per_minute,
                                          "requests per minute (0: no limit)"),
            base_url=env.text("QMS_BASE_URL", d.base_url).rstrip("/"),
            password_min_length=env.whole("QMS_PASSWORD_MIN_LENGTH", d.password_min_length,
                                          "characters"),
            password_history=env.whole("QMS_PASSWORD_HISTORY", d.password_history, "passwords"),
            password_max_age_days=env.whole("QMS_PASSWORD_MAX_AGE_DAYS",
                                            d.password_max_age_days, "days (0: no expiry)"),
            lockout_threshold=env.whole("QMS_LOCKOUT_THRESHOLD", d.lockout_threshold,
                                        "failed attempts"),
            lockout_mode=env.choice("QMS_LOCKOUT_MODE", d.lockout_mode, ("timed", "admin")),
            lockout_base_minutes=max(1, env.whole("QMS_LOCKOUT_BASE_MINUTES",
                                                  d.lockout_base_minutes, "minutes")),
            lockout_max_minutes=max(1, env.whole("QMS_LOCKOUT_MAX_MINUTES",
                                                 d.lockout_max_minutes, "minutes")),
            login_rate_per_ip=env.whole("QMS_LOGIN_RATE_PER_IP", d.login_rate_per_ip,
                                        "attempts (0: no limit)"),
            login_rate_per_account=env.whole("QMS_LOGIN_RATE_PER_ACCOUNT",
                                             d.login_rate_per_account, "attempts (0: no limit)"),
            login_rate_window_seconds=max(1, env.whole("QMS_LOGIN_RATE_WINDOW_SECONDS",
                                                       d.login_rate_window_seconds, "seconds")),
            session_idle_minutes=env.whole("QMS_SESSION_IDLE_MINUTES", d.session_idle_minutes,
                                           "minutes"),
            session_max_hours=env.whole("QMS_SESSION_MAX_HOURS", d.session_max_hours, "hours"),
            session_warn_seconds=env.whole("QMS_SESSION_WARN_SECONDS", d.session_warn_seconds,
                                           "seconds"),
            draft_max_bytes=max(1024, env.whole("QMS_DRAFT_MAX_BYTES", d.draft_max_bytes,
                                                "bytes")),
            draft_autosave_seconds=max(1, env.whole("QMS_DRAFT_AUTOSAVE_SECONDS",
                                                    d.draft_autosave_seconds, "seconds")),
            # a step that is never open makes every second-factor login fail: at least 1
            login_step_minutes=max(1, env.whole("QMS_LOGIN_STEP_MINUTES", d.login_step_minutes,
                                                "minutes")),
            totp_required_roles=d.totp_required_roles if roles is None
            else tuple(r.strip() for r in roles.split(",") if r.strip()),
            totp_issuer=env.text("QMS_TOTP_ISSUER", d.totp_issuer),
            security_role=env.text("QMS_SECURITY_ROLE", d.security_role),
            incident_lockouts=env.whole("QMS_INCIDENT_LOCKOUTS", d.incident_lockouts,
                                        "account lockouts per period (0: not watched)"),
            incident_signature_failures=env.whole(
                "QMS_INCIDENT_SIGNATURE_FAILURES", d.incident_signature_failures,
                "failed signatures per period (0: not watched)"),
            incident_verify_failures=env.whole(
                "QMS_INCIDENT_VERIFY_FAILURES", d.incident_verify_failures,
                "failed verifications per period (0: not watched)"),
            cli_maintenance=env.flag("QMS_CLI_MAINTENANCE", d.cli_maintenance),
            esign_policy_file=env.path("QMS_ESIGN_POLICY_FILE"),
            privileged_roles=env.names("QMS_PRIVILEGED_ROLES", d.privileged_roles),
            incompatible_roles=env.pairs("QMS_INCOMPATIBLE_ROLES", d.incompatible_roles),
            service_account_roles=env.names("QMS_SERVICE_ACCOUNT_ROLES",
                                            d.service_account_roles),
            dormant_days=max(1, env.whole("QMS_DORMANT_DAYS", d.dormant_days, "days")),
            system_name=env.text("QMS_SYSTEM_NAME", d.system_name),
            schedules_file=env.path("QMS_SCHEDULES_FILE"),
            kpi_thresholds=env.path("QMS_KPI_THRESHOLDS"),
            verify_workers=env.whole("QMS_VERIFY_WORKERS", d.verify_workers,
                                     "processes (0: automatic)"),
            smtp_url=env.optional("QMS_SMTP_URL"),
            smtp_from=env.text("QMS_SMTP_FROM", d.smtp_from),
            # fewer than one attempt or a zero delay make no sense: at least 1 (as before)
            smtp_max_attempts=max(1, env.whole("QMS_SMTP_MAX_ATTEMPTS", d.smtp_max_attempts,
                                               "attempts")),
            smtp_retry_seconds=max(1, env.whole("QMS_SMTP_RETRY_SECONDS",
                                                d.smtp_retry_seconds, "seconds")),
            smtp_timeout=env.seconds("QMS_SMTP_TIMEOUT", d.smtp_timeout),
            digest_hour=env.hour("QMS_DIGEST_HOUR", d.digest_hour),
            timezone=env.zone("QMS_TIMEZONE", d.timezone),
            go_live=env.day("QMS_GO_LIVE"),
            log_format=env.choice("QMS_LOG_FORMAT", d.log_format, ("json", "text")),
            log_level=env.choice("QMS_LOG_LEVEL", d.log_level,
                                 ("debug", "info", "warning", "error")),
            env_file=env.path("QMS_ENV_FILE"),
        )


#: every variable Settings reads -> its field (the README table lists exactly these)
VARIABLES: dict[str, str] = {
    f"{PREFIX}{name.upper()}": name for name in Settings.__dataclass_fields__
}


#: fields whose value is never shown (keys; URLs are shown without their password)
SECRET_FIELDS = frozenset({"signature_key", "secret_key"})

_ROLE = re.compile(r"[a-z][a-z0-9_]{0,39}")
_MEDIA_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,62}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}")


def is_zone(name: str) -> bool:
    """Whether ``name`` is a time zone of the tz database ("Europe/Paris"; not "Europe/Pari")."""
    if not name or name != name.strip() or name.startswith("/") or ".." in name:
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


def zone_problem(name: str) -> str:
    """Why ``name`` is not a time zone, with the nearest names of the tz database."""
    near = difflib.get_close_matches(name, sorted(available_timezones()), n=1, cutoff=0.75)
    hint = f"; did you mean {near[0]}?" if near else " (e.g. Europe/Paris, UTC)"
    return f"must be a time zone of the tz database, got {name!r}{hint}"


class _Reader:
    """Typed reads of one environment mapping; each refusal names the variable."""

    def __init__(self, environ: Mapping[str, str]):
        self.environ = environ

    def zone(self, name: str, default: str) -> str:
        value = (self.optional(name) or default).strip()
        if not is_zone(value):
            raise ConfigError(name, f"{name} {zone_problem(value)}")
        return value

    def day(self, name: str) -> date | None:
        value = self.optional(name)
        if value is None:
            return None
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            raise ConfigError(name, f"{name} must be a date YYYY-MM-DD, got {value!r}") from None

    def raw(self, name: str) -> str | None:
        return self.environ.get(name)

    def text(self, name: str, default: str) -> str:
        return self.environ.get(name) or default

    def choice(self, name: str, default: str, allowed: tuple[str, ...]) -> str:
        value = (self.optional(name) or default).strip().lower()
        if value not in allowed:
            raise ConfigError(name, f"{name} must be one of {', '.join(allowed)}, "
                                    f"got {self.environ.get(name)!r}")
        return value

    def optional(self, name: str) -> str | None:
        return self.environ.get(name) or None

    def path(self, name: str) -> Path | None:
        value = self.optional(name)
        return Path(value) if value else None

    def whole(self, name: str, default: int, unit: str) -> int:
        value = self.optional(name)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            raise ConfigError(name, f"{name} must be a whole number of {unit}, "
                                    f"got {value!r}") from None
        if number < 0:
            raise ConfigError(name, f"{name} must be 0 or more {unit}, got {value!r}")
        return number

    def seconds(self, name: str, default: float) -> float:
        value = self.optional(name)
        if value is None:
            return default
        try:
            number = float(value)
        except ValueError:
            number = -1.0
        if not number > 0:
            raise ConfigError(name, f"{name} must be a number of seconds above 0, got {value!r}")
        return number

    def hour(self, name: str, default: int) -> int:
        value = self.optional(name)
        if value is None:
            return default
        value = value.strip()
        if not value.isdigit() or not 0 <= int(value) <= 23:
            raise ConfigError(name, f"{name} must be an hour from 0 to 23, got {value!r}")
        return int(value)

    def names(self, name: str, default: tuple[str, ...]) -> tuple[str, ...]:
        """A comma-separated list of role names."""
        value = self.optional(name)
        if value is None:
            return default
        out = tuple(r.strip() for r in value.split(",") if r.strip())
        bad = [r for r in out if not _ROLE.fullmatch(r)]
        if bad:
            raise ConfigError(name, f"{name} must list role names separated by commas, "
                                    f"got {bad[0]!r}")
        return out

    def media_types(self, name: str, default: tuple[str, ...]) -> tuple[str, ...]:
        """A comma-separated list of media types (``application/pdf,image/png``)."""
        value = self.optional(name)
        if value is None:
            return default
        out = tuple(t.strip().lower() for t in value.split(",") if t.strip())
        bad = [t for t in out if not _MEDIA_TYPE.fullmatch(t)]
        if bad or not out:
            raise ConfigError(name, f"{name} must list media types separated by commas "
                                    f"(e.g. application/pdf,image/png), got {value!r}")
        return out

    def pairs(self, name: str, default: tuple[tuple[str, str], ...]
              ) -> tuple[tuple[str, str], ...]:
        """Comma-separated ``role:role`` pairs."""
        value = self.optional(name)
        if value is None:
            return default
        out = []
        for item in (i.strip() for i in value.split(",") if i.strip()):
            a, _, b = item.partition(":")
            if not (_ROLE.fullmatch(a.strip()) and _ROLE.fullmatch(b.strip())):
                raise ConfigError(name, f"{name} must list pairs role:role separated by "
                                        f"commas (e.g. admin:qa), got {item!r}")
            out.append((a.strip(), b.strip()))
        return tuple(out)

    def flag(self, name: str, default: bool) -> bool:
        value = self.optional(name)
        if value is None:
            return default
        if value.strip() not in ("0", "1"):
            raise ConfigError(name, f"{name} must be 1 (on) or 0 (off), got {value!r}")
        return value.strip() == "1"

    def hook(self, name: str) -> str | None:
        """``module:factory`` (a callable to import), checked for its form only."""
        value = self.optional(name)
        if value is None:
            return None
        module, sep, attr = value.strip().partition(":")
        if not sep or not module or not attr.isidentifier():
            raise ConfigError(name, f"{name} must be module:factory (e.g. "
                                    f"mycompany.qms_kms:provider), got {value!r}")
        return value.strip()

    def hex_key(self, name: str) -> bytes | None:
        value = self.optional(name)
        if value is None:
            return None
        try:
            key = bytes.fromhex(value)
        except ValueError:
            raise ConfigError(name, f"{name} must be hex (e.g. `openssl rand -hex 32`)") from None
        if len(key) < 32:
            raise ConfigError(name, f"{name} must be at least 32 bytes (64 hex digits), "
                                    f"got {len(key)}")
        return key


# --------------------------------------------------------------------------- the process's


@dataclass(frozen=True)
class Environment:
    """The ``QMS_`` variables a process runs with and where each came from."""

    values: dict[str, str]
    #: variable -> "environment" or "file <path>"
    sources: dict[str, str]
    file: Path | None = None


def environment(environ: Mapping[str, str] | None = None, cwd: Path | None = None
                ) -> Environment:
    """The ``QMS_`` variables of ``environ`` (default: the process environment) over those of
    the ``.env`` file: ``QMS_ENV_FILE`` if set (it must exist), else ``.env`` in ``cwd``
    (default: the current directory) if there is one. The environment wins."""
    env = {k: v for k, v in (os.environ if environ is None else environ).items()
           if k.startswith(PREFIX)}
    named = env.get("QMS_ENV_FILE")
    path: Path | None
    if named:
        path = Path(named)
        if not path.is_file():
            raise ConfigError("QMS_ENV_FILE", f"QMS_ENV_FILE names {named}, which is not a "
                                              "file that can be read")
    else:
        path = (cwd or Path.cwd()) / ".env"
        path = path if path.is_file() else None
    values: dict[str, str] = {}
    sources: dict[str, str] = {}
    if path is not None:
        from dotenv import dotenv_values  # only when there is a file

        try:
            found = dotenv_values(path, interpolate=False)
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError("QMS_ENV_FILE", f"the settings file {path} cannot be read: "
                                              f"{exc}") from None
        for k, v in found.items():
            if k.startswith(PREFIX) and v is not None:
                values[k] = v
                sources[k] = f"file {path}"
    for k, v in env.items():
        values[k] = v
        sources[k] = "environment"
    return Environment(values, sources, path)


def unknown_variables(values: Mapping[str, str]) -> list[str]:
    """A warning for each ``QMS_`` variable that is no setting, naming the nearest one."""
    out = []
    for name in sorted(values):
        if not name.startswith(PREFIX) or name in VARIABLES or name.startswith(NOT_SETTINGS):
            continue
        near = difflib.get_close_matches(name, list(VARIABLES), n=1, cutoff=0.75)
        hint = f"; did you mean {near[0]}?" if near else ""
        out.append(f"{name} is not a setting and is ignored{hint}")
    return out


def mask(name: str, value: str) -> str:
    """A value as shown to people: keys and secrets never, URLs without their password."""
    upper = name.upper()
    if any(w in upper for w in ("KEY", "SECRET", "PASSWORD", "TOKEN", "PASSWD", "CREDENTIAL")) \
            and not upper.endswith(("_FILE", "_PROVIDER")):
        return "(set, masked)" if value else "(empty)"
    return mask_url(value)


def mask_url(value: str) -> str:
    """``value`` with the password of a URL in it replaced by ``***``."""
    if "://" in value:
        from sqlalchemy.engine import make_url

        try:
            return make_url(value).render_as_string(hide_password=True)
        except Exception:  # not a URL SQLAlchemy parses: mask anything between :// and @
            return re.sub(r"//[^/@]*@", "//***@", value)
    return value


def shown(settings: Settings, env: Environment) -> list[dict[str, str]]:
    """Every setting as ``qms config show`` prints it: variable, value (secrets masked) and
    source (default, environment, or the .env file)."""
    rows = []
    for name, field_name in VARIABLES.items():
        value = getattr(settings, field_name)
        if field_name in SECRET_FIELDS:
            text = "(set, masked)" if value else "(not set)"
        elif value is None:
            text = "(not set)"
        elif isinstance(value, bool):
            text = str(int(value))
        elif isinstance(value, tuple):
            text = ",".join(":".join(v) if isinstance(v, tuple) else v for v in value)
        else:
            text = mask_url(str(value))
        rows.append({"name": name, "value": text,
                     "source": env.sources.get(name, "default")})
    return rows


_current: Settings | None = None


def settings() -> Settings:
    """This process's settings, read from the environment (and .env file) on first use; a
    ``QMS_`` variable that is no setting is logged as a warning."""
    global _current
    if _current is None:
        env = environment()
        current = Settings.from_env(env.values)
        for warning in unknown_variables(env.values):
            log.warning(warning)
        _current = current
    return _current


def reset() -> None:
    """Forget the cached settings: the next :func:`settings` reads the environment again
    (tests that change ``QMS_`` variables)."""
    global _current
    _current = None


def qms_variables(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Every ``QMS_`` variable that is set, as given (the IQ report lists them, masked)."""
    env = os.environ if environ is None else environ
    return {k: v for k, v in env.items() if k.startswith(PREFIX)}


def environment_without_qms(keep: Iterable[str] = ()) -> dict[str, str]:
    """The process environment minus its ``QMS_`` variables except ``keep``: for a child
    process that must not see this installation's database and keys."""
    kept = set(keep)
    return {k: v for k, v in os.environ.items() if not k.startswith(PREFIX) or k in kept}
