"""Credentials and Part 11 electronic-signature rules.

* Passwords: argon2id (argon2-cffi); policy: minimum length, not containing the username,
  not among 20,000 common passwords, no reuse of the last N, expiry (R-P11-300b-1).
* Lockout: N consecutive failures (login *or* signing) lock the account until an
  administrator unlocks it; every failure, lock and unlock is a security event in the system
  audit chain (R-P11-300d-1/2). Failures are recorded in their own transaction, after the
  refused business change has rolled back.
* TOTP (pyotp): enrolment confirmed by a code; a code is accepted once (replay refused);
  one-time recovery codes stored hashed; secrets encrypted with a key derived from the
  server key; per-role policy can require it (R-P11-300e-1).
* Sessions: server-side rows; idle timeout and absolute lifetime end them (R-P11-200-2).
* :class:`Part11Verifier`: the engine's credential verifier. The first signing in a
  continuous session needs every component (username, password, TOTP where enrolled or
  required); later signings in that session need the password; without a live session every
  signing needs every component (§11.200(a)(1)). The signer must be the logged-in user.

Functions taking a ``session`` only flush; those taking an ``engine`` run their own unit.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from workflow import clock
from workflow.audit import trail as audit
from workflow.db.models import OutboxMessage, PasswordHistory, RecoveryCode, User, UserSession
from workflow.errors import (
    AccountLocked,
    CredentialsRejected,
    InactiveUser,
    SignatureRejected,
    WorkflowError,
)
from workflow.identity import users as identity
from workflow.signatures.mac import VerifiedSigner, VouchedSignature

if TYPE_CHECKING:
    from workflow.engine.core import Engine

COMMON_PASSWORDS = Path(__file__).resolve().parents[1] / "data" / "common-passwords.txt.gz"
_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters


def use_fast_hashing_for_tests() -> None:
    """Cheaper argon2 parameters (tests only: hundreds of hashes per run). Verification reads
    the parameters from each stored hash, so both kinds verify."""
    global _hasher
    _hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


# --------------------------------------------------------------------------- policy


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"{name} must be a whole number, not {raw!r}") from None


@dataclass(frozen=True)
class Policy:
    """Security policy; every value can be set by a ``QMS_`` environment variable."""

    min_length: int = 12
    history: int = 5
    max_age_days: int = 90  # 0 disables expiry
    lockout_threshold: int = 5
    idle_minutes: int = 15
    session_hours: int = 12
    totp_required_roles: tuple[str, ...] = ("qa", "admin")
    totp_issuer: str = "QMS"
    security_role: str = "admin"  # who is notified of lockouts

    @classmethod
    def from_env(cls) -> Policy:
        roles = os.environ.get("QMS_TOTP_REQUIRED_ROLES")
        return cls(
            min_length=_env_int("QMS_PASSWORD_MIN_LENGTH", 12),
            history=_env_int("QMS_PASSWORD_HISTORY", 5),
            max_age_days=_env_int("QMS_PASSWORD_MAX_AGE_DAYS", 90),
            lockout_threshold=_env_int("QMS_LOCKOUT_THRESHOLD", 5),
            idle_minutes=_env_int("QMS_SESSION_IDLE_MINUTES", 15),
            session_hours=_env_int("QMS_SESSION_MAX_HOURS", 12),
            totp_required_roles=tuple(r.strip() for r in roles.split(",") if r.strip())
            if roles is not None else ("qa", "admin"),
            totp_issuer=os.environ.get("QMS_TOTP_ISSUER", "QMS"),
            security_role=os.environ.get("QMS_SECURITY_ROLE", "admin"),
        )


# --------------------------------------------------------------------------- errors


class AuthError(WorkflowError):
    code = "auth_failed"


class LoginFailed(AuthError):
    """Deliberately vague: it does not tell whether the username exists."""

    code = "login_failed"

    def __init__(self) -> None:
        super().__init__("Unknown username or wrong password.")


class PasswordExpired(AuthError):
    code = "password_expired"

    def __init__(self) -> None:
        super().__init__("Your password has expired (or was set by an administrator); "
                         "choose a new one before you continue.")


class PasswordRejected(AuthError):
    code = "password_rejected"

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("The new password is not accepted: " + "; ".join(problems) + ".")


class SecondFactorFailed(AuthError):
    code = "second_factor_failed"

    def __init__(self, message: str = "The authentication code is wrong, expired or was "
                                      "already used."):
        super().__init__(message)


class SessionEnded(AuthError):
    code = "session_ended"

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__({"idle": "Your session timed out after inactivity; log in again.",
                          "lifetime": "Your session reached its maximum length; log in again.",
                          "logout": "You are logged out.",
                          }.get(reason, "Your session has ended; log in again."))


# --------------------------------------------------------------------------- passwords


@cache
def _common_passwords() -> frozenset[str]:
    with gzip.open(COMMON_PASSWORDS, "rt", encoding="utf-8") as fh:
        return frozenset(line.strip().lower() for line in fh if line.strip())


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def password_matches(stored: str | None, password: str) -> bool:
    if not stored:
        return False
    try:
        return _hasher.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def policy_problems(session: Session, user: User, password: str, policy: Policy) -> list[str]:
    problems = []
    if len(password) < policy.min_length:
        problems.append(f"it must have at least {policy.min_length} characters")
    if user.username.lower() in password.lower():
        problems.append("it must not contain your username")
    if password.lower() in _common_passwords() or password.strip().lower() in _common_passwords():
        problems.append("it is one of the most commonly used passwords")
    if policy.history and password_matches(user.password_hash, password):
        problems.append(f"it must differ from your last {policy.history} passwords")
    elif policy.history:
        old = session.execute(
            select(PasswordHistory.password_hash).where(PasswordHistory.user_id == user.id)
            .order_by(PasswordHistory.id.desc()).limit(policy.history - 1)  # + the current one
        ).scalars()
        if any(password_matches(h, password) for h in old):
            problems.append(f"it must differ from your last {policy.history} passwords")
    return problems


def set_password(session: Session, user: User, password: str, *, actor: User, policy: Policy,
                 reason: str = "", temporary: bool = False) -> None:
    """Set a password after checking the policy. An administrator's ``temporary`` password
    must be changed at next login (R-P11-200-4). Audited; the password itself never is."""
    problems = policy_problems(session, user, password, policy)
    if problems:
        raise PasswordRejected(problems)
    now = clock.now()
    if user.password_hash:
        session.add(PasswordHistory(user_id=user.id, password_hash=user.password_hash, set_at=now))
    user.password_hash = hash_password(password)
    user.password_changed_at = now
    user.must_change_password = temporary
    audit.system_event(session, at=now, actor=actor,
                       action="password_reset" if actor.id != user.id else "password_changed",
                       changes={"username": user.username, "must_change_password": temporary},
                       reason=reason or None)


def password_expired(user: User, policy: Policy) -> bool:
    if user.must_change_password:
        return True
    if not policy.max_age_days or user.password_changed_at is None:
        return False
    return clock.now() - user.password_changed_at > timedelta(days=policy.max_age_days)


# --------------------------------------------------------------------------- TOTP


def _totp_key(server_key: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=b"qms totp secret v1").derive(server_key)


def _encrypt(server_key: bytes, secret: str) -> str:
    nonce = secrets.token_bytes(12)
    ct = AESGCM(_totp_key(server_key)).encrypt(nonce, secret.encode(), b"totp")
    return "v1:" + base64.b64encode(nonce + ct).decode()


def _decrypt(server_key: bytes, blob: str) -> str:
    raw = base64.b64decode(blob.removeprefix("v1:"))
    return AESGCM(_totp_key(server_key)).decrypt(raw[:12], raw[12:], b"totp").decode()


def totp_required(session: Session, user: User, policy: Policy) -> bool:
    return bool(identity.roles_of(session, user) & set(policy.totp_required_roles))


def totp_enrolled(user: User) -> bool:
    return user.totp_enabled_at is not None and user.totp_secret is not None


def _recovery_hash(server_key: bytes, code: str) -> str:
    norm = code.replace("-", "").replace(" ", "").lower()
    return hmac.new(server_key, b"recovery:" + norm.encode(), hashlib.sha256).hexdigest()


def check_second_factor(session: Session, user: User, code: str | None, server_key: bytes) -> str:
    """Accept a current TOTP code (once: replays within its window are refused) or an unused
    recovery code. Returns "totp" or "recovery"; raises SecondFactorFailed."""
    code = (code or "").strip().replace(" ", "")
    if not code or not totp_enrolled(user):
        raise SecondFactorFailed("An authentication code is required." if not code else
                                 "No authenticator is enrolled for this account.")
    if code.isdigit() and len(code) == 6:
        totp = pyotp.TOTP(_decrypt(server_key, user.totp_secret or ""))
        now = clock.now()
        step = totp.timecode(now)
        for offset in (0, -1, 1):
            if hmac.compare_digest(totp.generate_otp(step + offset), code):
                if user.totp_last_step is not None and step + offset <= user.totp_last_step:
                    raise SecondFactorFailed("This authentication code was already used; wait "
                                             "for the next one.")
                user.totp_last_step = step + offset
                return "totp"
        raise SecondFactorFailed()
    digest = _recovery_hash(server_key, code)
    row = session.execute(
        select(RecoveryCode).where(RecoveryCode.user_id == user.id,
                                   RecoveryCode.code_hash == digest,
                                   RecoveryCode.used_at.is_(None))
    ).scalar_one_or_none()
    if row is None:
        raise SecondFactorFailed()
    row.used_at = clock.now()
    audit.system_event(session, at=clock.now(), actor=user, action="recovery_code_used",
                       changes={"username": user.username})
    return "recovery"


@dataclass(frozen=True)
class Enrolment:
    secret: str
    uri: str

    def qr_svg(self) -> str:
        """The provisioning URI as an inline SVG QR code (segno)."""
        import io

        import segno

        buf = io.BytesIO()
        segno.make(self.uri, error="m").save(buf, kind="svg", scale=5, border=2,
                                             xmldecl=False, svgns=True)
        return buf.getvalue().decode()


def begin_totp_enrolment(engine: Engine, username: str, policy: Policy | None = None) -> Enrolment:
    """Store a new (not yet active) secret; the user confirms it with a code."""
    policy = policy or Policy.from_env()
    with engine.unit() as session:
        user = identity.get_user(session, username)
        if totp_enrolled(user):
            raise WorkflowError("An authenticator is already enrolled for this account; an "
                                "administrator must reset it before a new one is enrolled.")
        secret = pyotp.random_base32()
        user.totp_secret = _encrypt(engine.signing_key, secret)
        user.totp_enabled_at = None
        user.totp_last_step = None
        uri = pyotp.TOTP(secret).provisioning_uri(name=user.username,
                                                  issuer_name=policy.totp_issuer)
        return Enrolment(secret=secret, uri=uri)


def pending_enrolment(engine: Engine, username: str, policy: Policy | None = None
                      ) -> Enrolment | None:
    """The enrolment begun but not confirmed yet (to show the same QR code again)."""
    policy = policy or Policy.from_env()
    with engine.reader() as session:
        user = identity.get_user(session, username)
        if user.totp_secret is None or user.totp_enabled_at is not None:
            return None
        secret = _decrypt(engine.signing_key, user.totp_secret)
        return Enrolment(secret, pyotp.TOTP(secret).provisioning_uri(
            name=user.username, issuer_name=policy.totp_issuer))


def confirm_totp_enrolment(engine: Engine, username: str, code: str) -> list[str]:
    """Activate the pending secret with a correct code; returns 10 one-time recovery codes
    (shown once, stored hashed)."""
    with engine.unit() as session:
        user = identity.get_user(session, username)
        if user.totp_secret is None:
            raise SecondFactorFailed("Start the enrolment first.")
        totp = pyotp.TOTP(_decrypt(engine.signing_key, user.totp_secret))
        step = totp.timecode(clock.now())
        matched = [step + o for o in (0, -1, 1)
                   if hmac.compare_digest(totp.generate_otp(step + o), (code or "").strip())]
        if not matched:
            raise SecondFactorFailed("The code does not match; check the time on your device "
                                     "and try the current code.")
        now = clock.now()
        user.totp_enabled_at = now
        user.totp_last_step = matched[0]  # the confirming code is spent
        session.execute(update(RecoveryCode.__table__)
                        .where(RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None))
                        .values(used_at=now))
        codes = [f"{secrets.token_hex(2)}-{secrets.token_hex(2)}-{secrets.token_hex(2)}"
                 for _ in range(10)]
        for c in codes:
            session.add(RecoveryCode(user_id=user.id, code_hash=_recovery_hash(engine.signing_key, c),
                                     created_at=now))
        audit.system_event(session, at=now, actor=user, action="totp_enrolled",
                           changes={"username": user.username})
        return codes


# --------------------------------------------------------------------------- failures, lockout


def _record_failure(session: Session, user: User | None, *, action: str, detail: str,
                    policy: Policy, attempted: str = "") -> bool:
    """Count one failed attempt; lock at the threshold. Returns True when this locked it."""
    now = clock.now()
    audit.system_event(session, at=now, actor=user,
                       action=action,
                       changes={"username": user.username if user else attempted,
                                "detail": detail,
                                "failed_attempts": (user.failed_attempts + 1) if user else None})
    if user is None:
        return False
    user.failed_attempts += 1
    if user.locked_at is None and policy.lockout_threshold and \
            user.failed_attempts >= policy.lockout_threshold:
        user.locked_at = now
        audit.system_event(session, at=now, actor=user, action="account_locked",
                           changes={"username": user.username,
                                    "failed_attempts": user.failed_attempts})
        session.add(OutboxMessage(created_at=now, record_id=None,
                                  recipient_role=policy.security_role, recipient_user_id=None,
                                  subject=f"account {user.username} locked",
                                  body=f"{user.full_name} ({user.username}) was locked after "
                                       f"{user.failed_attempts} failed attempts ({detail}).",
                                  status="pending", attempts=0, kind="account_locked"))
        return True
    return False


def unlock(engine: Engine, username: str, *, actor: str, reason: str) -> None:
    if not reason.strip():
        raise WorkflowError("A reason is required to unlock an account.")
    with engine.unit() as session:
        user = identity.get_user(session, username, active=False)
        admin = identity.get_user(session, actor)
        if user.locked_at is None and user.failed_attempts == 0:
            raise WorkflowError(f"{user.username} is not locked.")
        user.locked_at = None
        user.failed_attempts = 0
        audit.system_event(session, at=clock.now(), actor=admin, action="account_unlocked",
                           changes={"username": user.username}, reason=reason)


def reset_totp(engine: Engine, username: str, *, actor: str, reason: str) -> None:
    """Revoke a lost or compromised authenticator at once (R-P11-300c-1)."""
    if not reason.strip():
        raise WorkflowError("A reason is required to reset a user's authenticator.")
    with engine.unit() as session:
        user = identity.get_user(session, username, active=False)
        admin = identity.get_user(session, actor)
        now = clock.now()
        user.totp_secret = None
        user.totp_enabled_at = None
        user.totp_last_step = None
        session.execute(update(RecoveryCode.__table__)
                        .where(RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None))
                        .values(used_at=now))
        audit.system_event(session, at=now, actor=admin, action="totp_reset",
                           changes={"username": user.username}, reason=reason)


# --------------------------------------------------------------------------- login, sessions


@dataclass(frozen=True)
class PasswordChecked:
    """Password accepted; what the login still needs before a session starts."""

    user_id: int
    username: str
    needs_totp: bool  # enrolled: enter a code
    needs_enrolment: bool  # required by role policy but not enrolled yet
    must_change_password: bool


def check_login_password(engine: Engine, username: str, password: str,
                         policy: Policy | None = None) -> PasswordChecked:
    """First login step. A failure is recorded (and may lock the account) before raising."""
    policy = policy or Policy.from_env()
    failure: AuthError | None = None
    with engine.unit() as session:
        user = identity.find_user(session, username.strip())
        if user is None or user.is_system:
            _record_failure(session, None, action="login_failed", detail="unknown username",
                            policy=policy, attempted=username.strip()[:64])
            failure = LoginFailed()
        elif not user.active:
            _record_failure(session, user, action="login_failed", detail="deactivated account",
                            policy=policy)
            failure = LoginFailed()
        elif user.locked_at is not None:
            _record_failure(session, user, action="login_failed", detail="account locked",
                            policy=policy)
            failure = AccountLocked(user.username)
        elif not password_matches(user.password_hash, password):
            locked = _record_failure(session, user, action="login_failed",
                                     detail="wrong password", policy=policy)
            failure = AccountLocked(user.username) if locked else LoginFailed()
        else:
            return PasswordChecked(
                user_id=user.id, username=user.username,
                needs_totp=totp_enrolled(user),
                needs_enrolment=not totp_enrolled(user) and totp_required(session, user, policy),
                must_change_password=password_expired(user, policy))
    raise failure


def check_login_totp(engine: Engine, user_id: int, code: str, policy: Policy | None = None) -> str:
    """Second login step; a wrong or replayed code counts toward lockout."""
    policy = policy or Policy.from_env()
    failure: AuthError | None = None
    with engine.unit() as session:
        user = session.get(User, user_id)
        if user is None or not user.active or user.locked_at is not None:
            raise LoginFailed()
        try:
            return check_second_factor(session, user, code, engine.signing_key)
        except SecondFactorFailed as exc:
            locked = _record_failure(session, user, action="login_failed",
                                     detail="wrong authentication code", policy=policy)
            failure = AccountLocked(user.username) if locked else exc
    raise failure


def start_session(engine: Engine, user_id: int, *, mfa: bool, client: str = "") -> str:
    """Open a server-side session after a complete login; returns the secret token."""
    token = secrets.token_urlsafe(32)
    with engine.unit() as session:
        user = session.get(User, user_id)
        if user is None or not user.active or user.locked_at is not None:
            raise LoginFailed()
        now = clock.now()
        user.failed_attempts = 0
        session.add(UserSession(token_hash=_token_hash(token), user_id=user.id, created_at=now,
                                last_seen_at=now, mfa_at=now if mfa else None,
                                client=client[:200]))
        audit.system_event(session, at=now, actor=user, action="login",
                           changes={"username": user.username, "mfa": mfa, "client": client[:200]})
    return token


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass
class SessionInfo:
    id: int
    user_id: int
    username: str
    created_at: datetime
    last_seen_at: datetime
    signed_before: bool
    roles: set[str] = field(default_factory=set)


def _live_session(session: Session, token: str, policy: Policy) -> UserSession:
    row = session.execute(
        select(UserSession).where(UserSession.token_hash == _token_hash(token))
    ).scalar_one_or_none()
    if row is None:
        raise SessionEnded("unknown")
    if row.ended_at is not None:
        raise SessionEnded(row.end_reason or "ended")
    now = clock.now()
    reason = None
    if now - row.last_seen_at > timedelta(minutes=policy.idle_minutes):
        reason = "idle"
    elif now - row.created_at > timedelta(hours=policy.session_hours):
        reason = "lifetime"
    if reason:
        row.ended_at = now
        row.end_reason = reason
        session.flush()
        raise SessionEnded(reason)
    return row


def touch_session(engine: Engine, token: str, policy: Policy | None = None) -> SessionInfo:
    """Validate a session on each request and record the activity; raises SessionEnded
    (after ending it server-side) on idle timeout or past its lifetime."""
    policy = policy or Policy.from_env()
    ended: SessionEnded | None = None
    with engine.unit() as session:
        try:
            row = _live_session(session, token, policy)
        except SessionEnded as exc:
            ended = exc
        else:
            user = session.get(User, row.user_id)
            if user is None or not user.active or user.locked_at is not None:
                row.ended_at = clock.now()
                row.end_reason = "account disabled"
                ended = SessionEnded("account disabled")
            else:
                row.last_seen_at = clock.now()
                return SessionInfo(row.id, user.id, user.username, row.created_at,
                                   row.last_seen_at, row.first_signed_at is not None,
                                   identity.roles_of(session, user))
    raise ended


def end_session(engine: Engine, token: str, reason: str = "logout") -> None:
    with engine.unit() as session:
        row = session.execute(
            select(UserSession).where(UserSession.token_hash == _token_hash(token))
        ).scalar_one_or_none()
        if row is None or row.ended_at is not None:
            return
        row.ended_at = clock.now()
        row.end_reason = reason
        user = session.get(User, row.user_id)
        audit.system_event(session, at=row.ended_at, actor=user, action="logout",
                           changes={"username": user.username if user else None,
                                    "reason": reason})


def change_password(engine: Engine, username: str, old: str, new: str,
                    policy: Policy | None = None) -> None:
    """The user changes their own password (also the forced change after expiry)."""
    policy = policy or Policy.from_env()
    failure: AuthError | None = None
    with engine.unit() as session:
        user = identity.get_user(session, username)
        if user.locked_at is not None:
            raise AccountLocked(user.username)
        if not password_matches(user.password_hash, old):
            locked = _record_failure(session, user, action="password_change_failed",
                                     detail="wrong current password", policy=policy)
            failure = AccountLocked(user.username) if locked else LoginFailed()
        else:
            set_password(session, user, new, actor=user, policy=policy,
                         reason="changed by the user")
            return
    raise failure


# --------------------------------------------------------------------------- signatures


@dataclass(frozen=True)
class PasswordSignature:
    """What a person types into the signature dialog.

    Args:
        username: typed by the signer; must be the logged-in user.
        password: always required.
        totp: the authenticator code, required on the first signing of a session (or of
            every signing without a session) when the signer is enrolled or policy requires.
        session_token: the signer's login session, if signing in one (the web UI); the API
            signs without one, so every component is needed each time.
    """

    username: str
    password: str
    totp: str | None = None
    session_token: str | None = None

    def __repr__(self) -> str:  # never print the password
        return f"PasswordSignature(username={self.username!r}, totp={'***' if self.totp else None})"


class Part11Verifier:
    """The engine's credential verifier for 21 CFR Part 11 §11.200 / Annex 11 §14."""

    def __init__(self, server_key: bytes, policy: Policy | None = None,
                 allow_vouched: bool = False) -> None:
        self.server_key = server_key
        self.policy = policy or Policy.from_env()
        #: only for seeding demo data: accept VouchedSignature (never in the web or API)
        self.allow_vouched = allow_vouched

    def verify(self, session: Session, signature: Any, actor: User) -> VerifiedSigner:
        if isinstance(signature, VouchedSignature):
            if not self.allow_vouched:
                raise SignatureRejected("A signature needs the signer's own credentials.")
            user = identity.get_user(session, signature.username)
            return VerifiedSigner(user, signature.method)
        if not isinstance(signature, PasswordSignature):
            raise SignatureRejected("A signature needs your username and password.")
        typed = (signature.username or "").strip().lower()
        if typed != actor.username:
            raise CredentialsRejected(
                "The username typed is not yours: you can only sign as yourself.",
                user_id=actor.id, detail=f"typed username {typed[:64]!r}")
        user = actor
        if not user.active:
            raise InactiveUser(user.username)
        if user.locked_at is not None:
            raise AccountLocked(user.username)
        if password_expired(user, self.policy):
            raise PasswordExpired()
        live: UserSession | None = None
        if signature.session_token:
            try:
                live = _live_session(session, signature.session_token, self.policy)
            except SessionEnded as exc:
                raise SignatureRejected(exc.message) from None
            if live.user_id != user.id:
                raise SignatureRejected("This session belongs to someone else.")
        if not password_matches(user.password_hash, signature.password or ""):
            raise CredentialsRejected("The password is wrong; nothing was signed.",
                                      user_id=user.id, detail="wrong password")
        first = live is None or live.first_signed_at is None
        needs_code = first and (totp_enrolled(user) or totp_required(session, user, self.policy))
        method = "password"
        if needs_code:
            if not totp_enrolled(user):
                raise SignatureRejected("Your role requires an authenticator app; enrol one "
                                        "before signing.")
            try:
                kind = check_second_factor(session, user, signature.totp, self.server_key)
            except SecondFactorFailed as exc:
                raise CredentialsRejected(exc.message + " Nothing was signed.",
                                          user_id=user.id, detail="wrong code") from None
            method = f"password+{kind}"
        if live is not None:
            now = clock.now()
            if live.first_signed_at is None:
                live.first_signed_at = now
            live.last_seen_at = now
            method += " (session)" if not first else ""
        user.failed_attempts = 0
        return VerifiedSigner(user, method)

    def record_failure(self, session: Session, exc: CredentialsRejected) -> bool:
        """Called by the engine in a fresh transaction after the refused signing rolled back."""
        user = session.get(User, exc.user_id) if exc.user_id else None
        return _record_failure(session, user, action="signature_failed", detail=exc.detail,
                               policy=self.policy)
