"""The API's views and ``ROUTES``, the one table that both registers them with Flask and
generates the OpenAPI document.

Views read through the engine (``Engine.get(..., viewer=...)`` decides visibility) and write
only through ``Engine.start`` / ``Engine.fire``: the API adds no business rules.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from flask import request
from sqlalchemy.orm import Session

from webapp import downloads
from webapp.api import spec
from webapp.api.core import (
    decode_cursor,
    encode_cursor,
    limiter,
    require_scope,
    signature_from,
)
from webapp.api.spec import Param, Route
from webapp.context import engine, read_session
from webapp.errors import ApiError
from workflow import blobs, clock
from workflow import tasks as wf_inbox
from workflow.db.models import (
    DefinitionVersion,
    Record,
)
from workflow.errors import ValidationFailed, WorkflowError
from workflow.identity import tokens as api_tokens
from workflow.identity import users as identity
from workflow.kpi import SPECS, Kpi, Period
from workflow.kpi.specs import SYSTEM_METRIC_ROLES
from workflow.queries import attachments, definitions, records, search
from workflow.resources import definitions_dir
from workflow.spec.load import peek_keys

Caller = api_tokens.Caller


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


# ------------------------------------------------------------------ serialisation


def _summary(session: Session, rec: Record) -> dict[str, Any]:
    compiled = engine().registry.by_hash(session, rec.definition_hash)
    state = compiled.definition.states.get(rec.state)
    return {
        "number": rec.number, "workflow": rec.workflow_key,
        "definition_version": compiled.version, "title": rec.title, "state": rec.state,
        "state_label": state.label if state else rec.state, "version": rec.version,
        "created_at": _iso(rec.created_at), "updated_at": _iso(rec.updated_at),
        "closed_at": _iso(rec.closed_at), "outcome": rec.outcome,
        "due_current": _iso(rec.due_current),
    }


def _record(page: records.RecordView) -> dict[str, Any]:
    rec, creator = page.record, page.creator
    out = _summary(read_session(), rec)
    outgoing = [{"number": other.number, "kind": link.kind, "direction": "outgoing"}
                for link, other in page.links if link.source_id == rec.id]
    incoming = [{"number": other.number, "kind": link.kind, "direction": "incoming"}
                for link, other in page.links if link.source_id != rec.id]
    out.update(definition_hash=rec.definition_hash, data=rec.data,
               created_by={"username": creator.username, "name": creator.full_name}
               if creator else None,
               due_original=_iso(rec.due_original), links=outgoing + incoming)
    return out


def _visible(caller: Caller, number: str) -> Record:
    """The record if the caller may see it (the engine decides); 404 otherwise."""
    return engine().get(number, viewer=caller.username, session=read_session())


# ------------------------------------------------------------------ views


def openapi_document() -> Any:
    return spec.openapi(ROUTES, limiter().limit)


def me(caller: Caller) -> Any:
    return {"username": caller.username, "name": caller.full_name,
            "roles": sorted(caller.roles),
            "token": {"prefix": caller.prefix, "scopes": sorted(caller.scopes)}}


def _day(query: dict[str, Any], name: str, *, end: bool = False) -> datetime | None:
    raw = query.get(name)
    if not raw:
        return None
    try:
        d = date.fromisoformat(raw)
    except ValueError:
        raise ApiError(400, "bad_request", f"{name} must be a date YYYY-MM-DD.") from None
    return datetime.combine(d + timedelta(days=1) if end else d, time(0), tzinfo=UTC)


def list_records(caller: Caller, query: dict[str, Any]) -> Any:
    """Records the caller may see (the engine's visibility rule as a query: a role of the
    record's workflow version, the initiator, or a task assigned to them) matching the
    search (workflow/queries/search.py, the same as the /records page), one keyset page."""
    rq = search.RecordQuery(
        q=query["q"] or "", workflow=query["workflow"] or "", state=query["state"] or "",
        status=query["status"] or "", initiator=query["initiator"] or "",
        assignee=query["owner"] or "", overdue=bool(query["overdue"]),
        created_from=_day(query, "created_from"), created_to=_day(query, "created_to", end=True),
        updated_from=_day(query, "updated_from"), updated_to=_day(query, "updated_to", end=True),
        sort=query["sort"] or "newest")
    s = read_session()
    user = identity.get_user(s, caller.username)
    roles = identity.roles_of(s, user)
    try:
        page = search.search(s, engine().registry, user, roles, rq,
                             cursor=query["cursor"] or None, limit=query["limit"],
                             count=bool(query["count"]))
    except ValidationFailed as exc:
        if "cursor" in exc.errors:
            raise ApiError(400, "bad_cursor", "The cursor is not valid; start again from the "
                                              "first page.") from None
        raise ApiError(400, "bad_request", str(exc)) from None
    out: dict[str, Any] = {"items": [_summary(s, r) for r in page.records],
                           "next_cursor": page.next, "previous_cursor": page.previous}
    if query["count"]:
        out.update(total=page.total, total_capped=page.capped)
    return out


def get_record(caller: Caller, number: str) -> Any:
    return _record(records.record_view(read_session(), engine(), number, caller.username))


def create_record(caller: Caller, body: dict[str, Any]) -> Any:
    r = engine().start(body["workflow"], caller.username, body["data"],
                       reason=(body.get("reason") or "").strip() or None)
    # the unit that created it checked who may start it: no visibility check again
    out = _record(records.record_view(read_session(), engine(), r.number, None))
    return out, 201, {"Location": f"{spec.API_PREFIX}/records/{r.number}"}


def _transition(t: Any) -> dict[str, Any]:
    return {
        "name": t.name, "label": t.label, "to_state": t.dest, "edits": list(t.edits),
        "requires": list(t.requires), "reason_required": t.reason_required,
        "guards": [g.message for g in t.guards],
        "signature": None if t.signature is None else {
            "meaning": t.signature.meaning, "roles": list(t.signature.roles),
            "quorum": t.signature.quorum},
    }


def list_transitions(caller: Caller, number: str) -> Any:
    rec = _visible(caller, number)
    available = engine().available_transitions(rec.number, caller.username,
                                               session=read_session())
    return {"record": rec.number, "version": rec.version, "state": rec.state,
            "items": [_transition(t) for t in available]}


def fire_transition(caller: Caller, number: str, transition: str, body: dict[str, Any]) -> Any:
    signature = body.get("signature")
    if signature is not None:
        # a token alone never signs: the 'sign' scope AND the signer's credentials
        require_scope(caller, "sign", "this request carries a signature")
    r = engine().fire(number, transition, caller.username, body.get("data") or {},
                      signature=signature_from(signature),
                      reason=(body.get("reason") or "").strip() or None,
                      expected_version=body["expected_version"])
    # lean: the record as written, not the record page (its unit checked the caller may see
    # it; the trail, signatures and step options are not part of the answer)
    record = _record(records.record_view(read_session(), engine(), r.number, None))
    return {"record": record, "moved": r.moved, "signatures_needed": r.signatures_needed,
            "signature_id": r.signature_id, "created": [n for n in r.created if n != r.number]}


def _extension(e: records.ExtensionRow) -> dict[str, Any]:
    return {"id": e.id, "status": e.status, "requested_by": e.requested_by,
            "requested_at": _iso(e.requested_at), "old_due": _iso(e.old_due),
            "new_due": _iso(e.new_due), "reason": e.reason, "decided_by": e.decided_by,
            "decided_at": _iso(e.decided_at), "decision_reason": e.decision_reason,
            "signature_id": e.signature_id}


def _extensions(rec: Record) -> dict[str, Any]:
    return {"record": rec.number, "version": rec.version,
            "due_original": _iso(rec.due_original), "due_current": _iso(rec.due_current),
            "items": [_extension(e) for e in records.extensions(read_session(), rec)]}


def list_extensions(caller: Caller, number: str) -> Any:
    return _extensions(_visible(caller, number))


def request_extension(caller: Caller, number: str, body: dict[str, Any]) -> Any:
    rec = _visible(caller, number)
    try:
        day = datetime.strptime(body["new_due"], "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise ApiError(400, "bad_request", "new_due must be a date, YYYY-MM-DD.") from None
    # due at the end of that day (23:59:59 UTC), as the web form and the CLI ask
    ext_id = engine().request_extension(rec.number, caller.username,
                                        day.replace(hour=23, minute=59, second=59),
                                        body["reason"].strip(),
                                        expected_version=body["expected_version"])
    out = _extensions(_visible(caller, number))
    out["id"] = ext_id
    return out, 201


def decide_extension(caller: Caller, extension_id: str, body: dict[str, Any]) -> Any:
    try:
        ext_id = int(extension_id)
    except ValueError:
        ext_id = 0
    if not 0 < ext_id < 2**31:
        raise ApiError(404, "not_found", "There is no such extension request.")
    signature = body.get("signature")
    if signature is not None:
        require_scope(caller, "sign", "this request carries a signature")
    r = engine().decide_extension(ext_id, caller.username, body["approve"],
                                  signature=signature_from(signature),
                                  reason=(body.get("reason") or "").strip() or None)
    return _extensions(_visible(caller, r.number))


def record_audit(caller: Caller, number: str) -> Any:
    rec = _visible(caller, number)
    rows = records.audit_events(read_session(), rec)
    return {"record": rec.number, "items": [{
        "seq": ev.seq, "at": _iso(ev.at), "actor": ev.actor_name, "actor_username": username,
        "action": ev.action, "transition": ev.transition, "from_state": ev.from_state,
        "to_state": ev.to_state, "record_version": ev.record_version,
        "changes": ev.changes or {}, "reason": ev.reason, "hash": ev.hash,
        "prev_hash": ev.prev_hash} for ev, username in rows]}


def record_copy_pdf(caller: Caller, number: str) -> Any:
    return downloads.true_copy(number, "pdf", caller.username, "true copy downloaded via the API")


def record_copy_json(caller: Caller, number: str) -> Any:
    return downloads.true_copy(number, "json", caller.username, "true copy downloaded via the API")


def record_file(caller: Caller, number: str, sha256: str) -> Any:
    if not blobs.SHA256.match(sha256):
        raise ApiError(404, "not_found", "There is no such file on this record.")
    return downloads.attachment_file(number, sha256, caller.username)


def upload_file(caller: Caller, query: dict[str, Any]) -> Any:
    downloads.allow_uploads()  # before the body is read
    data = request.get_data(cache=False)
    value = attachments.upload(engine(), caller.username, query["name"], data)
    return {"file": value}, 201


def record_signatures(caller: Caller, number: str) -> Any:
    rec = _visible(caller, number)
    sigs = records.signatures(read_session(), rec)
    superseded = records.superseded(read_session(), rec)
    return {"record": rec.number, "items": [{
        "id": sig.id,
        "manifestation": {
            "printed_name": sig.signer_name, "signed_at_utc": _iso(sig.signed_at),
            "meaning": sig.meaning,
            "text": f"{sig.signer_name}, {sig.signed_at:%Y-%m-%d %H:%M:%S} UTC, {sig.meaning}"},
        "username": sig.signer_username, "role": sig.signer_role,
        "transition": sig.transition, "method": sig.method,
        "record_version": sig.record_version, "content_hash": sig.content_hash,
        "status": "superseded" if sig.id in superseded else "valid"}
        for sig in sigs]}


_INBOX_CURSOR = re.compile(r"^([^|]{10,40})\|(\d{1,18})$")


def list_tasks(caller: Caller, query: dict[str, Any]) -> Any:
    cursor = decode_cursor(query["cursor"])
    if cursor is not None:
        m = _INBOX_CURSOR.match(cursor)
        try:
            ok = m is not None and datetime.fromisoformat(m.group(1)).tzinfo is not None
        except ValueError:
            ok = False
        if not ok:
            raise ApiError(400, "bad_cursor", "The cursor is not valid; start again from the "
                                              "first page.")
    now = clock.now()
    s = read_session()
    user = identity.get_user(s, caller.username)
    try:
        page = wf_inbox.inbox(s, user, workflow=query["workflow"], state=query["state"],
                              overdue=query["overdue"], search=query["q"],
                              scope=query["scope"], cursor=cursor, limit=query["limit"])
    except WorkflowError as exc:
        raise ApiError(400, "bad_cursor", exc.message) from None
    return {
        "items": [{"task_id": r.task_id, "number": r.number, "title": r.title,
                   "workflow": r.workflow, "state": r.state, "role": r.role,
                   "assignee": r.assignee, "mine": r.mine, "opened_at": _iso(r.opened_at),
                   "due_at": _iso(r.due_at), "overdue": r.due_at is not None and r.due_at < now}
                  for r in page.rows],
        "next_cursor": encode_cursor(page.next_cursor) if page.next_cursor else None,
        "counts": page.counts, "total": page.total, "counts_capped": page.capped,
    }


def _versions(rows: list[DefinitionVersion]) -> list[dict[str, Any]]:
    return [{"version": r.version, "content_hash": r.content_hash,
             "published_at": _iso(r.published_at)} for r in rows]


def list_definitions(caller: Caller) -> Any:
    by_key = definitions.versions_by_key(read_session())
    return {"items": [{"key": k, "title": v[-1].title, "latest_version": v[-1].version,
                       "versions": _versions(v)} for k, v in by_key.items()]}


def get_definition(caller: Caller, key: str, query: dict[str, Any]) -> Any:
    s = read_session()
    rows = definitions.versions_of(s, key)
    wanted = query["version"]
    row = rows[-1] if rows and wanted is None else \
        next((r for r in rows if r.version == wanted), None)
    if row is None:
        raise ApiError(404, "not_found", f"There is no published workflow {key!r}"
                       + (f" version {wanted}." if wanted is not None and rows else "."))
    d = engine().registry.by_hash(s, row.content_hash).definition
    return {"key": row.key, "title": row.title, "version": row.version,
            "content_hash": row.content_hash, "published_at": _iso(row.published_at),
            "published_by": definitions.publisher_of(s, row),
            "source": row.source,
            "start": {"roles": list(d.start_roles), "fields": list(d.start_edits),
                      "requires": list(d.start_requires)},
            "versions": _versions(rows)}


_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
#: system-wide metrics (security events, user accounts): as on the dashboard
_SYSTEM_KPI_ROLES = set(SYSTEM_METRIC_ROLES)
#: the built-in metrics' workflows and every shipped definition (which may declare kpis:)
KPI_WORKFLOWS = sorted({s.workflow for s in SPECS.values() if s.workflow}
                       | set(peek_keys(sorted(definitions_dir().glob("*.yaml")))))


def list_kpis(caller: Caller, query: dict[str, Any]) -> Any:
    """The KPIs of docs/kpis.md for the caller: only records they may see count (workflow.kpi
    applies the engine's visibility rule); system-wide metrics only for qa, admin, isms."""
    first, last = query["from"], query["to"]
    for name, v in (("from", first), ("to", last)):
        if v is not None and not _MONTH.match(v):
            raise ApiError(400, "bad_request", f"{name} must be a month written YYYY-MM.")
    period = Period.months(first or last, last or first) if (first or last) else \
        Period.last_months(12)
    wf = query["workflow"]
    s = read_session()
    k = Kpi(s, engine().registry, caller.username, period)
    specs = k.specs()  # built-in and declared (definitions' kpis:)
    keys = [key for key, sp in specs.items()
            if (sp.workflow == wf if wf else
                sp.workflow is not None or _SYSTEM_KPI_ROLES & set(caller.roles))]
    metrics = k.metrics(keys)
    as_of = k.as_of
    return {
        "period": {"from": period.start.strftime("%Y-%m"),
                   "to": (period.end - timedelta(days=1)).strftime("%Y-%m"),
                   "start": _iso(period.start), "end": _iso(period.end)},
        "as_of": _iso(as_of), "viewer": caller.username,
        "items": [{"key": m.key, "label": m.label, "workflow": specs[m.key].workflow,
                   "unit": m.show, "value": m.value, "numerator": m.numerator,
                   "denominator": m.denominator, "p90": m.p90, "status": m.status,
                   **({"groups": m.groups} if m.groups is not None else {})}
                  for m in metrics.values()],
    }


# ------------------------------------------------------------------ the route table

_NUMBER = Param("number", "path", {"type": "string", "minLength": 1, "maxLength": 40},
                "record number, e.g. DEV-2026-0001")
_LIMIT = Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 100,
                                  "default": 25}, "page size")
