"""Canonical JSON and hashing shared by the audit chain and signatures."""

from __future__ import annotations

import hashlib
import json
from datetime import date, datetime
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from typing import Any

from workflow.clock import as_utc
from workflow.keyring import Key, as_ring


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return as_utc(value).isoformat(timespec="microseconds")
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not canonical JSON")


# one encoder, built once: json.dumps with these options builds a new one per call (measured:
# 40 % of the cost of hashing an audit event, which verify-audit does a million times)
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                            default=_default)
#: the C encoder that ``_ENCODER.encode`` builds on every call, built once (JSONEncoder.encode
#: makes a new one per call: half the cost of encoding a small dict): the same arguments, except
#: that it keeps no markers of the containers it is in (a marker left behind by an error would
#: make a later value look circular); canonical values come from JSON and are never circular
_C_ENCODER = (None if c_make_encoder is None else
              c_make_encoder(None, _default, encode_basestring, None, ":", ",", True, False,
                             True))


def dumps(value: Any) -> str:
    """Canonical JSON: sorted keys, no spaces, UTF-8 text, datetimes as ISO 8601 UTC with
    microseconds (the same text as ``json.dumps`` with these options)."""
    if _C_ENCODER is None:  # pragma: no cover - CPython always has the C encoder
        return _ENCODER.encode(value)
    return "".join(_C_ENCODER(value, 0))


def sha256(value: Any) -> str:
    return hashlib.sha256(dumps(value).encode()).hexdigest()


def record_content(number: str, workflow_key: str, definition_hash: str, data: dict) -> dict:
    """What a signature is bound to: the record's identity, its rules and its data."""
    return {"number": number, "workflow": workflow_key, "definition": definition_hash,
            "data": data}


def keyed_hash(key: Key, payload: Any) -> str:
    """HMAC-SHA256 of the canonical JSON under the current server key, tagged with the key's
    id (``k2:<base64url>``, workflow/keyring.py): without the server key (kept outside the
    database) nobody can write an audit event or a record row that verifies."""
    return as_ring(key).sign(dumps(payload).encode())


def keyed_ok(key: Key, payload: Any, tag: str | None) -> bool:
    """Whether ``tag`` is the keyed hash of ``payload`` under the key it names (an untagged
    hex value: the legacy key ``k1``), so what older keys made still verifies after a
    rotation."""
    return as_ring(key).verify(dumps(payload).encode(), tag)
