"""Where the keys come from, and how they rotate (21 CFR 11.10(c)/(d), EU GMP Annex 11 §7,
§12; R-SEC-11, R-SEC-12, R-SEC-13).

Two kinds of key, never the same:

* the **HMAC server keys** (:class:`~workflow.keyring.KeyRing`): audit event hashes, record
  and row seals, signature MACs, recovery codes and (derived) the TOTP secret encryption.
  Secret; kept outside the database; never logged.
* the **anchor keys** (:class:`~workflow.keyring.AnchorKeys`, Ed25519): sign checkpoints and
  true copies, which an inspector verifies with the public half alone.

A :class:`KeyProvider` hands out both and rotates them. :class:`FileKeyProvider` (the
default) reads the settings:

* HMAC: ``QMS_SIGNATURE_KEY`` (hex; the key ``k1``), else the key file
  (``QMS_SIGNATURE_KEY_FILE``, default ``instance/signature.key``). The file holds either one
  hex key (the key ``k1``, as written before key ids) or one ``<id> <hex>`` line per key, the
  current key last.
* anchor: the file ``QMS_ANCHOR_KEY_FILE`` (default ``instance/anchor.key``), one
  ``<id> <hex Ed25519 seed>`` line per key (``a1``, ``a2``...), the current key last.

Keys fail closed: reading a key that is not there is a :class:`~workflow.errors.KeyProblem`
naming the key and where it was expected, never a new key (a new HMAC key would make every
audit event, seal and signature of the database look altered). Keys are created only by
:func:`create_missing_keys` (``qms init`` on a database without audit events or signatures,
and ``qms keys create``).

Rotation appends a new key (``k2``, ``a2``...) as the new current key; older keys stay, so
whatever they made still verifies. Files are replaced atomically and are readable by their
owner only (0600).

A KMS or HSM plugs in with ``QMS_KEY_PROVIDER=module:factory``: ``factory(settings)``
returns an object with the three methods of :class:`KeyProvider`.
"""

from __future__ import annotations

import importlib
import logging
import os
import secrets
from pathlib import Path
from typing import Protocol

from sqlalchemy import Engine as DBEngine
from sqlalchemy import inspect, select

from workflow import clock, config
from workflow.audit import trail as audit
from workflow.db.models import AuditEvent, Signature
from workflow.db.uow import Units
from workflow.errors import KeyProblem
from workflow.identity.users import system_user
from workflow.keyring import LEGACY_ID, AnchorKeys, KeyRing, next_id, valid_id

log = logging.getLogger(__name__)

KINDS = ("hmac", "anchor")


class KeyProvider(Protocol):
    """Hands out the HMAC server keys and the Ed25519 anchor keys, and rotates them."""

    def hmac_keys(self) -> KeyRing:
        """Every HMAC key by id, the current one to write with."""
        ...

    def anchor_keys(self) -> AnchorKeys:
        """Every Ed25519 anchor key by id, the current one to sign with."""
        ...

    def rotate(self, kind: str) -> str:
        """Start a new current key of ``kind`` ("hmac" or "anchor"); return its id. Older
        keys stay available for verification."""
        ...


# --------------------------------------------------------------------------- key files


def _read_lines(path: Path, what: str) -> list[tuple[int, list[str]]]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise KeyProblem(str(path), f"cannot read the {what} file {path}: {exc.strerror or exc}") from None
    return [
        (n, line.split())
        for n, line in enumerate(text.splitlines(), start=1)
        if line.strip() and not line.lstrip().startswith("#")
    ]


def _hex(path: Path, line: int, value: str, size: int | None = None) -> bytes:
    # the message names the file and line, never the value
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise KeyProblem(str(path), f"{path} line {line}: the key is not hex") from None
    if size is not None and len(raw) != size:
        raise KeyProblem(
            str(path), f"{path} line {line}: the key must be {size} bytes ({size * 2} hex digits)"
        )
    if size is None and len(raw) < 32:
        raise KeyProblem(str(path), f"{path} line {line}: the key must be at least 32 bytes")
    return raw


def _parse(path: Path, what: str, size: int | None) -> dict[str, bytes]:
    """``<id> <hex>`` lines, oldest first (one bare hex line: the legacy key ``k1``)."""
    lines = _read_lines(path, what)
    if len(lines) == 1 and len(lines[0][1]) == 1:
        n, (value,) = lines[0]
        return {LEGACY_ID: _hex(path, n, value, size)}
    keys: dict[str, bytes] = {}
    for n, parts in lines:
        if len(parts) != 2:
            raise KeyProblem(str(path), f"{path} line {n}: expected `<key id> <hex key>`")
        key_id, value = parts
        if not valid_id(key_id):
            raise KeyProblem(
                str(path),
                f"{path} line {n}: {key_id!r} is not a key id "
                "(1-16 of a-z, 0-9, '-', starting with a letter)",
            )
        if key_id in keys:
            raise KeyProblem(str(path), f"{path} line {n}: key id {key_id} appears twice")
        keys[key_id] = _hex(path, n, value, size)
    if not keys:
        raise KeyProblem(str(path), f"the {what} file {path} holds no key")
    return keys


