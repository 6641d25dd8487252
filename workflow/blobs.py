"""Attachment files: content-addressed storage, size and type limits (issue 17, item 2).

A file attached to a record is stored once under its SHA-256 and referenced from the
record's data by a *file value* ``{"sha256", "name", "size", "type"}`` (workflow/spec/fields.py
checks its shape). The hash is part of the record content the seal, the audit chain and the
signatures cover; the stored bytes are checked against it when a file is downloaded, when a
record page shows its signatures (a signed file that no longer matches marks the signature
superseded) and by ``qms verify-audit``.

Storage sits behind :class:`BlobStore` (``put``, ``get``, ``exists``, ``verify``). The
default, :class:`LocalBlobStore`, keeps files under ``QMS_ATTACHMENT_DIR`` (default
``instance/attachments``); ``QMS_ATTACHMENT_STORE=module:factory`` names another (an
S3-compatible object store, for instance): ``factory(settings)`` returns the store.

The type of a file is read from its content, never its name (puremagic: pure Python,
MIT licence, no libmagic needed): the signatures of PDF, PNG, JPEG, TIFF, GIF and the
Office Open XML formats; content no signature matches that is valid UTF-8 without NUL
bytes is ``text/plain``; anything else is ``application/octet-stream``. Only the types in
``QMS_ATTACHMENT_TYPES`` are accepted, up to ``QMS_ATTACHMENT_MAX_BYTES``.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import os
import re
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any, Protocol

from workflow import config
from workflow.errors import (
    AttachmentRefused,
    AttachmentTooLarge,
    AttachmentTypeRefused,
    ConfigError,
)

SHA256 = re.compile(r"^[0-9a-f]{64}$")
#: the keys of a file value, exactly
FILE_KEYS = frozenset({"sha256", "name", "size", "type"})
OCTET = "application/octet-stream"
_OOXML = {"word/": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
          "xl/": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
          "ppt/": "application/vnd.openxmlformats-officedocument.presentationml.presentation"}


class BlobStore(Protocol):
    """Where attachment files live, by their SHA-256 (hex)."""

    def put(self, sha256: str, data: bytes) -> None:
        """Store ``data`` under its hash (idempotent: the same bytes are stored once)."""

    def get(self, sha256: str) -> bytes:
        """The stored bytes (FileNotFoundError when there are none)."""

    def exists(self, sha256: str) -> bool:
        """Whether a file is stored under ``sha256``."""


class LocalBlobStore:
    """Files on the local file system: ``root/ab/cd/<sha256>``, written to a temporary file
    and renamed into place (a crash leaves no half-written file under a hash), read-only."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def path(self, sha256: str) -> Path:
        if not SHA256.match(sha256):
            raise ValueError(f"not a SHA-256: {sha256!r}")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def put(self, sha256: str, data: bytes) -> None:
        if hashlib.sha256(data).hexdigest() != sha256:
            raise ValueError("the data does not match its SHA-256")
        target = self.path(sha256)
        if target.exists():
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o440)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get(self, sha256: str) -> bytes:
        return self.path(sha256).read_bytes()

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def fingerprint(self, sha256: str) -> tuple[int, ...]:
        """What the file system records of the stored file: device, inode, size and the
        modification and change times (a write, a replacement or a metadata change gives
        another; the change time cannot be set back from user space)."""
        st = os.stat(self.path(sha256))
        return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def store(settings: config.Settings | None = None) -> BlobStore:
    """The store the settings name (``QMS_ATTACHMENT_STORE``), else the local one."""
    s = settings if settings is not None else config.settings()
    if not s.attachment_store:
        return LocalBlobStore(s.attachment_path)
    module, _, attr = s.attachment_store.partition(":")
    try:
        factory = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError("QMS_ATTACHMENT_STORE",
                          f"QMS_ATTACHMENT_STORE={s.attachment_store!r} cannot be loaded: "
                          f"{exc}") from None
    result: BlobStore = factory(s)
    return result


#: why a file value's stored file is not there
MISSING = "the file is missing from the attachment store"


def intact(blobs: BlobStore, sha256: str, size: int | None = None) -> str | None:
    """Why the file stored under ``sha256`` is not what was attached (None: it is): missing,
    or its bytes no longer hash to ``sha256`` (replaced or changed on disk). Always reads
    and hashes the file (verify-audit)."""
    try:
        data = blobs.get(sha256)
    except (FileNotFoundError, ValueError):
        return MISSING
    return mismatch(data, sha256, size)


def mismatch(data: bytes, sha256: str, size: int | None = None) -> str | None:
    """Why ``data`` (read from the store) is not the file attached as ``sha256`` of ``size``
    bytes (None: it is)."""
    if hashlib.sha256(data).hexdigest() != sha256:
        return "the stored file no longer matches its SHA-256 (it was changed or replaced)"
    if size is not None and len(data) != size:
        return f"the stored file has {len(data)} bytes, the record says {size}"
    return None


#: per process: SHA-256 -> the stored file's fingerprint when its bytes last hashed right
_HASHED_RIGHT: dict[str, tuple[int, ...]] = {}
_HASHED_RIGHT_MAX = 10_000
#: a file changed less than this long ago is hashed every time: file times advance in clock
#: ticks of a few milliseconds, so a second change within the tick of the first would leave
#: the fingerprint as it was (git's "racy clean" rule)
SETTLED_NS = 1_000_000_000


