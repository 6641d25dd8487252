"""Errors as HTTP, in one place: which status and heading each domain error answers with, the
JSON error body of the API, and the app's error pages.

``ERRORS`` maps each ``WorkflowError`` class to its status and the members its JSON body
carries; an error takes the entry of its nearest listed class (``entry``). The HTML pages
flash the error's own message (``flash_error``) and answer ``page_status``; the API answers
``api_error``'s status and body. HTTP status codes for domain errors are chosen here, never
in workflow/.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import (
    Flask,
    Response,
    current_app,
    flash,
    g,
    jsonify,
    make_response,
    render_template,
)
from flask_wtf.csrf import CSRFError

from workflow import errors as wf

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ErrorEntry:
    """How one kind of domain error answers over HTTP."""

    status: int
    #: heading of the error page
    title: str
    #: (JSON member, attribute of the error) pairs added to the API's error body
    extra: tuple[tuple[str, str], ...] = ()
    #: the status of the HTML pages where it differs from the API's (``status``): the record
    #: pages answer 403 for every refusal of the person (a NotAuthorized), 422 for the rest
    page_status: int | None = None

    @property
    def page(self) -> int:
        return self.page_status if self.page_status is not None else self.status


REFUSED = ErrorEntry(422, "Not possible")
"""The deliberate default: a rule refused the change, nothing was changed."""

ERRORS: dict[type[wf.WorkflowError], ErrorEntry] = {
    wf.WorkflowError: REFUSED,
    wf.RecordNotFound: ErrorEntry(404, "Not found"),
    wf.TaskNotFound: ErrorEntry(404, "Not found"),
    wf.StaleRecord: ErrorEntry(409, "Changed meanwhile", (("current_version", "actual"),
                                                          ("expected_version", "expected"))),
    wf.NotAuthorized: ErrorEntry(403, "Not allowed", (("required_roles", "required_roles"),)),
    wf.SegregationOfDuties: ErrorEntry(422, "Not allowed", (("rule", "rule"),),
                                       page_status=403),
    wf.ClaimHeld: ErrorEntry(403, "Held by someone else", (("holder", "holder"),)),
    wf.NotYetOpen: ErrorEntry(409, "Not open yet", (("transition", "transition"),
                                                    ("opens_at", "opens_at"))),
    wf.LinkedRecordsOpen: ErrorEntry(409, "Linked records still open",
                                     (("transition", "transition"),
                                      ("open_records", "open_records"))),
    wf.ExclusiveStateTaken: ErrorEntry(409, "Already taken by another record",
                                       (("state", "state"), ("other", "other"))),
    wf.TrainingRequired: ErrorEntry(403, "Training required", (("missing", "missing"),)),
    wf.AccountLocked: ErrorEntry(403, "Account locked", page_status=422),
    wf.InactiveUser: ErrorEntry(403, "Account deactivated", page_status=422),
    wf.ValidationFailed: ErrorEntry(422, "Not valid", (("errors", "errors"),)),
    wf.GuardFailed: ErrorEntry(422, "Not possible", (("transition", "transition"),)),
    wf.TransitionNotAvailable: ErrorEntry(422, "Not possible", (("state", "state"),
                                                                ("available", "available"))),
    wf.SignatureRequired: ErrorEntry(422, "Signature required", (("meaning", "meaning"),)),
    # a rule refused the change: the default, listed so that every class here is decided
    wf.SignatureRejected: REFUSED,
    wf.CredentialsRejected: REFUSED,
    wf.ReasonRequired: REFUSED,
    wf.UnknownWorkflow: REFUSED,
    wf.UnknownUser: REFUSED,
    wf.DueDateLocked: REFUSED,
    wf.DefinitionError: REFUSED,
    wf.UsernameTaken: REFUSED,
    wf.GrantRefused: REFUSED,  # segregation of administration (workflow/identity/grants.py)
    # login, password and second-factor errors: the login pages answer them themselves; where
    # one escapes to a generic handler it refused the change like any other rule
    wf.AuthError: REFUSED,
    wf.CliActingRefused: REFUSED,
    wf.LoginFailed: REFUSED,
    wf.LoginStepExpired: REFUSED,
    wf.LoginThrottled: ErrorEntry(429, "Too many attempts", (("retry_after", "retry_after"),)),
    wf.PasswordExpired: REFUSED,
    wf.PasswordRejected: REFUSED,
    wf.SecondFactorFailed: REFUSED,
    wf.SessionEnded: REFUSED,
    # API token errors: webapp/api/core.py answers them with 401 and a reason-specific code
    # before this table is consulted
    wf.TokenError: REFUSED,
    wf.TokenRejected: REFUSED,
    # a malformed QMS_ variable: raised when a process starts (workflow/config.py), so it
    # reaches no request unless the settings were first read in one
    wf.ConfigError: ErrorEntry(500, "Server misconfigured"),
    # a row the engine would act on was changed outside the application: refused, nothing
    # was changed (verify-audit names it)
    wf.TamperedData: ErrorEntry(409, "Integrity check failed"),
    wf.DefinitionTampered: ErrorEntry(409, "Integrity check failed"),
    wf.UntrustedGrant: ErrorEntry(403, "Not allowed", (("required_roles", "required_roles"),)),
    # content controls (issue 15): signed content is locked (409: the record's state
    # conflicts with the change), a change needs a reason, a generated population is fixed
    wf.ContentLocked: ErrorEntry(409, "Signed content is locked",
                                 (("field", "field"), ("signature", "signature"),
                                  ("unlock_steps", "unlock_steps")), page_status=422),
    wf.ChangeReasonRequired: ErrorEntry(422, "Reason for change required",
                                        (("fields", "fields"),)),
    wf.RequiredEarlier: ErrorEntry(422, "Not valid", (("errors", "errors"),)),
    wf.PopulationFixed: ErrorEntry(422, "Not possible", (("field", "field"),)),
    # 21 CFR 11.100(b), 11.10(j): identity not verified or e-signature policy not accepted
    wf.SigningNotEnabled: ErrorEntry(403, "Not allowed to sign yet", (("missing", "missing"),)),
    # a server or anchor key that cannot be had (a malformed key file, a failing key provider):
    # the server's configuration, not the request
    wf.KeyProblem: ErrorEntry(500, "Server misconfigured"),
    # a checkpoint or signed copy that cannot be read: the input given is refused
    wf.CheckpointError: REFUSED,
    # qms backup / qms restore refused (a live database, a hash that does not match): the
    # command line's, no request raises it
    wf.BackupError: REFUSED,
    # attachments (workflow/blobs.py): a refused upload stored nothing; a damaged stored
    # file is not handed out
    wf.AttachmentRefused: REFUSED,
    wf.AttachmentTooLarge: ErrorEntry(413, "File too large", page_status=422),
    wf.AttachmentTypeRefused: ErrorEntry(415, "File type not accepted", page_status=422),
    wf.AttachmentDamaged: ErrorEntry(409, "Integrity check failed", (("sha256", "sha256"),)),
}
"""Errors raised elsewhere in workflow/ (login and password errors, draft and plan errors,
PasswordExpired...) take the entry of their nearest listed base class."""


def entry(exc: wf.WorkflowError) -> ErrorEntry:
    """The entry of ``exc``'s class, or of its nearest base class in ``ERRORS``."""
    for cls in type(exc).__mro__:
        if issubclass(cls, wf.WorkflowError) and cls in ERRORS:
            return ERRORS[cls]
    return REFUSED  # unreachable: WorkflowError itself is listed


