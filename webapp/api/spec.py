"""The route table's types, the JSON schemas, and the OpenAPI document built from the table.

The table itself (``views.ROUTES``) is the only description of the API: Flask routes are
registered from it, request bodies and query parameters are validated against the schemas
it names, and ``/api/v1/openapi.json`` is generated from it, so the document cannot drift
from the implementation (a test compares it with Flask's URL map as well).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

API_PREFIX = "/api/v1"
API_VERSION = "1.0.0"

# ------------------------------------------------------------------ table types


@dataclass(frozen=True)
class Param:
    """A path or query parameter; ``schema`` is a JSON schema of a string/integer/boolean."""

    name: str
    where: str  # "path" | "query"
    schema: dict[str, Any]
    description: str = ""
    required: bool = False


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # OpenAPI form: /records/{number}
    view: Callable[..., Any]
    summary: str
    scope: str | None  # None: no token needed (the OpenAPI document itself)
    tag: str
    ok: int = 200
    response: str | None = None  # name of a component schema
    params: tuple[Param, ...] = ()
    body: dict[str, Any] | None = None  # request body JSON schema
    errors: tuple[int, ...] = ()
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    media: str = "application/json"  # of the OK answer (a file: application/pdf, ...)
    upload: bool = False  # the request body is a file (application/octet-stream), not JSON

    @property
    def endpoint(self) -> str:
        return self.view.__name__

    @property
    def flask_path(self) -> str:
        """The rule inside the blueprint (which is mounted at API_PREFIX)."""
        return re.sub(r"\{(\w+)\}", r"<\1>", self.path)


# ------------------------------------------------------------------ schemas

_STR = {"type": "string"}
_TIME = {"type": "string", "format": "date-time"}
_NTIME = {"type": "string", "format": "date-time", "nullable": True}
_NSTR = {"type": "string", "nullable": True}
_INT = {"type": "integer"}
_BOOL = {"type": "boolean"}
_OBJ = {"type": "object", "additionalProperties": True}


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(props: dict[str, Any], required: tuple[str, ...] | None = None) -> dict[str, Any]:
    return {"type": "object", "properties": props,
            "required": list(required if required is not None else props)}


def _page(item: str) -> dict[str, Any]:
    return _obj({"items": {"type": "array", "items": ref(item)},
                 "next_cursor": {**_NSTR, "description": "pass as `cursor` for the next "
                                                         "page; null on the last page"}})


SCHEMAS: dict[str, dict[str, Any]] = {
    "Error": _obj({"error": {
        "type": "object",
        "properties": {
            "code": {**_STR, "description": "stable, machine-readable"},
            "message": {**_STR, "description": "for a person"},
        },
        "required": ["code", "message"],
        "additionalProperties": True,
        "description": "More members by code: current_version and expected_version "
                       "(stale_record), errors (validation_failed: field -> problem), rule "
                       "(segregation_of_duties), required_roles (not_authorized), available "
                       "(transition_not_available), meaning (signature_required), missing "
                       "(training_required), required_scope (insufficient_scope)."}}),
    "FileValue": _obj({"file": _obj({
        "sha256": _STR, "name": _STR, "size": _INT,
        "type": {**_STR, "description": "media type read from the content"}})}),
    "Person": _obj({"username": _STR, "name": {**_STR, "description": "printed name"}}),
    "Me": _obj({"username": _STR, "name": _STR, "roles": {"type": "array", "items": _STR},
                "token": _obj({"prefix": _STR, "scopes": {"type": "array", "items": _STR}})}),
    "RecordSummary": _obj({
        "number": _STR, "workflow": _STR, "definition_version": _INT, "title": _STR,
        "state": _STR, "state_label": _STR, "version": {**_INT, "description":
                                                       "pass as expected_version when firing"},
        "created_at": _TIME, "updated_at": _TIME, "closed_at": _NTIME,
        "outcome": _NSTR, "due_current": _NTIME}),
    "Record": {"allOf": [ref("RecordSummary"), _obj({
        "definition_hash": _STR, "data": _OBJ, "created_by": ref("Person"),
        "due_original": _NTIME,
        "links": {"type": "array", "items": _obj({
            "number": _STR, "kind": _STR,
            "direction": {"type": "string", "enum": ["outgoing", "incoming"]}})},
    })]},
    "RecordPage": _obj({
        **_page("RecordSummary")["properties"],
        "previous_cursor": {**_NSTR, "description": "pass as `cursor` for the page before; "
                                                    "null on the first page"},
        "total": {**_INT, "description": "with count=true: matching records, at most 1,000"},
        "total_capped": {**_BOOL, "description": "with count=true: more than `total` match"},
    }, required=("items", "next_cursor", "previous_cursor")),
    "Transition": _obj({
        "name": _STR, "label": _STR, "to_state": _STR,
        "edits": {"type": "array", "items": _STR},
        "requires": {"type": "array", "items": _STR},
        "reason_required": _BOOL,
        "guards": {"type": "array", "items": _STR,
                   "description": "the rules checked when firing, as messages"},
        "signature": {"type": "object", "nullable": True, "properties": {
            "meaning": _STR, "roles": {"type": "array", "items": _STR}, "quorum": _INT},
            "required": ["meaning", "roles", "quorum"]}}),
    "TransitionList": _obj({"record": _STR, "version": _INT, "state": _STR,
                            "items": {"type": "array", "items": ref("Transition")}}),
    "FireResult": _obj({
        "record": ref("Record"),
        "moved": {**_BOOL, "description": "false while a signature quorum is not met"},
        "signatures_needed": _INT, "signature_id": {**_INT, "nullable": True},
        "created": {"type": "array", "items": _STR,
                    "description": "records created by this step (e.g. a CAPA)"}}),
    "Task": _obj({
        "task_id": _INT, "number": _STR, "title": _STR, "workflow": _STR, "state": _STR,
        "role": _NSTR, "assignee": _NSTR, "mine": _BOOL, "opened_at": _TIME,
        "due_at": _NTIME, "overdue": _BOOL}),
    "TaskPage": {"allOf": [_page("Task"), _obj({
        "counts": {"type": "object", "additionalProperties": _INT,
                   "description": "open tasks per workflow (whole inbox, all pages)"},
        "total": _INT})]},
    "DefinitionVersion": _obj({"version": _INT, "content_hash": _STR, "published_at": _TIME}),
    "DefinitionSummary": _obj({"key": _STR, "title": _STR, "latest_version": _INT,
                               "versions": {"type": "array", "items": ref("DefinitionVersion")}}),
    "DefinitionList": _obj({"items": {"type": "array", "items": ref("DefinitionSummary")}}),
    "Definition": _obj({
        "key": _STR, "title": _STR, "version": _INT,
        "content_hash": {**_STR, "description": "SHA-256 of the canonical definition"},
        "published_at": _TIME, "published_by": {**_NSTR},
        "source": {**_STR, "description": "the YAML as published"},
        "start": _obj({"roles": {"type": "array", "items": _STR},
                       "fields": {"type": "array", "items": _STR},
                       "requires": {"type": "array", "items": _STR}}),
        "versions": {"type": "array", "items": ref("DefinitionVersion")}}),
    "AuditEvent": _obj({
        "seq": _INT, "at": _TIME, "actor": _STR, "actor_username": _NSTR, "action": _STR,
        "transition": _NSTR, "from_state": _NSTR, "to_state": _NSTR,
        "record_version": {**_INT, "nullable": True},
        "changes": {**_OBJ, "description": "field -> [old, new] for data changes"},
        "reason": _NSTR, "hash": _STR, "prev_hash": _STR}),
    "AuditTrail": _obj({"record": _STR, "items": {"type": "array", "items": ref("AuditEvent")}}),
    "Signature": _obj({
        "id": _INT,
        "manifestation": _obj({
            "printed_name": _STR, "signed_at_utc": _TIME, "meaning": _STR,
            "text": {**_STR, "description": "name, UTC date and time, meaning, as displayed"}}),
        "username": _STR, "role": _STR, "transition": _STR, "method": _STR,
        "record_version": _INT, "content_hash": _STR,
        "status": {"enum": ["valid", "superseded"], "description":
                   "superseded: the content the signature locked changed since (R-P11-70-2)"}}),
    "SignatureList": _obj({"record": _STR,
                           "items": {"type": "array", "items": ref("Signature")}}),
    "Kpi": _obj({
        "key": {**_STR, "description": "metric key, as in docs/kpis.md"}, "label": _STR,
        "workflow": {**_NSTR, "description": "null: system-wide"},
        "unit": {"type": "string", "enum": ["count", "percent", "days"],
                 "description": "percent values are fractions (0.9 = 90 %)"},
        "value": {"type": "number", "nullable": True},
        "numerator": {**_INT, "nullable": True}, "denominator": {**_INT, "nullable": True},
        "p90": {"type": "number", "nullable": True},
        "status": {"type": "string", "enum": ["green", "amber", "red"], "nullable": True}}),
    "Extension": _obj({
        "id": _INT, "status": {"type": "string", "enum": ["requested", "approved", "rejected"]},
        "requested_by": _STR, "requested_at": _TIME, "old_due": _NTIME, "new_due": _TIME,
        "reason": {**_STR, "description": "the requester's justification"},
        "decided_by": _NSTR, "decided_at": _NTIME, "decision_reason": _NSTR,
        "signature_id": {**_INT, "nullable": True,
                         "description": "the approver's signature (Extension approved)"}}),
    "ExtensionList": _obj({
        "record": _STR, "version": _INT, "due_original": _NTIME, "due_current": _NTIME,
        "items": {"type": "array", "items": ref("Extension")}}),
    "KpiList": _obj({
        "period": _obj({"from": _STR, "to": _STR, "start": _TIME, "end": _TIME}),
        "as_of": _TIME, "viewer": _STR,
        "items": {"type": "array", "items": ref("Kpi")}}),
}

# request bodies: plain JSON Schema (validated with jsonschema before a view runs)
SIGNATURE_BODY = {
    "type": "object",
    "description": "The signer's own credentials. Every component is needed on every API "
                   "signing (there is no continuous session): username, password, and the "
                   "authenticator code when the signer is enrolled or policy requires it.",
    "properties": {"username": {"type": "string", "minLength": 1, "maxLength": 64},
                   "password": {"type": "string", "minLength": 1, "maxLength": 200},
                   "totp": {"type": "string", "maxLength": 20}},
    "required": ["username", "password"],
    "additionalProperties": False,
}
CREATE_BODY = {
    "type": "object",
    "properties": {
        "workflow": {"type": "string", "minLength": 1, "maxLength": 40,
                     "description": "definition key, e.g. deviation"},
        "data": {"type": "object", "description": "field values (the definition's start "
                                                  "fields)"},
        "reason": {"type": "string", "maxLength": 2000},
    },
    "required": ["workflow", "data"],
    "additionalProperties": False,
}
FIRE_BODY = {
    "type": "object",
    "properties": {
        "expected_version": {"type": "integer", "minimum": 1,
                             "description": "the record version you read; a stale one "
                                            "gives 409 and changes nothing"},
        "data": {"type": "object", "description": "values of the step's editable fields"},
        "reason": {"type": "string", "maxLength": 2000},
        "signature": SIGNATURE_BODY,
    },
    "required": ["expected_version"],
    "additionalProperties": False,
}

EXTENSION_BODY = {
    "type": "object",
    "properties": {
        "expected_version": {"type": "integer", "minimum": 1},
        "new_due": {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}$",
                    "description": "the new due date (YYYY-MM-DD); due at the end of that day "
                                   "(23:59:59 UTC); later than the current due date"},
        "reason": {"type": "string", "minLength": 1, "maxLength": 2000,
                   "description": "the justification"},
    },
    "required": ["expected_version", "new_due", "reason"],
    "additionalProperties": False,
}
DECISION_BODY = {
    "type": "object",
    "properties": {
        "approve": {"type": "boolean"},
        "reason": {"type": "string", "maxLength": 2000,
                   "description": "required to reject"},
        "signature": SIGNATURE_BODY,
    },
    "required": ["approve"],
    "additionalProperties": False,
}

# ------------------------------------------------------------------ errors

ERROR_TEXT = {
    400: "Malformed request: invalid JSON, body or parameters (bad_request, invalid_json, "
         "bad_cursor)",
    401: "Missing, invalid, expired or revoked token, or deactivated account (token_missing, "
         "token_invalid, token_expired, token_revoked, token_tampered, account_deactivated)",
    403: "The token lacks the scope (insufficient_scope) or the user the role "
         "(not_authorized, training_required, account_locked), or someone else holds the "
         "task (claim_held, with holder)",
    404: "No such record or definition, or not visible to you (not_found)",
    409: "The record changed since you read it (stale_record, with current_version); the "
         "step is not open yet (not_yet_open, with opens_at) or waits for linked records "
         "(linked_records_open, with open_records)",
    413: "Request body too large (payload_too_large; a file over QMS_ATTACHMENT_MAX_BYTES: "
         "attachment_too_large)",
    415: "The file's type, read from its content, may not be attached "
         "(attachment_type_refused)",
    422: "A rule refused the change (validation_failed, guard_failed, "
         "segregation_of_duties, transition_not_available, signature_required, "
         "signature_credentials_rejected, reason_required, unknown_workflow...)",
    429: "Too many requests for this token this minute (rate_limited; see Retry-After)",
}


def openapi(routes: tuple[Route, ...], rate_per_minute: int) -> dict[str, Any]:
    """The OpenAPI 3.0 document for ``routes``."""
    paths: dict[str, dict[str, Any]] = {}
    for r in routes:
        op: dict[str, Any] = {"operationId": r.endpoint, "summary": r.summary, "tags": [r.tag]}
        if r.description:
            op["description"] = r.description
        if r.scope is None:
            op["security"] = []
        else:
            op["description"] = (op.get("description", "") +
                                 f"\n\nToken scope: `{r.scope}`.").strip()
        if r.params:
            op["parameters"] = [
                {"name": p.name, "in": p.where, "required": p.required or p.where == "path",
                 "schema": p.schema, **({"description": p.description} if p.description else {})}
                for p in r.params]
        if r.body is not None:
            op["requestBody"] = {"required": True, "content": {
                "application/json": {"schema": r.body}}}
        if r.upload:
            op["requestBody"] = {"required": True, "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}
        ok_schema = ref(r.response) if r.response else {"type": "object"}
        if r.media != "application/json":
            ok_schema = {"type": "string", "format": "binary"}
        responses: dict[str, Any] = {str(r.ok): {
            "description": "OK" if r.ok == 200 else "Created",
            "content": {r.media: {"schema": ok_schema}}}}
        codes = set(r.errors)
        if r.scope is not None:
            codes |= {401, 403, 429}
        if r.body is not None or r.upload:
            codes |= {400, 413}
        for code in sorted(codes):
            responses[str(code)] = {"description": ERROR_TEXT[code],
                                    "content": {"application/json": {"schema": ref("Error")}}}
        op["responses"] = responses
        paths.setdefault(API_PREFIX + r.path, {})[r.method.lower()] = op
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "QMS workflow engine API",
            "version": API_VERSION,
            "description": (
                "Records, transitions (with Part 11 signatures), tasks, definitions, audit "
                "trails and signatures of the QMS workflow engine. Authenticate with a "
                "personal API token: `Authorization: Bearer qms_...`; browser session "
                "cookies are ignored. Every change goes through the same engine path as the "
                "web UI. Errors are `{\"error\": {\"code\", \"message\", ...}}`. Rate limit: "
                f"{rate_per_minute or 'unlimited'} requests per token per minute, counted "
                "per server process. See docs/api.md."),
        },
        "servers": [{"url": "/"}],
        "security": [{"bearerAuth": []}],
        "tags": [{"name": t} for t in dict.fromkeys(r.tag for r in routes)],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer",
                                               "bearerFormat": "qms_ token"}},
            "schemas": SCHEMAS,
        },
    }
