"""Signed checkpoints: how far the trail had got, anchored outside the database (21 CFR
11.10(c), 11.10(e); EU GMP Annex 11 §7, §9; R-SEC-14, R-SEC-15, R-SEC-16).

A checkpoint records, at a UTC time, every audit chain's sequence and head (the system chains
and each record's), every record's number, the record counters and the published definition
hashes, and is signed with the current Ed25519 **anchor key** (not the HMAC server key;
workflow/signatures/keys.py). It is written as one JSON file into an append-only directory
(``QMS_CHECKPOINT_DIR``): created with O_EXCL, made read-only, never rewritten. Each file
names the file before it and its sha256, so the files form a chain of their own.

:func:`compare` proves that the database still *extends* a checkpoint: every chain is at least
as long and still passes through the head the checkpoint saw, every record is still there,
no counter went back, no published definition changed. A deleted record, a cut chain tail or a
restored old backup is named, each as a :class:`~workflow.audit.trail.ChainProblem` of kind
``checkpoint``.

The file format (``qms-checkpoint/1``), for an inspector's own tools (docs/inspector.md)::

    {"checkpoint": {...body...},
     "signature": {"algorithm": "Ed25519", "key_id": "a1", "public_key_sha256": "...",
                   "value": "<base64 of the 64-byte signature>"}}

The signature is over the body's canonical JSON: keys sorted, no spaces, UTF-8
(``json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)``).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, func, select

from workflow import canonical, clock
from workflow.audit.trail import SYSTEM_CHAIN, ChainProblem, record_chain
from workflow.db.models import AuditChain, AuditEvent, DefinitionVersion, Record, RecordCounter
from workflow.db.uow import Units
from workflow.errors import CheckpointError
from workflow.keyring import AnchorKeys, public_fingerprint, verify_ed25519

FORMAT = "qms-checkpoint/1"
PREFIX = "checkpoint-"
KIND = "checkpoint"

_chains = AuditChain.__table__
_events = AuditEvent.__table__
_records = Record.__table__


def signed_bytes(body: dict[str, Any]) -> bytes:
    """The exact bytes a checkpoint's (or a copy's) signature covers: canonical JSON."""
    return canonical.dumps(body).encode()


# --------------------------------------------------------------------------- taking one


def collect(conn: Connection) -> dict[str, Any]:
    """What a checkpoint records, read on ``conn`` (one read transaction)."""
    chains = {r.name: {"seq": r.seq, "head": r.head}
              for r in conn.execute(select(_chains.c.name, _chains.c.seq, _chains.c.head)
                                    .order_by(_chains.c.name))}
    records = {str(r.id): {"number": r.number, "seq": r.audit_seq, "head": r.audit_head}
               for r in conn.execute(select(_records.c.id, _records.c.number,
                                            _records.c.audit_seq, _records.c.audit_head)
                                     .order_by(_records.c.id))}
    c = RecordCounter.__table__.c
    counters = {f"{r.prefix}-{r.year}": r.last_value
                for r in conn.execute(select(c.prefix, c.year, c.last_value)
                                      .order_by(c.prefix, c.year))}
    d = DefinitionVersion.__table__.c
    definitions = {f"{r.key} v{r.version}": r.content_hash
                   for r in conn.execute(select(d.key, d.version, d.content_hash)
                                         .order_by(d.key, d.version))}
    events = conn.execute(select(func.count()).select_from(_events)).scalar() or 0
    return {"chains": chains, "records": records, "counters": counters,
            "definitions": definitions,
            "totals": {"records": len(records), "events": events, "chains": len(chains)}}


def build(conn: Connection, anchor: AnchorKeys, *, previous: Path | None = None,
          system: str = "QMS") -> dict[str, Any]:
    """A signed checkpoint document of the database ``conn`` reads."""
    body: dict[str, Any] = {
        "format": FORMAT,
        "system": system,
        "created_at": clock.now().isoformat(timespec="microseconds"),
        "previous": None if previous is None else {
            "file": previous.name,
            "sha256": hashlib.sha256(previous.read_bytes()).hexdigest()},
        **collect(conn),
    }
    key_id, value = anchor.sign(signed_bytes(body))
    return {"checkpoint": body,
            "signature": {"algorithm": "Ed25519", "key_id": key_id,
                          "public_key_sha256": anchor.public_fingerprint(key_id),
                          "value": value}}


def write(directory: Path, doc: dict[str, Any]) -> Path:
    """Write ``doc`` as a new file in ``directory`` (created if missing): never over another
    file (O_EXCL), read-only once written."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = doc["checkpoint"]["created_at"].replace("-", "").replace(":", "").replace("+0000", "")
    stamp = stamp.split("+")[0]
    data = (json.dumps(doc, indent=1, ensure_ascii=False, sort_keys=True) + "\n").encode()
    for n in range(1, 100):  # two in the same microsecond: -01, -02... (names sort by time)
        path = directory / f"{PREFIX}{stamp}Z-{n:02d}.json"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        except FileExistsError:
            continue
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        return path
    raise CheckpointError(str(directory), f"cannot name a new checkpoint file in {directory}")