def _write(path: Path, keys: dict[str, bytes], header: str) -> None:
    """Replace ``path`` atomically with one ``<id> <hex>`` line per key (owner-only)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(
                f"# {header}\n# one `<key id> <hex>` line per key, the current key last; "
                "never delete a line\n"
            )
            for key_id, key in keys.items():
                fh.write(f"{key_id} {key.hex()}\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _create(path: Path, key_id: str, key: bytes, header: str, what: str) -> bool:
    """Write a new key file (owner-only); False when it exists already (never replaced)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process created it meanwhile: use theirs
        return False
    with os.fdopen(fd, "w") as fh:
        fh.write(f"# {header}\n{key_id} {key.hex()}\n")
    log.info("created a new %s at %s", what, path)  # the command says it to the operator
    return True


def _missing(what: str, path: Path, variable: str) -> KeyProblem:
    return KeyProblem(
        str(path),
        f"the {what} is missing: expected in {path} ({variable}). Restore it from the backup "
        "of the keys (docs/operations.md); a new key is created only by `qms init` on a new "
        "database or `qms keys create`",
    )


class FileKeyProvider:
    """Keys from the settings: the environment or the key files (see the module's doc)."""

    HMAC_HEADER = "QMS HMAC server keys (QMS_SIGNATURE_KEY_FILE): secret"
    ANCHOR_HEADER = "QMS Ed25519 anchor keys (QMS_ANCHOR_KEY_FILE): secret seeds"

    def __init__(self, settings: config.Settings):
        self.settings = settings

    def hmac_keys(self) -> KeyRing:
        s = self.settings
        if s.signature_key is not None:  # hex and length checked by Settings
            return KeyRing.single(s.signature_key)
        path = s.signature_key_path
        if not path.exists():
            raise _missing("HMAC signature key", path,
                           "QMS_SIGNATURE_KEY_FILE, or the key itself in QMS_SIGNATURE_KEY")
        keys = _parse(path, "signature key", None)
        return KeyRing(keys, list(keys)[-1])

    def anchor_keys(self) -> AnchorKeys:
        path = self.settings.anchor_key_path
        if not path.exists():
            raise _missing("Ed25519 anchor key", path, "QMS_ANCHOR_KEY_FILE")
        seeds = _parse(path, "anchor key", 32)
        return AnchorKeys.from_seeds(seeds, list(seeds)[-1])

    def missing(self) -> list[str]:
        """The kinds of key ("hmac", "anchor") whose file is not there."""
        s = self.settings
        out = []
        if s.signature_key is None and not s.signature_key_path.exists():
            out.append("hmac")
        if not s.anchor_key_path.exists():
            out.append("anchor")
        return out

    def create(self, kind: str) -> Path | None:
        """Write a new random key file of ``kind``; None when the file exists (never
        replaced). Callers check first that no record depends on a key
        (:func:`create_missing_keys`)."""
        if kind == "hmac":
            path = self.settings.signature_key_path
            made = _create(path, LEGACY_ID, secrets.token_bytes(32), self.HMAC_HEADER,
                           "signature key")
        elif kind == "anchor":
            path = self.settings.anchor_key_path
            made = _create(path, "a1", secrets.token_bytes(32), self.ANCHOR_HEADER, "anchor key")
        else:
            raise KeyProblem(kind, f"unknown kind of key {kind!r}: hmac or anchor")
        return path if made else None

    def rotate(self, kind: str) -> str:
        if kind == "hmac":
            if self.settings.signature_key is not None:
                raise KeyProblem(
                    "QMS_SIGNATURE_KEY",
                    "the HMAC key comes from QMS_SIGNATURE_KEY, which this command "
                    "cannot change: move the key into a key file "
                    "(QMS_SIGNATURE_KEY_FILE, as `k1 <hex>`) or use a key provider "
                    "(QMS_KEY_PROVIDER), then rotate",
                )
            ring = self.hmac_keys()
            new = next_id(ring.ids, "k")
            keys = {k: ring.key(k) or b"" for k in ring.ids}
            _write(self.settings.signature_key_path, {**keys, new: secrets.token_bytes(32)}, self.HMAC_HEADER)
            return new
        if kind == "anchor":
            path = self.settings.anchor_key_path
            self.anchor_keys()  # refused when missing: a rotation never starts a new file
            seeds = _parse(path, "anchor key", 32)
            new = next_id(seeds, "a")
            _write(path, {**seeds, new: secrets.token_bytes(32)}, self.ANCHOR_HEADER)
            return new
        raise KeyProblem(kind, f"unknown kind of key {kind!r}: hmac or anchor")