def intact_seen(blobs: BlobStore, sha256: str, size: int | None = None) -> str | None:
    """:func:`intact` for pages: a stored file whose fingerprint (``LocalBlobStore``: inode,
    size, modification and change time) is the one it had when its bytes last hashed right
    in this process is not read and hashed again. A file written to, replaced or touched
    since has another fingerprint and is hashed again, so the page still names it; a file
    changed within the last second (:data:`SETTLED_NS`) and a store without fingerprints
    are hashed every time; ``qms verify-audit`` always hashes."""
    fingerprint = getattr(blobs, "fingerprint", None)
    if fingerprint is None:
        return intact(blobs, sha256, size)
    try:
        before = fingerprint(sha256)
    except (OSError, ValueError):
        return intact(blobs, sha256, size)
    if _HASHED_RIGHT.get(sha256) == before:
        return None
    why = intact(blobs, sha256, size)
    try:
        same = fingerprint(sha256) == before  # not changed while it was read
    except (OSError, ValueError):
        same = False
    settled = time.time_ns() - max(before[-2:]) > SETTLED_NS
    if why is None and same and settled:
        if len(_HASHED_RIGHT) >= _HASHED_RIGHT_MAX:
            _HASHED_RIGHT.clear()
        _HASHED_RIGHT[sha256] = before
    else:
        _HASHED_RIGHT.pop(sha256, None)
    return why


# --------------------------------------------------------------------------- file values


def is_file_value(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == FILE_KEYS


def files_in(value: Any) -> list[dict[str, Any]]:
    """The file values in a stored field value (a file field, or a list of them)."""
    if is_file_value(value):
        return [value]
    if isinstance(value, list):
        return [v for v in value if is_file_value(v)]
    return []


def broken(blobs: BlobStore, data: dict[str, Any]) -> dict[str, str]:
    """sha256 -> why, for every file the record's ``data`` references that is not intact
    (:func:`intact_seen`: a file unchanged on disk since it last hashed right is not hashed
    again)."""
    out: dict[str, str] = {}
    for value in data.values():
        for f in files_in(value):
            why = intact_seen(blobs, f["sha256"], f["size"])
            if why:
                out[f["sha256"]] = why
    return out


# --------------------------------------------------------------------------- checking uploads


def media_type(data: bytes) -> str:
    """The type of ``data`` from its content (see the module's doc)."""
    import puremagic

    try:
        matches = puremagic.magic_string(data)
    except (puremagic.PureError, ValueError):
        matches = []
    mime = next((m.mime_type for m in matches if m.mime_type), "")
    if mime in _OOXML.values() or mime == "application/zip":
        try:
            names = zipfile.ZipFile(io.BytesIO(data)).namelist()
        except zipfile.BadZipFile:
            return OCTET
        for prefix, office in _OOXML.items():
            if "[Content_Types].xml" in names and any(n.startswith(prefix) for n in names):
                return office
        return "application/zip"
    if mime:
        return "image/jpeg" if mime == "image/jpg" else mime
    if b"\x00" not in data:
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            return OCTET
        return "text/plain"
    return OCTET


_NAME_BAD = re.compile(r"[\x00-\x1f\x7f/\\]")


def clean_name(name: str) -> str:
    """The file's name as shown and offered on download: the last path part, without
    control characters or slashes, at most 200 characters (its extension kept)."""
    base = _NAME_BAD.sub("_", (name or "").replace("\\", "/").rsplit("/", 1)[-1]).strip(" .")
    if len(base) > 200:
        stem, dot, ext = base.rpartition(".")
        base = (stem[: 200 - len(ext) - 1] + dot + ext) if dot and len(ext) <= 16 else base[:200]
    return base or "file"


def check(data: bytes, name: str, settings: config.Settings | None = None) -> dict[str, Any]:
    """The file value of an upload after the limits (nothing is stored here).

    Raises:
        AttachmentRefused: empty, larger than ``QMS_ATTACHMENT_MAX_BYTES``, or of a type
            (read from the content) not in ``QMS_ATTACHMENT_TYPES``.
    """
    s = settings if settings is not None else config.settings()
    shown = clean_name(name)
    if not data:
        raise AttachmentRefused("attachment_empty", f"{shown} is empty.")
    if len(data) > s.attachment_max_bytes:
        raise AttachmentTooLarge(
            "attachment_too_large",
            f"{shown} has {len(data):,} bytes; files up to {s.attachment_max_bytes:,} bytes "
            "may be attached (QMS_ATTACHMENT_MAX_BYTES).")
    kind = media_type(data)
    if kind not in s.attachment_types:
        raise AttachmentTypeRefused(
            "attachment_type_refused",
            f"{shown} is {kind} (read from its content, not its name); these types may be "
            f"attached: {', '.join(s.attachment_types)} (QMS_ATTACHMENT_TYPES).")
    return {"sha256": hashlib.sha256(data).hexdigest(), "name": shown, "size": len(data),
            "type": kind}