_CURSOR = Param("cursor", "query", {"type": "string", "maxLength": 200},
                "next_cursor of the previous page")
_WORKFLOW = Param("workflow", "query", {"type": "string", "maxLength": 40},
                  "definition key, e.g. deviation")
_STATE = Param("state", "query", {"type": "string", "maxLength": 40}, "state name")
_Q = Param("q", "query", {"type": "string", "maxLength": 200},
           "words in the record number, title or text values (every word, as a word or "
           "its start; case ignored)")
_SEARCH = (
    Param("status", "query", {"type": "string", "enum": ["open", "closed"]},
          "open or closed records only"),
    Param("initiator", "query", {"type": "string", "maxLength": 64},
          "username of the person who started the record"),
    Param("owner", "query", {"type": "string", "maxLength": 64},
          "username holding an open task on the record"),
    Param("overdue", "query", {"type": "boolean"}, "open records past their due date only"),
    *(Param(n, "query", {"type": "string", "format": "date", "maxLength": 10},
            f"{n.replace('_', ' ')} (YYYY-MM-DD, UTC; 'to' includes the day)")
      for n in ("created_from", "created_to", "updated_from", "updated_to")),
    Param("sort", "query", {"type": "string", "enum": list(search.SORTS), "default": "newest"},
          "newest (default), oldest, updated (recently updated), number, due (soonest due)"),
    Param("count", "query", {"type": "boolean"},
          f"also count the matches (up to {search.COUNT_CAP:,}; total_capped says there are "
          "more)"),
)