def page_status(exc: wf.WorkflowError) -> int:
    """The status an HTML page answers with after ``exc``."""
    return entry(exc).page


def flash_error(exc: wf.WorkflowError) -> None:
    """Tell the person on the next page what refused the change, in the error's own words."""
    flash(exc.message, "error")


# ------------------------------------------------------------------ the JSON API's errors


class ApiError(Exception):
    """An error response: ``status``, a stable ``code``, a message and extra members."""

    def __init__(self, status: int, code: str, message: str, **extra: Any):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra
        self.headers: dict[str, str] = {}


def api_error(exc: wf.WorkflowError) -> ApiError:
    """A domain error as the API answers it; the code is the error's own stable ``code``."""
    e = entry(exc)
    extra = {}
    for member, attribute in e.extra:
        value = getattr(exc, attribute)
        extra[member] = list(value) if isinstance(value, tuple) else value
    return ApiError(e.status, exc.code, exc.message, **extra)


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None,
                   **extra: Any) -> Response:
    """The API's error body: ``{"error": {"code": ..., "message": ..., ...}}``."""
    resp = jsonify({"error": {"code": code, "message": message, **extra}})
    resp.status_code = status
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


#: the code of an app-level HTTP error (routing 404, 405, 413, 500...) on an API path
HTTP_CODES = {400: "bad_request", 401: "token_missing", 403: "forbidden", 404: "not_found",
              405: "method_not_allowed", 413: "payload_too_large", 415: "bad_request",
              429: "rate_limited", 500: "server_error"}


