"""TOTP (pyotp): enrolment confirmed by a code; a code is accepted once (replay refused);
one-time recovery codes stored hashed; secrets encrypted with a key derived from the
server key; per-role policy can require it (R-P11-300e-1).

Functions taking a ``session`` only flush; those taking an ``engine`` run their own unit.
"""

from __future__ import annotations

import base64
import hmac
import secrets
from dataclasses import dataclass

import pyotp
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import update
from sqlalchemy.orm import Session

from workflow import clock
from workflow.audit import trail as audit
from workflow.db.models import RecoveryCode, User
from workflow.db.uow import Units
from workflow.errors import SecondFactorFailed, WorkflowError
from workflow.identity import tokens as api_tokens
from workflow.identity import users as identity
from workflow.identity.policy import Policy
from workflow.keyring import LEGACY_ID, Key, as_ring

# --------------------------------------------------------------------------- secrets


def _totp_key(server_key: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=b"qms totp secret v1").derive(server_key)


def _encrypt(server_key: Key, secret: str) -> str:
    """The secret encrypted (AES-GCM) under a key derived from the current server key, tagged
    with that key's id: ``v2:<key id>:<base64>`` (so it still decrypts after a rotation)."""
    ring = as_ring(server_key)
    nonce = secrets.token_bytes(12)
    ct = AESGCM(_totp_key(ring.current_key)).encrypt(nonce, secret.encode(), b"totp")
    return f"v2:{ring.current_id}:" + base64.b64encode(nonce + ct).decode()


def _decrypt(server_key: Key, blob: str) -> str:
    """Decrypt with the key the blob names (``v1:``, written before key ids: ``k1``)."""
    ring = as_ring(server_key)
    if blob.startswith("v2:"):
        key_id, _, body = blob[3:].partition(":")
    else:
        key_id, body = LEGACY_ID, blob.removeprefix("v1:")
    key = ring.key(key_id)
    if key is None:
        raise SecondFactorFailed(f"The authenticator secret was encrypted with server key "
                                 f"{key_id}, which this server does not hold; an administrator "
                                 "must reset the authenticator.")
    raw = base64.b64decode(body)
    return AESGCM(_totp_key(key)).decrypt(raw[:12], raw[12:], b"totp").decode()


def _norm_code(code: str) -> bytes:
    return b"recovery:" + code.replace("-", "").replace(" ", "").lower().encode()


def _recovery_hash(server_key: Key, code: str) -> str:
    """A recovery code's keyed hash under the current server key (id-tagged)."""
    return as_ring(server_key).sign(_norm_code(code))


def _recovery_candidates(server_key: Key, code: str) -> list[str]:
    """Every keyed hash a recovery code may be stored under (each held key, legacy hex)."""
    return as_ring(server_key).candidates(_norm_code(code))


# --------------------------------------------------------------------------- checks


def totp_required(session: Session, user: User, policy: Policy) -> bool:
    return bool(identity.roles_of(session, user) & set(policy.totp_required_roles))


def totp_enrolled(user: User) -> bool:
    return user.totp_enabled_at is not None and user.totp_secret is not None


def check_second_factor(session: Session, user: User, code: str | None, server_key: Key) -> str:
    """Accept a current TOTP code (once: replays within its window are refused) or an unused
    recovery code. Returns "totp" or "recovery"; raises SecondFactorFailed.

    ``user`` must have been read with its row locked (:func:`identity.lock_user`): the last
    accepted TOTP step is then decided by one transaction at a time, so one code is accepted
    once however many requests carry it at the same moment."""
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
    # one conditional UPDATE: of parallel requests with one code, exactly one changes the row
    # (the others find it used), whatever the isolation level (issue 14 item 3)
    spent = session.execute(
        update(RecoveryCode.__table__)
        .where(RecoveryCode.user_id == user.id,
               RecoveryCode.code_hash.in_(_recovery_candidates(server_key, code)),
               RecoveryCode.used_at.is_(None))
        .values(used_at=clock.now()))
    if spent.rowcount != 1:  # type: ignore[attr-defined]
        raise SecondFactorFailed()
    audit.system_event(session, at=clock.now(), actor=user, action="recovery_code_used",
                       changes={"username": user.username})
    return "recovery"


# --------------------------------------------------------------------------- enrolment


@dataclass(frozen=True)
class Enrolment:
    """A begun enrolment: the secret to type in and the provisioning URI (for a QR code)."""

    secret: str
    uri: str


def begin_totp_enrolment(engine: Units, username: str, policy: Policy | None = None) -> Enrolment:
    """Store a new (not yet active) secret; the user confirms it with a code."""
    policy = policy or Policy.from_settings()
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


def pending_enrolment(engine: Units, username: str, policy: Policy | None = None
                      ) -> Enrolment | None:
    """The enrolment begun but not confirmed yet (to show the same QR code again)."""
    policy = policy or Policy.from_settings()
    with engine.reader() as session:
        user = identity.get_user(session, username)
        if user.totp_secret is None or user.totp_enabled_at is not None:
            return None
        secret = _decrypt(engine.signing_key, user.totp_secret)
        return Enrolment(secret, pyotp.TOTP(secret).provisioning_uri(
            name=user.username, issuer_name=policy.totp_issuer))


def confirm_totp_enrolment(engine: Units, username: str, code: str) -> list[str]:
    """Activate the pending secret with a correct code; returns 10 one-time recovery codes
    (shown once, stored hashed)."""
    with engine.unit() as session:
        user = identity.get_user(session, username)
        identity.lock_user(session, user)  # row before chain head, as a login does
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


def reset_totp(engine: Units, username: str, *, actor: str, reason: str) -> None:
    """Revoke a lost or compromised authenticator at once (R-P11-300c-1)."""
    if not reason.strip():
        raise WorkflowError("A reason is required to reset a user's authenticator.")
    with engine.unit() as session:
        user = identity.get_user(session, username, active=False)
        admin = identity.get_user(session, actor)
        identity.lock_user(session, user)  # row before chain head, as a login does
        now = clock.now()
        user.totp_secret = None
        user.totp_enabled_at = None
        user.totp_last_step = None
        session.execute(update(RecoveryCode.__table__)
                        .where(RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None))
                        .values(used_at=now))
        audit.system_event(session, at=now, actor=admin, action="totp_reset",
                           changes={"username": user.username}, reason=reason)
        # whoever holds the lost device may be logged in or have made tokens: their access
        # ends, and the tokens wait for the user's confirmation (issue 14 item 1)
        identity.end_sessions(session, user, reason="authenticator reset", actor=admin,
                              why=reason)
        api_tokens.suspend_tokens(session, user, actor=admin,
                                  reason="authenticator reset by an administrator")