ROUTES: tuple[Route, ...] = (
    Route("GET", "/openapi.json", openapi_document, "This OpenAPI document", None, "meta"),
    Route("GET", "/me", me, "The token's user, roles and scopes", "read", "meta",
          response="Me"),
    Route("GET", "/records", list_records, "Search the records visible to you (newest first "
          "by default)", "read", "records", response="RecordPage",
          params=(_Q, _WORKFLOW, _STATE, *_SEARCH, _LIMIT, _CURSOR),
          errors=(400,)),
    Route("POST", "/records", create_record, "Start a record", "write", "records", ok=201,
          response="Record", body=spec.CREATE_BODY, errors=(422,),
          description="Creates a record of the newest published version of `workflow` in "
                      "its initial state, as the token's user (who needs a start role)."),
    Route("GET", "/records/{number}", get_record, "One record with its data and links",
          "read", "records", response="Record", params=(_NUMBER,), errors=(404,)),
    Route("GET", "/records/{number}/transitions", list_transitions,
          "Steps you may take on the record now", "read", "transitions",
          response="TransitionList", params=(_NUMBER,), errors=(404,),
          description="By state, role and segregation of duties; guards and signatures are "
                      "checked when firing."),
    Route("POST", "/records/{number}/transitions/{transition}", fire_transition,
          "Take a step (optionally signed)", "write", "transitions", response="FireResult",
          params=(_NUMBER, Param("transition", "path", {"type": "string", "minLength": 1,
                                                        "maxLength": 40}, "step name")),
          body=spec.FIRE_BODY, errors=(404, 409, 422),
          description="A `signature` needs the token scope `sign` AND the signer's own "
                      "username, password and (where required) authenticator code; a wrong "
                      "password counts toward account lockout like in the web UI."),
    Route("GET", "/records/{number}/extensions", list_extensions,
          "The record's due dates and due-date extension requests", "read", "extensions",
          response="ExtensionList", params=(_NUMBER,), errors=(404,)),
    Route("POST", "/records/{number}/extensions", request_extension,
          "Request a due-date extension", "write", "extensions", ok=201,
          response="ExtensionList", params=(_NUMBER,), body=spec.EXTENSION_BODY,
          errors=(400, 403, 404, 409, 422),
          description="Anyone working on an open record (a role of its workflow, or its "
                      "initiator) asks to move its current due date; one request at a time. "
                      "The due date moves only when the definition's extension roles "
                      "approve it with a signature."),
    Route("POST", "/extensions/{extension_id}/decision", decide_extension,
          "Approve (signed) or reject (with a reason) a due-date extension request",
          "write", "extensions", response="ExtensionList",
          params=(Param("extension_id", "path", {"type": "integer", "minimum": 1,
                                                   "maximum": 2**31 - 1},
                        "the extension request's id"),),
          body=spec.DECISION_BODY, errors=(403, 404, 422),
          description="Needs one of the definition's extension roles; not the requester. "
                      "Approving needs a `signature` (token scope `sign` AND the signer's "
                      "credentials, meaning \"Extension approved\"); rejecting needs a "
                      "`reason`."),
    Route("GET", "/records/{number}/audit", record_audit, "The record's audit trail", "read",
          "audit", response="AuditTrail", params=(_NUMBER,), errors=(404,)),
    Route("GET", "/records/{number}/copy.pdf", record_copy_pdf,
          "The record's signed true copy as PDF", "read", "audit", params=(_NUMBER,),
          errors=(404,), media="application/pdf",
          description="Fields with labels, signature manifestations, state history, links and "
                      "the whole audit trail, in embedded Unicode fonts (21 CFR 11.10(b)). The "
                      "Ed25519 signature over the PDF's exact bytes is in the header "
                      "`X-QMS-Copy-Signature` (base64 of the `.sig` file `qms verify-copy` "
                      "reads). The download is audited with the token's user."),
    Route("GET", "/records/{number}/copy.json", record_copy_json,
          "The record's signed true copy as JSON", "read", "audit", params=(_NUMBER,),
          errors=(404,), media="application/json",
          description="The electronic true copy (format `qms-true-copy/1`) with its Ed25519 "
                      "`signature`, checkable with `qms verify-copy`; audited with the "
                      "token's user."),
    Route("POST", "/files", upload_file, "Upload a file to attach in a step", "write",
          "records", ok=201, response="FileValue", upload=True,
          params=(Param("name", "query", {"type": "string", "minLength": 1, "maxLength": 255},
                        "the file's name (shown and offered on download)", required=True),),
          errors=(415, 422),
          description="The request body is the file itself (any Content-Type; the type is "
                      "read from the content). Checked against QMS_ATTACHMENT_MAX_BYTES (413 "
                      "attachment_too_large) and QMS_ATTACHMENT_TYPES (415 "
                      "attachment_type_refused), stored under its SHA-256 and audited with "
                      "the token's user; nothing is stored when it is refused. Put the "
                      "returned `file` value into a step's `data` for a field of type file "
                      "(docs/attachments.md)."),
    Route("GET", "/records/{number}/files/{sha256}", record_file,
          "A file the record holds (or held), by its SHA-256", "read", "records",
          params=(_NUMBER, Param("sha256", "path", {"type": "string", "minLength": 64,
                                                    "maxLength": 64,
                                                    "pattern": "^[0-9a-f]{64}$"},
                                 "the file's SHA-256, as in the record's data")),
          errors=(404, 409), media="application/octet-stream",
          description="Sent as an attachment (its detected type in Content-Type, its name in "
                      "Content-Disposition, its SHA-256 in X-QMS-SHA256); audited with the "
                      "token's user. 404 when you may not see the record or it holds no "
                      "such file; 409 `attachment_damaged` when the stored bytes no longer "
                      "match their SHA-256 (docs/attachments.md)."),
    Route("GET", "/records/{number}/signatures", record_signatures,
          "The record's electronic signatures with their manifestation", "read", "audit",
          response="SignatureList", params=(_NUMBER,), errors=(404,)),
    Route("GET", "/tasks", list_tasks, "Your inbox: your tasks and tasks open to your roles",
          "read", "tasks", response="TaskPage",
          params=(Param("scope", "query", {"type": "string", "enum": ["all", "mine",
                                                                      "claimable"],
                                           "default": "all"}),
                  _WORKFLOW, _STATE,
                  Param("overdue", "query", {"type": "boolean", "default": False},
                        "only overdue tasks"),
                  _Q, _LIMIT, _CURSOR),
          errors=(400,)),
    Route("GET", "/definitions", list_definitions, "Published workflow definitions",
          "read", "definitions", response="DefinitionList"),
    Route("GET", "/definitions/{key}", get_definition,
          "One definition version with its source and hash", "read", "definitions",
          response="Definition",
          params=(Param("key", "path", {"type": "string", "minLength": 1, "maxLength": 40},
                        "definition key"),
                  Param("version", "query", {"type": "integer", "minimum": 1,
                                             "maximum": 1_000_000},
                        "a published version (default: the newest)")),
          errors=(400, 404)),
    Route("GET", "/kpis", list_kpis, "Quality KPIs over the records visible to you", "read",
          "kpis", response="KpiList",
          params=(Param("from", "query", {"type": "string", "pattern": r"^\d{4}-(0[1-9]|1[0-2])$",
                                          "maxLength": 7},
                        "first month, YYYY-MM (default: the last 12 months)"),
                  Param("to", "query", {"type": "string", "pattern": r"^\d{4}-(0[1-9]|1[0-2])$",
                                        "maxLength": 7}, "last month, YYYY-MM"),
                  Param("workflow", "query", {"type": "string", "enum": KPI_WORKFLOWS},
                        "only this workflow's metrics")),
          errors=(400,),
          description="The metrics defined in docs/kpis.md, computed as on the dashboard for "
                      "the token's user: only records they may see count. System-wide metrics "
                      "(security events, user accounts) only for qa, admin and isms; a "
                      "workflow filter leaves them out. Rates are fractions; a rate with an "
                      "empty denominator is null."),
)
