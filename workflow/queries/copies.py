"""True copies of a record (21 CFR 11.10(b), Annex 11 §8): the electronic form as JSON.

The copy holds every field with its label, the state history, linked records, each
signature's manifestation (printed name, UTC time, meaning) and the full audit trail, plus
what is needed to check it: the record's sealed columns and seal, the chain head, each event's
hash and previous hash. :func:`check_copy` recomputes them with the server key, so a copy can
be verified against the key without the database. Every export is itself audited
(R-P11-10b-2).

A copy handed to an inspector is verifiable on its own (R-SEC-17): :func:`sign_copy` embeds the
last checkpoint covering the record (workflow/audit/checkpoints.py) and an Ed25519 signature
with the anchor key over the copy's canonical JSON (``signature`` member); a PDF copy is signed
over its bytes with the signature in a sidecar ``<file>.sig`` (:func:`sign_pdf`).
:func:`check_signed` verifies either with the public key alone (``qms verify-copy``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from workflow import canonical, clock
from workflow.audit import checkpoints
from workflow.audit import trail as audit
from workflow.audit.trail import event_payload
from workflow.canonical import keyed_ok
from workflow.db.models import DefinitionVersion, Record, User
from workflow.db.seals import SEALED, record_seal_ok
from workflow.engine import content
from workflow.engine.core import Engine
from workflow.errors import CheckpointError, RecordNotFound
from workflow.identity import users as identity
from workflow.keyring import AnchorKeys, Key, verify_ed25519
from workflow.queries import documents, records
from workflow.queries.copy_pdf import record_pdf  # noqa: F401 (drawn there, used from here)
from workflow.registry import Registry
from workflow.spec.fields import choice_label, is_empty
from workflow.spec.model import FieldSpec, WorkflowDefinition

FORMAT = "qms-true-copy/1"


def _iso(value: Any) -> Any:
    return canonical._default(value) if hasattr(value, "isoformat") else value


def record_copy(session: Session, registry: Registry, rec: Record) -> dict[str, Any]:
    """The JSON true copy of ``rec`` (plain JSON types only)."""
    d = registry.by_hash(session, rec.definition_hash).definition
    dv = session.get(DefinitionVersion, rec.definition_id)
    # the same reads as the record page (workflow/queries/records.py): they cannot diverge
    events = [ev for ev, _ in records.audit_events(session, rec)]
    sigs = records.signatures(session, rec)
    superseded = content.superseded(events, rec.data, frozenset(records.damaged_files(rec)))
    links = records.links(session, rec)
    creator = session.get(User, rec.created_by_id)
    people = records.field_people(session, d, rec)
    changed = records.changed_after_entry(events)
    fields = []
    for spec in d.fields.values():
        if spec.name in rec.data:
            fields.append({"name": spec.name, "label": spec.label, "type": spec.type,
                           "value": rec.data[spec.name],
                           "display": display(spec, rec.data[spec.name], people),
                           "changed_after_first_entry": changed.get(spec.name, [])})
    for extra in sorted(set(rec.data) - set(d.fields)):  # values of fields no longer declared
        fields.append({"name": extra, "label": extra, "type": "unknown", "value": rec.data[extra],
                       "display": display(None, rec.data[extra], people),
                       "changed_after_first_entry": changed.get(extra, [])})

    def state_label(name: str | None) -> str | None:
        return d.states[name].label if name in d.states else name

    history = [{"at": _iso(e.at), "from_state": e.from_state, "from_label": state_label(e.from_state),
                "to_state": e.to_state, "to_label": state_label(e.to_state),
                "transition": e.transition, "actor": e.actor_name, "reason": e.reason}
               for e in events if e.to_state is not None]
    return {
        "format": FORMAT,
        "exported_at": _iso(clock.now()),
        "record": {
            "number": rec.number, "title": rec.title, "workflow": rec.workflow_key,
            "workflow_title": d.title, "definition_version": dv.version if dv else None,
            "state": rec.state, "state_label": state_label(rec.state), "outcome": rec.outcome,
            "initiator": {"username": creator.username, "name": creator.full_name}
            if creator else None,
            "created_at": _iso(rec.created_at), "closed_at": _iso(rec.closed_at),
            "due_original": _iso(rec.due_original), "due_current": _iso(rec.due_current),
            "version": rec.version,
        },
        "fields": fields,
        **_document_notice(d, rec),
        "labels": {"states": {k: v.label for k, v in d.states.items()},
                   "steps": {k: v.label for k, v in d.transitions.items()},
                   "roles": dict(d.roles),
                   "fields": {k: v.label for k, v in d.fields.items()},
                   "choice_fields": sorted(k for k, v in d.fields.items() if v.type == "choice")},
        "state_history": history,
        "links": [{"kind": link.kind,
                   "direction": "outgoing" if link.source_id == rec.id else "incoming",
                   "number": other.number, "workflow": other.workflow_key,
                   "title": other.title, "state": other.state, "at": _iso(link.created_at)}
                  for link, other in links],
        "signatures": [{"id": s.id, "printed_name": s.signer_name, "username": s.signer_username,
                        "role": s.signer_role, "signed_at_utc": _iso(s.signed_at),
                        "meaning": s.meaning, "transition": s.transition, "method": s.method,
                        "record_version": s.record_version, "content_hash": s.content_hash,
                        "mac": s.mac,
                        "status": "superseded" if s.id in superseded else "valid"}
                       for s in sigs],
        "audit_trail": [{**{k: _iso(v) for k, v in event_payload(e).items()}, "hash": e.hash}
                        for e in events],
        "integrity": {
            "chain": audit.record_chain(rec.id),
            "chain_head_seq": rec.audit_seq, "chain_head_hash": rec.audit_head,
            "seal": rec.seal,
            "sealed": {k: _iso(getattr(rec, k)) for k in SEALED},
            "definition_hash": rec.definition_hash,
            "note": "event hashes, the chain and the seal are HMAC-SHA256 under the server "
                    "key; check them with workflow.export.check_copy",
        },
    }


def _document_notice(d: WorkflowDefinition, rec: Record) -> dict[str, Any]:
    """A version of a controlled document (the ``document`` capability): its copy says it is
    uncontrolled once printed, and whether the version was in force when copied."""
    cap = d.capabilities.document
    if cap is None:
        return {}
    return {"controlled_document": {
        "number": rec.data.get(cap.number), "version": rec.data.get(cap.version),
        "in_force": rec.state == cap.effective_state, "notice": documents.UNCONTROLLED}}


def display(spec: FieldSpec | None, value: Any, people: Mapping[str, str]) -> Any:
    """How a person reads ``value``: choice labels, printed names, Yes/No; a list as a table
    (``{"columns": [...], "rows": [[...], ...]}``); text otherwise."""
    if is_empty(value):
        return ""
    if spec is None:
        return value if isinstance(value, str) else canonical.dumps(value)
    if spec.type == "list":
        if spec.item is not None:
            return {"columns": [spec.item.label or spec.label],
                    "rows": [[display(spec.item, x, people)] for x in value]}
        return {"columns": [c.label for c in spec.fields],
                "rows": [[display(c, row.get(c.name), people) if isinstance(row, dict) else ""
                          for c in spec.fields] for row in value]}
    if spec.type == "boolean":
        return "Yes" if value else "No"
    if spec.type == "choice":
        return choice_label(value)
    if spec.type == "user":
        name = people.get(value)
        return f"{name} ({value})" if name else str(value)
    if spec.type == "file" and isinstance(value, dict):
        return (f"{value.get('name')} ({value.get('type')}, {value.get('size')} bytes, "
                f"sha256 {value.get('sha256')})")
    return value if isinstance(value, str) else canonical.dumps(value)


def check_copy(doc: dict[str, Any], key: Key) -> list[str]:
    """Problems found re-checking a copy with the server key (empty: the copy is intact)."""
    problems = []
    prev = audit.GENESIS
    trail = doc.get("audit_trail", [])
    for i, ev in enumerate(trail, start=1):
        payload = {k: v for k, v in ev.items() if k != "hash"}
        if ev.get("seq") != i or ev.get("prev_hash") != prev:
            problems.append(f"audit event #{i}: out of sequence or not linked")
        if not keyed_ok(key, payload, ev.get("hash")):
            problems.append(f"audit event #{ev.get('seq')}: content does not match its hash")
        prev = ev.get("hash")
    integ = doc.get("integrity", {})
    if trail and (integ.get("chain_head_hash") != prev or
                  integ.get("chain_head_seq") != len(trail)):
        problems.append("the audit trail does not end at the record's chain head")

    class _Row:
        def __init__(self, values: dict[str, Any]):
            self.__dict__.update(values)

    sealed = integ.get("sealed", {})
    if not record_seal_ok(key, _Row(sealed), integ.get("seal")):
        problems.append("the record's sealed columns do not match its seal")
    data = {f["name"]: f["value"] for f in doc.get("fields", [])}
    if sealed.get("data") != data:
        problems.append("the fields differ from the sealed record data")
    return problems


# --------------------------------------------------------------------------- signed copies

#: the sidecar of a signed PDF copy
PDF_SIGNATURE_FORMAT = "qms-copy-signature/1"


def covering_checkpoint(directory: Path | None, record_id: int) -> dict[str, Any] | None:
    """The newest checkpoint in ``directory`` and where it saw the record's chain, or None
    when no checkpoint covers the record yet (created after the newest one)."""
    if directory is None:
        return None
    found = checkpoints.files(directory)
    if not found:
        return None
    path = found[-1]
    try:
        body = checkpoints.load(path)["checkpoint"]
    except CheckpointError:
        return None
    seen = body.get("records", {}).get(str(record_id))
    if not seen:
        return None
    return {"file": path.name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "created_at": body["created_at"], "record_seq": seen["seq"],
            "record_head": seen["head"]}


def _signature(anchor: AnchorKeys, data: bytes) -> dict[str, Any]:
    key_id, value = anchor.sign(data)
    return {"algorithm": "Ed25519", "key_id": key_id,
            "public_key_sha256": anchor.public_fingerprint(key_id), "value": value}


def signed_part(doc: dict[str, Any]) -> dict[str, Any]:
    """What a JSON copy's signature covers: the copy without its ``signature`` member."""
    return {k: v for k, v in doc.items() if k != "signature"}