def files(directory: Path) -> list[Path]:
    """The checkpoint files of ``directory``, oldest first (names sort by time)."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.glob(f"{PREFIX}*.json") if p.is_file())


def latest(directory: Path) -> Path:
    """The newest checkpoint file, or a clear error when there is none."""
    found = files(directory)
    if not found:
        raise CheckpointError(str(directory), f"no checkpoint in {directory}: write one with "
                                              "`qms audit checkpoint` (the scheduler writes one "
                                              "every hour)")
    return found[-1]


# --------------------------------------------------------------------------- reading one


def load(path: Path) -> dict[str, Any]:
    """A checkpoint document, or :class:`CheckpointError` saying what is wrong with the file."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(str(path), f"checkpoint file {path} does not exist") from None
    except OSError as exc:
        raise CheckpointError(str(path), f"cannot read checkpoint file {path}: "
                                         f"{exc.strerror or exc}") from None
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(str(path), f"checkpoint file {path} is not JSON ({exc}): it was "
                                         "damaged or is not a checkpoint") from None
    body = doc.get("checkpoint") if isinstance(doc, dict) else None
    sig = doc.get("signature") if isinstance(doc, dict) else None
    if not isinstance(body, dict) or body.get("format") != FORMAT or not isinstance(sig, dict):
        raise CheckpointError(str(path), f"{path} is not a checkpoint (expected format {FORMAT} "
                                         "with a signature)")
    missing = [k for k in ("created_at", "chains", "records", "counters", "definitions")
               if not isinstance(body.get(k), (dict, str))]
    if missing or not isinstance(sig.get("value"), str) or not isinstance(sig.get("key_id"), str):
        what = ", ".join(missing) or "the signature value or key id"
        raise CheckpointError(str(path), f"checkpoint {path} lacks {what}: it was damaged")
    return doc


def signature_problem(doc: dict[str, Any], public_keys: list[Any]) -> str | None:
    """None when one of ``public_keys`` verifies the document's signature, else why not."""
    sig = doc["signature"]
    data = signed_bytes(doc["checkpoint"] if "checkpoint" in doc else doc["copy"])
    for key in public_keys:
        if key is not None and verify_ed25519(key, data, sig["value"]):
            return None
    known = ", ".join(public_fingerprint(k)[:16] for k in public_keys if k is not None)
    return (f"the signature (anchor key {sig['key_id']}, public key sha256 "
            f"{str(sig.get('public_key_sha256', '?'))[:16]}) does not verify with the public "
            f"key(s) given ({known or 'none'}): the file was changed after it was signed, or "
            "it was not signed by this system")


# --------------------------------------------------------------------------- comparing


