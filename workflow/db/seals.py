"""The keyed seals that let verify-audit name a row changed behind the application's back:
the record row's seal, the signature's MAC (Part 11 §11.70: a signature row copied to
another record, or edited, no longer verifies), and the seal of every row the engine's
security decisions rest on: users (credentials, lockout), role grants, API tokens and the
heads of the non-record audit chains (``system``). All are HMAC-SHA256 over canonical JSON
with the server key, which is kept outside the database.

Rows of the security tables are sealed by two hooks of the unit of work
(workflow/db/uow.py), so no command that writes them through the ORM can skip it:
:func:`seal_changed` before every flush and commit (changed rows, and new rows whose key is
known), :func:`seal_inserted` after a flush (new rows with a database-assigned id). A changed
row whose *stored* seal is already broken is refused (:class:`~workflow.errors.TamperedData`)
rather than sealed again: a legitimate change never launders a forged row.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from workflow.canonical import keyed_hash, keyed_ok
from workflow.db.models import ApiToken, AuditChain, RoleGrant, Signature, SigningEnablement, User
from workflow.db.uow import session_key
from workflow.errors import TamperedData
from workflow.keyring import Key

#: the record columns a seal covers: everything that says what the record is and holds
SEALED = ("id", "number", "workflow_key", "definition_id", "definition_hash", "title", "state",
          "state_visit", "data", "version", "created_by_id", "created_at", "closed_at",
          "outcome", "due_original", "due_current", "audit_seq", "audit_head")


def record_seal(key: Key, rec: Any) -> str:
    """The record row's seal: a keyed hash over its sealed columns (verify-audit checks it,
    so a row edited with plain SQL is named)."""
    return keyed_hash(key, {k: getattr(rec, k) for k in SEALED})


def record_seal_ok(key: Key, rec: Any, seal: str | None = None) -> bool:
    """Whether the record row matches its seal (``seal``, default its stored one) under the
    key the seal names."""
    return keyed_ok(key, {k: getattr(rec, k) for k in SEALED},
                    rec.seal if seal is None else seal)


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


def compute_mac(key: Key, sig: Signature, record_number: str) -> str:
    """The signature's MAC: its fields, the record's number and the content hash it signed."""
    return keyed_hash(key, mac_payload(sig, record_number))


def mac_ok(key: Key, sig: Signature, record_number: str) -> bool:
    """Whether the signature's MAC verifies under the key it names (so signatures given
    before a key rotation stay verifiable)."""
    return keyed_ok(key, mac_payload(sig, record_number), sig.mac)


# --------------------------------------------------------------------------- security rows

#: per sealed table, the columns its seal covers: everything security decisions read
#: (users: not the display preferences timezone and notify_mode; api_tokens: not last_used_at,
#: which every use writes)
SEALED_COLUMNS: dict[str, tuple[str, ...]] = {
    "users": ("id", "username", "full_name", "email", "active", "is_system", "created_at",
              "password_hash", "password_changed_at", "must_change_password",
              "failed_attempts", "locked_at", "totp_secret", "totp_enabled_at",
              "totp_last_step", "deactivated_at"),
    "role_grants": ("id", "user_id", "role", "granted_by_id", "granted_at", "reason",
                    "expires_at", "revoked_at", "revoked_by_id", "revoke_reason"),
    "api_tokens": ("id", "user_id", "name", "token_hash", "prefix", "scopes", "created_at",
                   "created_by_id", "expires_at", "revoked_at", "revoked_by_id"),
    "audit_chains": ("name", "seq", "head"),
    "signing_enablements": ("id", "user_id", "kind", "detail", "recorded_by_id", "recorded_at"),
}
#: columns added after the seals existed (migration 0009: time-limited lockout, tokens
#: suspended by an administrator's reset; 0016: a person's department). A seal covers each
#: of them only while it holds a value (not None, not 0), so the seals written before they
#: existed stay valid, and setting or clearing one with plain SQL breaks the seal all the same.
SEALED_IF_SET: dict[str, tuple[str, ...]] = {
    "users": ("locked_until", "lockout_count", "department"),
    "api_tokens": ("suspended_at",),
}


def sealed_columns(table: str) -> tuple[str, ...]:
    """Every column of ``table`` a seal may cover (to select a row to check or seal)."""
    return (*SEALED_COLUMNS[table], *SEALED_IF_SET.get(table, ()))


def _payload(table: str, row: Any) -> dict[str, Any]:
    payload = {c: getattr(row, c) for c in SEALED_COLUMNS[table]}
    for c in SEALED_IF_SET.get(table, ()):
        value = getattr(row, c, None)
        if value:
            payload[c] = value
    return payload


#: what each sealed table holds, in messages
TABLE_NOUNS = {"users": "user", "role_grants": "role grant", "api_tokens": "API token",
               "audit_chains": "audit chain head", "signing_enablements": "signing enablement"}
_MODELS: dict[type[Any], str] = {User: "users", RoleGrant: "role_grants",
                                 ApiToken: "api_tokens", AuditChain: "audit_chains",
                                 SigningEnablement: "signing_enablements"}


def row_seal(key: Key, table: str, row: Any) -> str:
    """The seal of a row of a sealed table (an ORM object or a Core row): a keyed hash over
    the table's name and its sealed columns."""
    return keyed_hash(key, {"table": table, **_payload(table, row)})


