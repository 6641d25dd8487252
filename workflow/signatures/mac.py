"""Electronic signatures: the interface the engine signs through, and record linking.

The engine never checks passwords itself. It hands the caller's :class:`SignatureInput`
to a :class:`CredentialVerifier`, which returns the signer and how they were
authenticated. :class:`VouchedSignature` is for callers that already checked the
credentials (the caller vouches for it); :mod:`workflow.signatures.part11` provides the
verifier that checks password and TOTP (Part 11 §11.200).

Linking (§11.70): each signature stores the hash of the record content it signed and an
HMAC over its own fields plus that hash, keyed by a server secret kept outside the database,
so a signature row copied to another record or edited no longer verifies.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from workflow import config
from workflow.db.models import User
from workflow.errors import InactiveUser, SignatureRejected
from workflow.keyring import KeyRing
from workflow.signatures.keys import key_provider

log = logging.getLogger(__name__)


class SignatureInput(Protocol):
    """What a caller passes as ``signature=`` to ``Engine.fire``."""

    username: str


@dataclass(frozen=True)
class VouchedSignature:
    """The caller has verified the signer's credentials itself and vouches for them."""

    username: str
    method: str = "vouched"


@dataclass(frozen=True)
class VerifiedSigner:
    user: User
    method: str


class CredentialVerifier(Protocol):
    def verify(self, session: Session, signature: Any, actor: User) -> VerifiedSigner:
        """Return the authenticated signer or raise SignatureRejected (never return None)."""
        ...


class VouchingVerifier:
    """Accepts only :class:`VouchedSignature`; checks the account exists and is active."""

    def verify(self, session: Session, signature: Any, actor: User) -> VerifiedSigner:
        if not isinstance(signature, VouchedSignature):
            raise SignatureRejected(
                f"This engine accepts only vouched signatures, not {type(signature).__name__}."
            )
        name = signature.username.strip().lower()
        # the signer is nearly always the actor, already loaded in this unit
        user = actor if name == actor.username else session.execute(
            select(User).where(User.username == name)).scalar_one_or_none()
        if user is None:
            raise SignatureRejected(f"Unknown signer {signature.username!r}.")
        if not user.active:
            raise InactiveUser(user.username)
        return VerifiedSigner(user=user, method=signature.method)


# --------------------------------------------------------------------------- key and MAC


def load_signing_key(settings: config.Settings | None = None) -> KeyRing:
    """The server keys by id for signature MACs, audit hashes and seals, from the key provider
    (workflow/signatures/keys.py): QMS_SIGNATURE_KEY (hex, the key ``k1``), the key file
    (QMS_SIGNATURE_KEY_FILE, default instance/signature.key, created with a random key on
    first use) or the provider QMS_KEY_PROVIDER names. The keys must be backed up with, but
    stored apart from, the database."""
    return key_provider(settings).hmac_keys()
