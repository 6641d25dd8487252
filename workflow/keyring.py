"""Keys by id: the HMAC server keys (:class:`KeyRing`) and the Ed25519 anchor keys
(:class:`AnchorKeys`), so a key can be rotated while everything made with an older key stays
verifiable (21 CFR 11.10(c)/(e), EU GMP Annex 11 §7, §12; R-SEC-11, R-SEC-12).

Every keyed hash written (audit event hashes, record and row seals, signature MACs, recovery
codes) is a *tag* ``<key id>:<base64url HMAC-SHA256>`` made with the ring's current key.
A tag is checked with the key it names; a tag without an id (64 hex digits, written before
key ids existed) is checked with the legacy key :data:`LEGACY_ID`, the key the installation
had then. A tag naming a key the ring does not hold never verifies (fail closed).

Where keys come from (the key file, the environment or a KMS) is
:mod:`workflow.signatures.keys`; this module holds no I/O and never shows key material
(``repr`` names the ids only).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from typing import Any

#: the id of the key an untagged (legacy hex) MAC or seal was made with
LEGACY_ID = "k1"
#: a key id: short, so ``<id>:<43 characters>`` fits the 64-character hash columns
KEY_ID = re.compile(r"^[a-z][a-z0-9-]{0,15}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def valid_id(key_id: str) -> bool:
    return bool(KEY_ID.match(key_id))


def next_id(ids: Iterable[str], prefix: str) -> str:
    """The id after the highest ``<prefix><n>`` of ``ids`` (``k1`` -> ``k2``)."""
    numbers = [int(i[len(prefix) :]) for i in ids if i.startswith(prefix) and i[len(prefix) :].isdigit()]
    return f"{prefix}{max(numbers, default=0) + 1}"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class KeyRing:
    """HMAC-SHA256 keys by id: the current key makes new tags, every key checks its own."""

    __slots__ = ("_keys", "_macs", "current_id")

    def __init__(self, keys: Mapping[str, bytes], current: str):
        if current not in keys:
            raise ValueError(f"the current key {current!r} is not among the keys")
        for key_id, key in keys.items():
            if not valid_id(key_id):
                raise ValueError(f"key id {key_id!r} must be 1-16 of a-z, 0-9, '-' starting with a letter")
            if len(key) < 32:
                raise ValueError(f"key {key_id} must be at least 32 bytes")
        self._keys = dict(keys)
        self.current_id = current
        # an HMAC object per key, copied per use: the key schedule is computed once
        self._macs = {k: hmac.new(v, digestmod=hashlib.sha256) for k, v in self._keys.items()}

    def __reduce__(self) -> tuple[Any, ...]:  # to worker processes (HMAC objects do not pickle)
        return (KeyRing, (self._keys, self.current_id))

    @classmethod
    def single(cls, key: bytes, key_id: str = LEGACY_ID) -> KeyRing:
        return cls({key_id: key}, key_id)

    # ------------------------------------------------------------------ keys

    @property
    def ids(self) -> list[str]:
        """The key ids, oldest first (the order they were added), the current one last."""
        return [*(k for k in self._keys if k != self.current_id), self.current_id]

    @property
    def current_key(self) -> bytes:
        return self._keys[self.current_id]

    def key(self, key_id: str) -> bytes | None:
        """The key with this id (None: not held)."""
        return self._keys.get(key_id)

    def with_key(self, key_id: str, key: bytes) -> KeyRing:
        """A ring with ``key`` added as the new current key (rotation)."""
        if key_id in self._keys:
            raise ValueError(f"key id {key_id!r} is taken")
        return KeyRing({**self._keys, key_id: key}, key_id)

    def __repr__(self) -> str:  # never the key material
        return f"KeyRing(ids={self.ids!r}, current={self.current_id!r})"

    # ------------------------------------------------------------------ tags

    def _digest(self, key_id: str, data: bytes) -> bytes:
        mac = self._macs[key_id].copy()
        mac.update(data)
        return mac.digest()

    def sign(self, data: bytes) -> str:
        """The tag of ``data`` under the current key: ``<id>:<base64url HMAC>``."""
        return f"{self.current_id}:{_b64(self._digest(self.current_id, data))}"

    def sign_with(self, key_id: str, data: bytes) -> str:
        return f"{key_id}:{_b64(self._digest(key_id, data))}"

    def verify(self, data: bytes, tag: str | None) -> bool:
        """Whether ``tag`` is the tag of ``data`` under the key it names (a legacy hex tag:
        under :data:`LEGACY_ID`). Unknown ids and malformed tags never verify."""
        if not tag:
            return False
        key_id, sep, mac = tag.partition(":")
        if sep:
            if key_id not in self._macs:
                return False
            return hmac.compare_digest(_b64(self._digest(key_id, data)), mac)
        if LEGACY_ID not in self._macs or not _HEX64.match(tag):
            return False
        return hmac.compare_digest(self._digest(LEGACY_ID, data).hex(), tag)

    def candidates(self, data: bytes) -> list[str]:
        """Every tag ``data`` may have been stored under (each key's, and the legacy hex
        form): to look a keyed value up in the database (recovery codes)."""
        tags = [self.sign_with(k, data) for k in self._keys]
        if LEGACY_ID in self._keys:
            tags.append(self._digest(LEGACY_ID, data).hex())
        return tags


def key_id_of(tag: str | None) -> str | None:
    """The key id a tag names (a legacy hex tag: :data:`LEGACY_ID`; no tag: None)."""
    if not tag:
        return None
    key_id, sep, _ = tag.partition(":")
    return key_id if sep else LEGACY_ID


_rings: dict[bytes, KeyRing] = {}


def as_ring(key: KeyRing | bytes) -> KeyRing:
    """A ring from a ring, or from one raw key (the legacy key ``k1``: embedders and tests
    that pass bytes keep working, and their older tags verify)."""
    if isinstance(key, KeyRing):
        return key
    ring = _rings.get(key)
    if ring is None:
        if len(_rings) > 64:
            _rings.clear()
        ring = _rings[key] = KeyRing.single(bytes(key))
    return ring


#: what a function that takes the server key accepts
Key = KeyRing | bytes


# --------------------------------------------------------------------------- Ed25519 anchor


class AnchorKeys:
    """Ed25519 keys by id for what is verified outside the server with the public key alone
    (checkpoints, signed true copies). The current key signs; any held key's public half
    verifies. This is NOT the HMAC server key (Annex 11 §7: an inspector gets the public
    key, never a secret)."""

    __slots__ = ("_private", "current_id")

    def __init__(self, private: Mapping[str, Any], current: str):
        if current not in private:
            raise ValueError(f"the current anchor key {current!r} is not among the keys")
        for key_id in private:
            if not valid_id(key_id):
                raise ValueError(f"anchor key id {key_id!r} is not a valid key id")
        self._private = dict(private)  # id -> Ed25519PrivateKey
        self.current_id = current

    @classmethod
    def from_seeds(cls, seeds: Mapping[str, bytes], current: str) -> AnchorKeys:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        return cls({k: Ed25519PrivateKey.from_private_bytes(v) for k, v in seeds.items()}, current)

    @property
    def ids(self) -> list[str]:
        return [*(k for k in self._private if k != self.current_id), self.current_id]

    def __repr__(self) -> str:
        return f"AnchorKeys(ids={self.ids!r}, current={self.current_id!r})"

    def sign(self, data: bytes) -> tuple[str, str]:
        """(key id, base64 signature) of ``data`` under the current key."""
        sig = self._private[self.current_id].sign(data)
        return self.current_id, base64.b64encode(sig).decode()

    def public_key(self, key_id: str) -> Any:
        """The public key with this id (None: not held)."""
        private = self._private.get(key_id)
        return None if private is None else private.public_key()

    def public_pem(self, key_id: str) -> str:
        from cryptography.hazmat.primitives import serialization

        pub = self.public_key(key_id)
        if pub is None:
            raise KeyError(key_id)
        return pub.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()

    def public_fingerprint(self, key_id: str) -> str:
        """sha256 of the raw public key, hex: how a public key is named in a document."""
        return public_fingerprint(self.public_key(key_id))


def verify_ed25519(public_key: Any, data: bytes, signature_b64: str) -> bool:
    """Whether ``signature_b64`` is an Ed25519 signature of ``data`` under ``public_key``."""
    from cryptography.exceptions import InvalidSignature

    try:
        public_key.verify(base64.b64decode(signature_b64, validate=True), data)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def load_public_pem(text: bytes) -> Any:
    """An Ed25519 public key from PEM (``qms keys export-public``); ValueError otherwise."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    key = serialization.load_pem_public_key(text)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return key


def public_fingerprint(public_key: Any) -> str:
    """sha256 of the raw 32-byte public key, hex (``qms keys list`` shows it)."""
    from cryptography.hazmat.primitives import serialization

    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()
