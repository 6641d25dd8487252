"""webapp/errors.py: the one table from domain errors to HTTP (statuses of the API and of the
HTML pages, the JSON error body). No database: the table is checked class by class."""

from __future__ import annotations

import inspect

import pytest
from flask import Flask, get_flashed_messages

from webapp import errors
from workflow import errors as wf

#: one instance of every error class in workflow/errors.py -> (API status, page status,
#: extra members of the JSON body)
EXAMPLES: list[tuple[wf.WorkflowError, int, int, dict[str, object]]] = [
    (wf.WorkflowError("refused"), 422, 422, {}),
    (wf.DefinitionError([wf.Problem("x.yaml", 3, "bad")]), 422, 422, {}),
    (wf.UnknownWorkflow("nope"), 422, 422, {}),
    (wf.RecordNotFound("CAPA-2026-0001"), 404, 404, {}),
    (wf.TaskNotFound(7), 404, 404, {}),
    (wf.UnknownUser("nobody"), 422, 422, {}),
    (wf.InactiveUser("emma"), 403, 422, {}),
    (wf.TransitionNotAvailable("CAPA-1", "close", "open", ["assign"]), 422, 422,
     {"state": "open", "available": ["assign"]}),
    (wf.NotAuthorized("no", required_roles=("qa",)), 403, 403, {"required_roles": ["qa"]}),
    (wf.SegregationOfDuties("not you", rule="not_initiator"), 422, 403,
     {"rule": "not_initiator"}),
    (wf.ValidationFailed({"title": "is required"}), 422, 422,
     {"errors": {"title": "is required"}}),
    (wf.GuardFailed("close", "actions open"), 422, 422, {"transition": "close"}),
    (wf.ReasonRequired("cancel"), 422, 422, {}),
    (wf.SignatureRequired("approve", "Approved"), 422, 422, {"meaning": "Approved"}),
    (wf.SignatureRejected("wrong signer"), 422, 422, {}),
    (wf.StaleRecord("CAPA-1", 2, 3), 409, 409, {"current_version": 3, "expected_version": 2}),
    (wf.DueDateLocked("locked"), 422, 422, {}),
    (wf.AccountLocked("emma"), 403, 422, {}),
    (wf.CredentialsRejected("wrong password", user_id=1, detail="password"), 422, 422, {}),
    (wf.TrainingRequired("emma", ["SOP-1"]), 403, 403, {"missing": ["SOP-1"]}),
    (wf.UsernameTaken("emma"), 422, 422, {}),
    (wf.AuthError("refused"), 422, 422, {}),
    (wf.LoginFailed(), 422, 422, {}),
    (wf.CliActingRefused("--maintenance is refused"), 422, 422, {}),
    (wf.LoginStepExpired(), 422, 422, {}),
    (wf.LoginThrottled(42), 429, 429, {"retry_after": 42}),
    (wf.GrantRefused("You cannot grant a role to your own account"), 422, 422, {}),
    (wf.SigningNotEnabled("rita", ["an administrator has not yet recorded that your identity "
                                   "was verified"]), 403, 403,
     {"missing": ["an administrator has not yet recorded that your identity was verified"]}),
    (wf.PasswordExpired(), 422, 422, {}),
    (wf.PasswordRejected(["too short"]), 422, 422, {}),
    (wf.SecondFactorFailed(), 422, 422, {}),
    (wf.SessionEnded("idle"), 422, 422, {}),
    (wf.TokenError("bad scope"), 422, 422, {}),
    (wf.TokenRejected("expired", "The token has expired."), 422, 422, {}),
    (wf.ConfigError("QMS_DIGEST_HOUR", "QMS_DIGEST_HOUR must be an hour from 0 to 23, got '24'"),
     500, 500, {}),
    (wf.TamperedData("role grant", "#7"), 409, 409, {}),
    (wf.DefinitionTampered("capa", 1, "a" * 64, "b" * 64), 409, 409, {}),
    (wf.UntrustedGrant("quinn", ("qa",)), 403, 403, {"required_roles": ["qa"]}),
    (wf.ContentLocked("CAPA-2026-0001", "actions", "Actions", "Approved", "Approve plan",
                      "Quinn QA", ("Revise action plan",)), 409, 422,
     {"field": "actions", "signature": "Approved", "unlock_steps": ["Revise action plan"]}),
    (wf.ChangeReasonRequired("DEV-2026-0001", {"classification": "Classification"}), 422, 422,
     {"fields": {"classification": "Classification"}}),
    (wf.RequiredEarlier({"classification_rationale": "was required at 'Triage'"}), 422, 422,
     {"errors": {"classification_rationale": "was required at 'Triage'"}}),
    (wf.PopulationFixed("grants", "fixed"), 422, 422, {"field": "grants"}),
    (wf.ClaimHeld("held by Quentin", holder="qa2", task_id=3), 403, 403, {"holder": "qa2"}),
    (wf.NotYetOpen("opens later", transition="record_effectiveness",
                   opens_at="2026-05-31T00:00:00+00:00"), 409, 409,
     {"transition": "record_effectiveness", "opens_at": "2026-05-31T00:00:00+00:00"}),
    (wf.LinkedRecordsOpen("children open", transition="confirm_training",
                          open_records=["TRN-2026-0001"]), 409, 409,
     {"transition": "confirm_training", "open_records": ["TRN-2026-0001"]}),
    (wf.ExclusiveStateTaken("one effective version", state="effective",
                            other="DOC-2026-0001"), 409, 409,
     {"state": "effective", "other": "DOC-2026-0001"}),
    (wf.KeyProblem("/etc/qms/signature.key", "/etc/qms/signature.key line 1: the key is not hex"),
     500, 500, {}),
    (wf.CheckpointError("cp.json", "checkpoint file cp.json does not exist"), 422, 422, {}),
    (wf.BackupError("backup/manifest.json: qms.db does not match its hash"), 422, 422, {}),
    (wf.AttachmentRefused("attachment_empty", "a.pdf is empty."), 422, 422, {}),
    (wf.AttachmentTooLarge("attachment_too_large", "big.pdf has 9 bytes"), 413, 422, {}),
    (wf.AttachmentTypeRefused("attachment_type_refused", "x is text/html"), 415, 422, {}),
    (wf.AttachmentDamaged("ab" * 32, "e.pdf is not handed out"), 409, 409,
     {"sha256": "ab" * 32}),
]