# --------------------------------------------------------------------------- the provider


def key_provider(settings: config.Settings | None = None) -> KeyProvider:
    """The provider the settings name (``QMS_KEY_PROVIDER``), else :class:`FileKeyProvider`."""
    s = settings if settings is not None else config.settings()
    if not s.key_provider:
        return FileKeyProvider(s)
    module, _, attr = s.key_provider.partition(":")
    try:
        factory = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise KeyProblem(
            "QMS_KEY_PROVIDER", f"QMS_KEY_PROVIDER {s.key_provider!r} cannot be loaded: {exc}"
        ) from None
    provider = factory(s)
    missing = [m for m in ("hmac_keys", "anchor_keys", "rotate") if not hasattr(provider, m)]
    if missing:
        raise KeyProblem(
            "QMS_KEY_PROVIDER", f"the key provider {s.key_provider!r} lacks {', '.join(missing)}"
        )
    return provider


def record_creation(engine: Units, kind: str, key_id: str, reason: str) -> None:
    """Record that a missing key of ``kind`` was created on a database with history
    (``key_created``: the kind and id, never a key)."""
    with engine.unit() as session:
        audit.system_event(session, at=clock.now(), actor=system_user(session),
                           action="key_created", changes={"kind": kind, "key_id": key_id},
                           reason=reason)


def record_rotation(engine: Units, kind: str, key_id: str, reason: str) -> None:
    """Record a rotation on the system audit trail (``key_rotated``: the kind and the new key
    id, never a key), in a unit of ``engine`` (opened with the keys as they are now, so the
    event carries the new key's id)."""
    with engine.unit() as session:
        audit.system_event(session, at=clock.now(), actor=system_user(session),
                           action="key_rotated", changes={"kind": kind, "key_id": key_id},
                           reason=reason)


# --------------------------------------------------------------------------- creating keys


def database_has_history(dbe: DBEngine) -> bool:
    """Whether the database holds audit events or signatures: then no key may be created
    (what they were made with is the key to restore, not a new one)."""
    tables = set(inspect(dbe).get_table_names())
    with dbe.connect() as conn:
        for model in (AuditEvent, Signature):
            if model.__tablename__ in tables and conn.execute(
                    select(model.id).limit(1)).first() is not None:
                return True
    return False


def create_missing_keys(settings: config.Settings, dbe: DBEngine,
                        allow_new_anchor: bool = False) -> list[tuple[str, Path]]:
    """Create the key files that are missing, only while the database holds no audit event
    and no signature (``qms init`` on a new database, ``qms keys create``). Otherwise refuse
    with a :class:`KeyProblem` naming each missing key and where it was expected.

    ``allow_new_anchor``: a missing *anchor* key may be created on a database with history
    (``qms keys create --new-anchor``: an installation that never had one; checkpoints and
    copies signed by a lost anchor key stay unverifiable with the new one). A missing HMAC
    key never is: restore it. Returns (kind, path) per key created; a key provider
    (``QMS_KEY_PROVIDER``) manages its own keys, so nothing is created for it."""
    provider = key_provider(settings)
    if not isinstance(provider, FileKeyProvider):
        return []
    missing = provider.missing()
    if not missing:
        return []
    if database_has_history(dbe):
        refused = [k for k in missing if not (k == "anchor" and allow_new_anchor)]
        if refused:
            where = {"hmac": ("HMAC signature key", settings.signature_key_path,
                              "QMS_SIGNATURE_KEY_FILE or QMS_SIGNATURE_KEY"),
                     "anchor": ("Ed25519 anchor key", settings.anchor_key_path,
                                "QMS_ANCHOR_KEY_FILE")}
            named = "; ".join(f"the {where[k][0]} (expected in {where[k][1]}, {where[k][2]})"
                              for k in refused)
            raise KeyProblem(
                str(where[refused[0]][1]),
                f"the database already holds audit events or signatures, so no key is created: "
                f"missing {named}. Restore the key files from the backup of the keys "
                "(docs/operations.md) or point the settings at them"
                + ("; a lost anchor key only: `qms keys create --new-anchor`"
                   if refused == ["anchor"] else ""),
            )
    made = []
    for kind in missing:
        path = provider.create(kind)
        if path is not None:
            made.append((kind, path))
    return made