_verified: dict[tuple[Any, ...], bool] = {}
_CACHE_MAX = 20_000


def seal_ok(key: Key, table: str, row: Any) -> bool:
    """Whether ``row`` matches its stored seal (an empty seal never does). Results are
    remembered per (key, values, seal): the engine's hot path checks the same grants again
    and again."""
    seal = getattr(row, "seal", "") or ""
    if not seal:
        return False
    values = tuple(getattr(row, c, None) for c in sealed_columns(table))
    memo = (key, table, values, seal)
    try:
        hit = _verified.get(memo)
    except TypeError:  # an unhashable value (never in these columns): no memo
        hit = None
    if hit is not None:
        return hit
    ok = keyed_ok(key, {"table": table, **_payload(table, row)}, seal)
    if len(_verified) >= _CACHE_MAX:
        _verified.clear()
    _verified[memo] = ok
    return ok


def where(table: str, row: Any) -> str:
    """A sealed row, named for people: ``user quinn``, ``role grant #7 (qa of user #3)``."""
    if table == "users":
        return f"user {row.username} (#{row.id})"
    if table == "role_grants":
        return f"role grant #{row.id} ({row.role} to user #{row.user_id})"
    if table == "api_tokens":
        return f"API token {row.prefix} (#{row.id})"
    if table == "signing_enablements":
        return f"signing enablement #{row.id} ({row.kind} of user #{row.user_id})"
    return f"audit chain head {row.name!r}"


def _sealed(objects: Iterable[Any]) -> Iterable[tuple[str, Any]]:
    for obj in objects:
        table = _MODELS.get(type(obj))
        if table is not None:
            yield table, obj


def _stored(session: Session, table: str, obj: Any) -> Any:
    """The row of a changed ORM object as the database holds it (in this transaction)."""
    t = type(obj).__table__
    pk = t.c.name if table == "audit_chains" else t.c.id
    cols = [t.c[c] for c in (*sealed_columns(table), "seal")]
    return session.connection().execute(
        select(*cols).where(pk == getattr(obj, pk.key))).one_or_none()


def seal_changed(session: Session) -> None:
    """Write-back hook (before every flush and commit): seal each changed row of a sealed
    table, and each new one whose key is already known (an audit chain head). A changed row
    whose stored seal is broken is refused, not sealed again."""
    dirty = list(_sealed(session.dirty))
    # an audit chain head's key is its name: sealed before its INSERT; the others get their
    # id from the database and are sealed after it (seal_inserted)
    new = [(t, o) for t, o in _sealed(session.new) if t == "audit_chains"]
    if not dirty and not new:
        return
    key = session_key(session)
    for table, obj in dirty:
        if not session.is_modified(obj, include_collections=False):
            continue
        stored = _stored(session, table, obj)
        if stored is not None and not seal_ok(key, table, stored):
            raise TamperedData(TABLE_NOUNS[table], where(table, stored))
        obj.seal = row_seal(key, table, obj)
    for table, obj in new:
        obj.seal = row_seal(key, table, obj)


def seal_inserted(session: Session) -> None:
    """After-flush hook: seal the rows just inserted with a database-assigned id (one UPDATE
    of the seal column each; these rows are few)."""
    fresh = [(t, o) for t, o in _sealed(session.new) if t != "audit_chains"]
    if not fresh:
        return
    key = session_key(session)
    conn = session.connection()
    for table, obj in fresh:
        seal = row_seal(key, table, obj)
        model = type(obj)
        conn.execute(update(model.__table__).where(model.__table__.c.id == obj.id)
                     .values(seal=seal))
        set_committed_value(obj, "seal", seal)


def seal_unsealed(session: Session) -> dict[str, list[str]]:
    """Seal the rows of the security tables that carry no seal yet (rows written before
    migration 0008), with Core UPDATEs; returns the sealed rows per table, named. Run once
    after upgrading (``qms db upgrade`` / ``qms init`` / ``qms db seal``); a row with a
    wrong seal is left alone (verify-audit names it)."""
    key = session_key(session)
    conn = session.connection()
    done: dict[str, list[str]] = {}
    for table, model in ((t, m) for m, t in _MODELS.items()):
        t = model.__table__
        pk = t.c.name if table == "audit_chains" else t.c.id
        cols = [t.c[c] for c in (*sealed_columns(table), "seal")]
        rows = conn.execute(select(*cols).where(t.c.seal == "")).all()
        for row in rows:
            conn.execute(update(t).where(pk == getattr(row, pk.key))
                         .values(seal=row_seal(key, table, row)))
        if rows:
            done[table] = [where(table, r) for r in rows]
    return done