def sign_copy(doc: dict[str, Any], anchor: AnchorKeys, checkpoint_dir: Path | None
              ) -> dict[str, Any]:
    """The JSON copy with the checkpoint covering the record (``integrity.checkpoint``, or
    None) and an Ed25519 signature over its canonical JSON (``signature``)."""
    out = json.loads(canonical.dumps(signed_part(doc)))  # plain JSON: what a file holds
    record_id = int(out["integrity"]["chain"].split(":", 1)[1])
    out["integrity"]["checkpoint"] = covering_checkpoint(checkpoint_dir, record_id)
    out["integrity"]["signed_by"] = ("the system's Ed25519 anchor key; verify with `qms "
                                     "verify-copy FILE --public-key KEY` (docs/inspector.md)")
    out["signature"] = _signature(anchor, canonical.dumps(out).encode())
    return out


def sign_pdf(pdf: bytes, doc: dict[str, Any], anchor: AnchorKeys, name: str) -> dict[str, Any]:
    """The sidecar of a PDF copy: an Ed25519 signature over the PDF's exact bytes, with the
    record, its chain head and its covering checkpoint (all also printed in the PDF)."""
    integ = doc["integrity"]
    return {"format": PDF_SIGNATURE_FORMAT, "file": name,
            "sha256": hashlib.sha256(pdf).hexdigest(), "record": doc["record"]["number"],
            "chain_head": {"seq": integ["chain_head_seq"], "hash": integ["chain_head_hash"]},
            "checkpoint": integ.get("checkpoint"), **_signature(anchor, pdf)}