def compare(conn: Connection, body: dict[str, Any]) -> Iterator[ChainProblem]:
    """Whether the database read on ``conn`` still extends the checkpoint ``body``: each
    problem names what was lost and where."""
    when = body.get("created_at", "?")
    seen = f"the checkpoint of {when}"

    def problem(where: str, message: str, seq: int | None = None) -> ChainProblem:
        return ChainProblem(where, seq, None, message, kind=KIND)

    def event_hash(chain: str, seq: int) -> str | None:
        return conn.execute(select(_events.c.hash).where(_events.c.chain == chain,
                                                         _events.c.seq == seq)).scalar()

    def extends(chain: str, label: str, now_seq: int, now_head: str, cp: dict[str, Any]
                ) -> Iterator[ChainProblem]:
        cp_seq, cp_head = int(cp.get("seq") or 0), cp.get("head") or ""
        if now_seq < cp_seq:
            yield problem(chain, f"{label}: the chain ends at #{now_seq} but {seen} saw it at "
                                 f"#{cp_seq}: events were cut from its end, or an older backup "
                                 "was restored")
        elif cp_seq and (now_head if now_seq == cp_seq else event_hash(chain, cp_seq)) != cp_head:
            yield problem(chain, f"{label}: event #{cp_seq} is not the one {seen} saw: the "
                                 "chain was rewritten, or another database restored", cp_seq)

    now_chains = {r.name: r for r in conn.execute(select(_chains))}
    for name, cp in sorted(body.get("chains", {}).items()):
        row = now_chains.get(name)
        if row is None:
            yield problem(name, f"the chain existed at {seen} (#{cp.get('seq')}) but has no head "
                                "now: deleted outside the application, or an older backup was "
                                "restored")
            continue
        yield from extends(name, f"chain {name!r}" if name != SYSTEM_CHAIN else
                           "the system chain", row.seq, row.head, cp)

    now_records = {r.id: r for r in conn.execute(
        select(_records.c.id, _records.c.number, _records.c.audit_seq, _records.c.audit_head))}
    for rid_text, cp in sorted(body.get("records", {}).items(), key=lambda kv: int(kv[0])):
        rid = int(rid_text)
        chain = record_chain(rid)
        row = now_records.get(rid)
        number = cp.get("number")
        if row is None:
            yield problem(chain, f"record {number} existed at {seen} (chain at #{cp.get('seq')}) "
                                 "but is gone: deleted outside the application, or an older "
                                 "backup was restored")
            continue
        if row.number != number:
            yield problem(chain, f"record id {rid} was {number} at {seen} but is {row.number} "
                                 "now: changed outside the application")
        yield from extends(chain, f"record {number}", row.audit_seq, row.audit_head, cp)

    c = RecordCounter.__table__.c
    counters = {f"{r.prefix}-{r.year}": r.last_value
                for r in conn.execute(select(c.prefix, c.year, c.last_value))}
    for name, top in sorted(body.get("counters", {}).items()):
        now = counters.get(name)
        if now is None or now < top:
            yield problem(f"record numbers {name}",
                          f"the counter stands at {now or 0} but {seen} saw {top}: numbers were "
                          "taken back, or an older backup was restored")

    d = DefinitionVersion.__table__.c
    defs = {f"{r.key} v{r.version}": r.content_hash
            for r in conn.execute(select(d.key, d.version, d.content_hash))}
    for name, digest in sorted(body.get("definitions", {}).items()):
        if defs.get(name) != digest:
            state = "is gone" if name not in defs else "has another content hash"
            yield problem(f"definition {name}", f"the published version {state} since {seen}: "
                                                "changed outside the application")


# --------------------------------------------------------------------------- commands


def take(engine: Units, anchor: AnchorKeys, directory: Path, *, system: str = "QMS") -> Path:
    """Write a signed checkpoint of the database into ``directory`` (``qms audit checkpoint``
    and the hourly job); returns the new file. It names the newest file before it."""
    found = files(directory)
    with engine.reader() as session:
        doc = build(session.connection(), anchor, previous=found[-1] if found else None,
                    system=system)
    return write(directory, doc)


def verify_since(engine: Units, path: Path, anchor: AnchorKeys) -> list[ChainProblem]:
    """``qms verify-audit --since-checkpoint``: the checkpoint's signature (with the public
    half of the anchor key it names), then whether the database still extends it."""
    doc = load(path)
    problems: list[ChainProblem] = []
    why = signature_problem(doc, [anchor.public_key(doc["signature"]["key_id"])])
    if why:
        problems.append(ChainProblem(f"checkpoint {path.name}", None, None, why, kind=KIND))
    with engine.reader() as session:
        problems.extend(compare(session.connection(), doc["checkpoint"]))
    return problems


def check_file(path: Path, public_keys: list[Any]) -> tuple[dict[str, Any], list[str]]:
    """Offline: the checkpoint file's signature with the public key(s) alone, and whether the
    file before it (when it lies in the same directory) is unchanged. Returns the document and
    the problems (empty: verified)."""
    doc = load(path)
    problems = []
    why = signature_problem(doc, public_keys)
    if why:
        problems.append(why)
    prev = doc["checkpoint"].get("previous")
    if isinstance(prev, dict) and prev.get("file"):
        before = path.parent / str(prev["file"])
        if not before.exists():
            problems.append(f"the checkpoint before it, {prev['file']}, is not in {path.parent}: "
                            "it was removed (or the files were moved apart)")
        elif hashlib.sha256(before.read_bytes()).hexdigest() != prev.get("sha256"):
            problems.append(f"the checkpoint before it, {prev['file']}, was changed after this "
                            "one was signed")
    return doc, problems
