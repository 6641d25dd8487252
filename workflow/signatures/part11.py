"""The Part 11 credential verifier: the engine's :class:`CredentialVerifier` for people.

The first signing in a continuous session needs every component (username, password, TOTP
where enrolled or required); later signings in that session need the password; without a
live session every signing needs every component (§11.200(a)(1)). The signer must be the
logged-in user. Wrong credentials raise :class:`CredentialsRejected`; the engine then calls
:meth:`Part11Verifier.record_failure` so they count toward lockout.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from workflow import clock
from workflow.db.models import User, UserSession
from workflow.errors import (
    CredentialsRejected,
    InactiveUser,
    PasswordExpired,
    SecondFactorFailed,
    SessionEnded,
    SignatureRejected,
)
from workflow.identity import users as identity
from workflow.identity.lockout import is_locked, lift_lapsed, locked_error, record_failure
from workflow.identity.passwords import password_expired, password_matches
from workflow.identity.policy import Policy
from workflow.identity.sessions import live_session
from workflow.identity.totp import check_second_factor, totp_enrolled, totp_required
from workflow.keyring import Key
from workflow.signatures.mac import VerifiedSigner, VouchedSignature


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

    def __init__(self, server_key: Key, policy: Policy | None = None,
                 allow_vouched: bool = False) -> None:
        self.server_key = server_key
        self.policy = policy or Policy.from_settings()
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
        # the signer's row locked for the rest of the signing: the failure counter and the
        # last TOTP step are decided one signing at a time (issue 14 item 3)
        user = identity.lock_user(session, actor) or actor
        if not user.active:
            raise InactiveUser(user.username)
        lift_lapsed(session, user)
        if is_locked(user):
            raise locked_error(user)
        if password_expired(user, self.policy):
            raise PasswordExpired()
        live: UserSession | None = None
        if signature.session_token:
            try:
                live = live_session(session, signature.session_token, self.policy)
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
            if not (signature.totp or "").strip():
                # an empty field is no attempt: asked for, not counted toward lockout
                raise SignatureRejected("Enter the authentication code from your app; "
                                        "nothing was signed.")
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
        user = identity.lock_user(session, exc.user_id) if exc.user_id else None
        return record_failure(session, user, action="signature_failed", detail=exc.detail,
                              policy=self.policy)
