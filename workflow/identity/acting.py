"""Who a command-line run acts as (issue 14, item 7; R-SEC-35, R-P11-10d-1, R-P11-10g-1).

``qms ... --as USER`` acts as USER only after USER's own credentials: the password (asked on
the terminal, or the first line of standard input with ``--password-stdin``) and, where the
account has an authenticator, a current code. The checks are the login's own
(:func:`workflow.identity.sessions.check_login_password` and ``check_login_totp``): a wrong
password counts toward lockout, a locked or deactivated account is refused, an account that
must first change its password or enrol an authenticator does that in the web application.
A successful check is recorded (``cli_authenticated``, with the operating-system account).

Without credentials the command line acts only in an explicit maintenance mode: the
``--maintenance`` flag, allowed only when the setting ``QMS_CLI_MAINTENANCE=1`` is on. It is
recorded (``cli_maintenance``), and every audit event the run writes carries
"maintenance mode ... OS user NAME" in its reason (the unit of work's attribution,
:func:`workflow.db.uow.attributed`), so the trail never silently blames the named user.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from workflow import clock
from workflow import config as qms_config
from workflow.audit import trail as audit
from workflow.db.uow import Units
from workflow.errors import CliActingRefused
from workflow.identity import sessions
from workflow.identity import users as identity
from workflow.identity.policy import Policy


@dataclass(frozen=True)
class Acting:
    """Who a command-line run acts as and how that was established."""

    username: str | None  # None: the system account (maintenance mode without --as)
    #: appended to the reason of every audit event the run writes
    attribution: str
    maintenance: bool = False


def authenticate(
    engine: Units,
    username: str,
    password: str,
    ask_code: Callable[[], str],
    *,
    os_user: str,
    command: str,
    policy: Policy | None = None,
) -> Acting:
    """Check ``username``'s password (and, when the account has an authenticator, the code
    ``ask_code()`` returns) like a login does; record ``cli_authenticated``.

    Raises:
        LoginFailed, AccountLocked, SecondFactorFailed, TamperedData: as at login (counted).
        CliActingRefused: the account must first change its password or enrol an
            authenticator (in the web application).
    """
    policy = policy or Policy.from_settings()
    checked = sessions.check_login_password(engine, username, password, policy)
    if checked.must_change_password:
        raise CliActingRefused(
            f"{checked.username} must change their password first (log in "
            "to the web application); nothing was done."
        )
    if checked.needs_enrolment:
        raise CliActingRefused(
            f"{checked.username} must enrol an authenticator first (log "
            "in to the web application); nothing was done."
        )
    mfa = False
    if checked.needs_totp:
        # the login's server-side second step, opened by the password check above
        sessions.check_login_totp(engine, checked.challenge or "", ask_code(), policy)
        mfa = True
    with engine.unit() as s:
        user = identity.get_user(s, checked.username)
        user.failed_attempts = 0
        audit.system_event(
            s,
            at=clock.now(),
            actor=user,
            action="cli_authenticated",
            changes={"username": user.username, "mfa": mfa, "os_user": os_user, "command": command},
        )
    return Acting(checked.username, f"qms CLI, OS user {os_user}")


def maintenance(
    engine: Units,
    username: str | None,
    *,
    os_user: str,
    command: str,
    settings: qms_config.Settings | None = None,
) -> Acting:
    """Act as ``username`` (or the system account) without credentials: only when
    ``QMS_CLI_MAINTENANCE=1``; recorded (``cli_maintenance``) and attributed on every event.

    Raises:
        CliActingRefused: maintenance mode is off.
        UnknownUser: ``username`` does not exist.
    """
    s_ = settings if settings is not None else qms_config.settings()
    if not s_.cli_maintenance:
        raise CliActingRefused(
            "--maintenance is refused: maintenance mode is off "
            "(QMS_CLI_MAINTENANCE=1 turns it on for a documented "
            "maintenance window); give the user's password instead."
        )
    attribution = f"maintenance mode, no credentials checked; qms CLI, OS user {os_user}"
    with engine.unit() as s:
        user = identity.get_user(s, username) if username else None
        audit.system_event(
            s,
            at=clock.now(),
            actor=user,
            action="cli_maintenance",
            changes={"username": user.username if user else None, "os_user": os_user, "command": command},
            reason=f"[{attribution}]",
        )
    return Acting(username, attribution, maintenance=True)