def http_error_response(status: int, message: str) -> Response:
    """An app-level error (routing 404, 405, 413, 500...) on an API path, as JSON."""
    return error_response(status, HTTP_CODES.get(status, "http_error"), message)


# ------------------------------------------------------------------ the app's error pages


def page_response(status: int, title: str, message: str) -> Response:
    """An error answer: the error page, or the JSON error body on the API's paths. The page
    shows the request's reference (webapp/ops.py) for the person to quote."""
    wants_json = current_app.extensions.get("qms_wants_json")
    if wants_json is not None and wants_json():
        return http_error_response(status, message)
    return make_response(render_template("error.html", status=status, title=title,
                                         message=message), status)


def server_error_page() -> Response:
    """The 500 answer (an unexpected error, already logged with its traceback)."""
    ref = g.get("request_id") or "(none)"
    return page_response(500, "Something went wrong", "The request failed and nothing was "
                         "changed. If it happens again, tell your administrator the "
                         f"reference {ref}.")


def register(app: Flask, *, wants_json: Callable[[], bool]) -> None:
    """The error pages of ``app``; requests for which ``wants_json()`` (the API's paths) get
    the JSON error body instead."""
    app.extensions["qms_wants_json"] = wants_json

    def page(status: int, title: str, message: str) -> Any:
        return page_response(status, title, message)

    @app.errorhandler(CSRFError)
    def _csrf(e: CSRFError) -> tuple[str, int]:
        return page(400, "Form expired", "The form was missing its security token or it "
                    "expired. Go back, reload the page and submit again. Nothing was changed.")

    @app.errorhandler(400)
    def _bad_request(e: Any) -> tuple[str, int]:
        return page(400, "Bad request", "The request was not understood. Nothing was changed.")

    @app.errorhandler(405)
    def _method(e: Any) -> tuple[str, int]:
        return page(405, "Not allowed here", "This address does not accept that kind of "
                    "request. Nothing was changed.")

    @app.errorhandler(404)
    def _not_found(e: Any) -> tuple[str, int]:
        return page(404, "Not found", "This page or record does not exist, or you do not "
                    "have access to it.")

    @app.errorhandler(403)
    def _forbidden(e: Any) -> tuple[str, int]:
        return page(403, "Not allowed", getattr(e, "description", None) or
                    "You do not have the role this page needs.")

    @app.errorhandler(wf.RecordNotFound)
    def _record_not_found(e: wf.RecordNotFound) -> tuple[str, int]:
        # only this domain error is answered app-wide; any other one that escapes a view is a
        # bug and answers 500 (logged) like any exception
        found = entry(e)
        return page(found.page, found.title, str(e))

    @app.errorhandler(500)
    def _server_error(e: Any) -> Response:
        # Flask has logged the exception with its traceback (app.logger, "Exception on ..."),
        # on a line that carries the request id
        return server_error_page()