def check_signed(path: Path, public_keys: list[Any]) -> tuple[dict[str, Any], list[str]]:
    """A signed copy (JSON with its ``signature``, or a PDF with ``<file>.sig``) checked with
    the public key(s) alone; returns what it says (record, chain head, checkpoint) and the
    problems (empty: verified). Unreadable input raises :class:`CheckpointError`."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(str(path), f"cannot read {path}: {exc.strerror or exc}") from None
    if raw.startswith(b"%PDF"):
        side = path.with_name(path.name + ".sig")
        try:
            sig = json.loads(side.read_bytes())
        except FileNotFoundError:
            raise CheckpointError(str(side), f"the PDF copy's signature {side} is missing: a "
                                             "signed PDF copy comes with its .sig file") from None
        except (OSError, ValueError) as exc:
            raise CheckpointError(str(side), f"{side} is not a copy signature: {exc}") from None
        if not isinstance(sig, dict) or sig.get("format") != PDF_SIGNATURE_FORMAT:
            raise CheckpointError(str(side), f"{side} is not a copy signature (expected format "
                                             f"{PDF_SIGNATURE_FORMAT})")
        data = raw
        info = {"record": sig.get("record"), "chain_head": sig.get("chain_head"),
                "checkpoint": sig.get("checkpoint")}
        extra = [] if sig.get("sha256") == hashlib.sha256(raw).hexdigest() else [
            "the PDF's sha256 differs from the one its signature names: the PDF was changed"]
    else:
        try:
            doc = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise CheckpointError(str(path), f"{path} is neither a PDF nor a JSON true copy "
                                             f"({exc})") from None
        sig = doc.get("signature") if isinstance(doc, dict) else None
        if not isinstance(sig, dict) or doc.get("format") != FORMAT:
            raise CheckpointError(str(path), f"{path} is not a signed true copy (expected format "
                                             f"{FORMAT} with a signature)")
        data = canonical.dumps(signed_part(doc)).encode()
        integ = doc.get("integrity", {})
        info = {"record": doc.get("record", {}).get("number"),
                "chain_head": {"seq": integ.get("chain_head_seq"),
                               "hash": integ.get("chain_head_hash")},
                "checkpoint": integ.get("checkpoint")}
        extra = []
    if not isinstance(sig.get("value"), str):
        raise CheckpointError(str(path), f"the signature of {path} has no value")
    ok = any(k is not None and verify_ed25519(k, data, sig["value"]) for k in public_keys)
    problems = [] if ok else [
        f"the signature (anchor key {sig.get('key_id')}) does not verify with the public key(s) "
        "given: the copy was changed after it was signed, or it was not signed by this system"]
    return {**info, "key_id": sig.get("key_id")}, problems + extra


def export_record(session: Session, registry: Registry, number: str, actor: User,
                  fmt: str, reason: str, *, anchor: AnchorKeys | None = None,
                  checkpoint_dir: Path | None = None) -> dict[str, Any]:
    """Build the copy (signed with ``anchor`` when given, see :func:`sign_copy`) and audit
    the export on the system chain with the copy's sha256 (caller's unit commits)."""
    rec = session.execute(select(Record).where(Record.number == number.strip().upper())
                          ).scalar_one_or_none()
    if rec is None:
        raise RecordNotFound(number)
    doc = record_copy(session, registry, rec)
    if anchor is not None:
        doc = sign_copy(doc, anchor, checkpoint_dir)
    audit.system_event(session, at=clock.now(), actor=actor, action="record_exported",
                       changes={"number": rec.number, "format": fmt,
                                "sha256": canonical.sha256(doc)},
                       reason=reason)
    return doc


def export(engine: Engine, number: str, fmt: str, reason: str,
           actor: str | None = None, *, anchor: AnchorKeys | None = None,
           checkpoint_dir: Path | None = None, visible_only: bool = False) -> dict[str, Any]:
    """The command: build the true copy of ``number`` (signed with ``anchor``, naming the
    newest checkpoint of ``checkpoint_dir`` that covers it) and audit its export, in one
    unit; ``actor`` is the person exporting (the system account when not given). With
    ``visible_only`` (the web UI and the API) a record ``actor`` may not see is not found
    (the one visibility rule) and nothing is audited."""
    with engine.unit() as session:
        user = identity.get_user(session, actor) if actor else identity.system_user(session)
        if visible_only:
            engine.get(number.strip().upper(), viewer=user, session=session)
        return export_record(session, engine.registry, number, user, fmt, reason,
                             anchor=anchor, checkpoint_dir=checkpoint_dir)


