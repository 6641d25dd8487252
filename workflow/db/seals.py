"""The keyed seals that let verify-audit name a row changed behind the application's back:
the record row's seal and the signature's MAC (Part 11 §11.70: a signature row copied to
another record, or edited, no longer verifies). Both are HMAC-SHA256 over canonical JSON with
the server key, which is kept outside the database."""

from __future__ import annotations

import hmac
from typing import Any

from workflow.canonical import keyed_hash
from workflow.db.models import Signature

#: the record columns a seal covers: everything that says what the record is and holds
SEALED = ("id", "number", "workflow_key", "definition_id", "definition_hash", "title", "state",
          "state_visit", "data", "version", "created_by_id", "created_at", "closed_at",
          "outcome", "due_original", "due_current", "audit_seq", "audit_head")


def record_seal(key: bytes, rec: Any) -> str:
    """The record row's seal: a keyed hash over its sealed columns (verify-audit checks it,
    so a row edited with plain SQL is named)."""
    return keyed_hash(key, {k: getattr(rec, k) for k in SEALED})


def mac_payload(sig: Signature, record_number: str) -> dict[str, Any]:
    return {
        "record_id": sig.record_id,
        "record_number": record_number,
        "record_version": sig.record_version,
        "state_visit": sig.state_visit,
        "transition": sig.transition,
        "meaning": sig.meaning,
        "signer_id": sig.signer_id,
        "signer_username": sig.signer_username,
        "signer_name": sig.signer_name,
        "signer_role": sig.signer_role,
        "method": sig.method,
        "signed_at": sig.signed_at,
        "content_hash": sig.content_hash,
    }


def compute_mac(key: bytes, sig: Signature, record_number: str) -> str:
    """The signature's MAC: its fields, the record's number and the content hash it signed."""
    return keyed_hash(key, mac_payload(sig, record_number))


def mac_ok(key: bytes, sig: Signature, record_number: str) -> bool:
    return hmac.compare_digest(compute_mac(key, sig, record_number), sig.mac)