def domain_error_classes() -> list[type[wf.WorkflowError]]:
    return [c for _, c in inspect.getmembers(wf, inspect.isclass)
            if issubclass(c, wf.WorkflowError) and c.__module__.startswith(wf.__name__ + ".")]


def test_every_error_class_in_workflow_errors_has_an_entry():
    """Each class of workflow/errors.py is decided in the table: its own status, or the
    default (``errors.REFUSED``) listed on purpose. A new class fails here until it is."""
    missing = [c.__name__ for c in domain_error_classes() if c not in errors.ERRORS]
    assert missing == []
    assert {type(e) for e, *_ in EXAMPLES} == set(domain_error_classes())


@pytest.mark.parametrize(("exc", "status", "page", "extra"), EXAMPLES,
                         ids=[type(e).__name__ for e, *_ in EXAMPLES])
def test_the_table_answers(exc, status, page, extra):
    api = errors.api_error(exc)
    assert (api.status, api.code, api.message, api.extra) == (status, exc.code, exc.message,
                                                                extra)
    assert errors.page_status(exc) == page


def test_an_error_defined_elsewhere_takes_its_nearest_listed_class():
    """Errors raised outside workflow/errors.py (login, drafts, plans...) are not listed."""

    class Elsewhere(wf.WorkflowError):
        code = "elsewhere"

    assert errors.entry(Elsewhere("refused")) is errors.REFUSED

    class Narrower(wf.NotAuthorized):
        code = "narrower"

    api = errors.api_error(Narrower("no", required_roles=("qa", "admin")))
    assert (api.status, api.code, api.extra) == (403, "narrower",
                                                 {"required_roles": ["qa", "admin"]})


def test_a_page_flashes_the_errors_own_message():
    app = Flask(__name__)
    app.secret_key = "test"
    with app.test_request_context():
        errors.flash_error(wf.GuardFailed("close", "Two actions are still open."))
        assert get_flashed_messages(with_categories=True) == [
            ("error", "Two actions are still open.")]
