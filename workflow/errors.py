"""Domain errors. Each carries the data a caller needs and a message a person can act on;
HTTP status codes are chosen in webapp/, never here."""

from __future__ import annotations

from datetime import datetime


class WorkflowError(Exception):
    """Base of every error the engine raises on purpose."""

    code = "workflow_error"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class DefinitionError(WorkflowError):
    """A workflow definition is invalid. ``problems`` lists every problem found."""

    code = "definition_invalid"

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        lines = "\n".join(str(p) for p in problems)
        super().__init__(f"{len(problems)} problem(s) in workflow definition:\n{lines}")


class Problem:
    """One located problem in a definition file: ``file:line: message``."""

    __slots__ = ("file", "line", "message")

    def __init__(self, file: str, line: int | None, message: str):
        self.file = file
        self.line = line
        self.message = message

    def __str__(self) -> str:
        return f"{self.file}:{self.line or 1}: {self.message}"

    def __repr__(self) -> str:
        return f"Problem({str(self)!r})"


class UnknownWorkflow(WorkflowError):
    code = "unknown_workflow"

    def __init__(self, key: str):
        self.key = key
        super().__init__(f"There is no published workflow called {key!r}.")


class RecordNotFound(WorkflowError):
    code = "not_found"

    def __init__(self, ref: object):
        self.ref = ref
        super().__init__(f"Record {ref} does not exist or is not visible to you.")


class TaskNotFound(WorkflowError):
    """The task does not exist, or its record is hidden from the person asking (so task ids
    cannot be used to probe records)."""

    code = "not_found"

    def __init__(self, task_id: int):
        self.task_id = task_id
        super().__init__(f"Task #{task_id} does not exist or is not visible to you.")


class UnknownUser(WorkflowError):
    code = "unknown_user"

    def __init__(self, ref: object):
        self.ref = ref
        super().__init__(f"User {ref!r} does not exist.")


class UsernameTaken(WorkflowError):
    code = "username_taken"

    def __init__(self, username: str):
        self.username = username
        super().__init__(
            f"The username {username!r} is already taken (usernames are never reused, "
            "even after deactivation)."
        )


class InactiveUser(WorkflowError):
    code = "inactive_user"

    def __init__(self, username: str):
        self.username = username
        super().__init__(f"User {username!r} is deactivated and cannot act or sign.")


class TransitionNotAvailable(WorkflowError):
    """The transition does not exist, or not from the record's current state."""

    code = "transition_not_available"

    def __init__(self, number: str, transition: str, state: str, available: list[str],
                 message: str | None = None):
        self.number = number
        self.transition = transition
        self.state = state
        self.available = available
        avail = ", ".join(available) if available else "none"
        super().__init__(message or (
            f"{number} is in state {state!r}; transition {transition!r} is not possible from "
            f"there (possible now: {avail})."))


class NotAuthorized(WorkflowError):
    code = "not_authorized"

    def __init__(self, message: str, *, required_roles: tuple[str, ...] = ()):
        self.required_roles = required_roles
        super().__init__(message)


class SegregationOfDuties(NotAuthorized):
    code = "segregation_of_duties"

    def __init__(self, message: str, *, rule: str):
        self.rule = rule
        super().__init__(message)


class ClaimHeld(NotAuthorized):
    """Someone else holds (claimed, or was assigned) the task this step completes: only the
    holder may complete it until they release or delegate it."""

    code = "claim_held"

    def __init__(self, message: str, *, holder: str, task_id: int):
        self.holder = holder
        self.task_id = task_id
        super().__init__(message)


class NotYetOpen(WorkflowError):
    """The step declares the earliest time it may be taken (``not_before``) and it has not
    come yet. ``opens_at``: when it opens (UTC)."""

    code = "not_yet_open"

    def __init__(self, message: str, *, transition: str, opens_at: str):
        self.transition = transition
        self.opens_at = opens_at
        super().__init__(message)


class LinkedRecordsOpen(WorkflowError):
    """The step waits for linked records (``waits_for``) that are not yet closed with the
    outcome it needs. ``open_records``: their numbers."""

    code = "linked_records_open"

    def __init__(self, message: str, *, transition: str, open_records: list[str]):
        self.transition = transition
        self.open_records = open_records
        super().__init__(message)


class ValidationFailed(WorkflowError):
    """Input data is invalid. ``errors`` maps field name to the problem with it."""

    code = "validation_failed"

    def __init__(self, errors: dict[str, str]):
        self.errors = errors
        text = "; ".join(f"{k}: {v}" for k, v in errors.items())
        super().__init__(f"The data is not valid: {text}")


class GuardFailed(WorkflowError):
    code = "guard_failed"

    def __init__(self, transition: str, message: str):
        self.transition = transition
        super().__init__(message)


class ReasonRequired(WorkflowError):
    code = "reason_required"

    def __init__(self, what: str):
        super().__init__(f"A reason is required to {what}.")


class SignatureRequired(WorkflowError):
    code = "signature_required"

    def __init__(self, transition: str, meaning: str):
        self.transition = transition
        self.meaning = meaning
        super().__init__(
            f"Transition {transition!r} must be signed (meaning: {meaning!r}); "
            "no signature was given."
        )


class SignatureRejected(WorkflowError):
    code = "signature_rejected"

    def __init__(self, message: str):
        super().__init__(message)


class StaleRecord(WorkflowError):
    """The record changed since the caller read it (optimistic concurrency)."""

    code = "stale_record"

    def __init__(self, number: str, expected: int, actual: int):
        self.number = number
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"{number} changed while you were working on it (you had version {expected}, "
            f"it is now at version {actual}). Reload it and try again."
        )


class DueDateLocked(WorkflowError):
    code = "due_date_locked"

    def __init__(self, message: str):
        super().__init__(message)


class AccountLocked(WorkflowError):
    """The account is locked after repeated failed attempts (shown to its logged-in owner,
    e.g. when signing; the login page says only :class:`LoginFailed`'s one message).
    ``until``: when a timed lock ends (None: an administrator unlocks it)."""

    code = "account_locked"

    def __init__(self, username: str, until: datetime | None = None):
        self.username = username
        self.until = until
        when = (f"It unlocks by itself at {until:%Y-%m-%d %H:%M} UTC, or an administrator "
                "unlocks it earlier." if until is not None else
                "Ask an administrator to unlock it.")
        super().__init__(f"The account {username!r} is locked after repeated failed "
                         f"attempts. {when}")


class CredentialsRejected(SignatureRejected):
    """A signing attempt with wrong credentials: counted toward lockout."""

    code = "signature_credentials_rejected"

    def __init__(self, message: str, *, user_id: int | None, detail: str):
        self.user_id = user_id
        self.detail = detail
        super().__init__(message)


class TrainingRequired(NotAuthorized):
    """Part 11 §11.10(i): the actor lacks current training the step requires."""

    code = "training_required"

    def __init__(self, username: str, missing: list[str]):
        self.missing = missing
        super().__init__(
            f"{username} has no current training on {', '.join(missing)}; complete the "
            "training before doing this step.")


# --------------------------------------------------------------------------- credentials


class AuthError(WorkflowError):
    code = "auth_failed"


class SigningNotEnabled(NotAuthorized):
    """21 CFR 11.100(b), 11.10(j): the person may not sign yet (identity not verified by an
    administrator, or the current e-signature policy not accepted); ``missing`` says which."""

    code = "signing_not_enabled"

    def __init__(self, username: str, missing: list[str]):
        self.username = username
        self.missing = missing
        super().__init__(f"{username} cannot sign yet: " + "; ".join(missing) + ". Nothing was "
                         "signed.")


class GrantRefused(WorkflowError):
    """A role grant breaks a rule of segregation of administration (self-grant, undeclared
    or incompatible role, a role service accounts may not hold...; the message says which)."""

    code = "grant_refused"


class CliActingRefused(AuthError):
    """The command line may not act as the named person (no credentials, maintenance mode
    not allowed, or the account must first finish something in the web application)."""

    code = "cli_acting_refused"


class LoginFailed(AuthError):
    """Deliberately vague: it does not tell whether the username exists."""

    code = "login_failed"

    def __init__(self) -> None:
        # one message whatever went wrong: it must not tell a stranger whether the account
        # exists, is deactivated or is locked (issue 14 item 4)
        super().__init__(LOGIN_FAILED)


#: the login page's one refusal
LOGIN_FAILED = ("Unknown username or wrong password, or the account is locked for a while "
                "after repeated failed attempts.")


class LoginThrottled(AuthError):
    """Too many login attempts from one client address or for one username in the current
    window (``QMS_LOGIN_RATE_*``); nothing was checked. ``retry_after``: seconds."""

    code = "login_throttled"

    def __init__(self, retry_after: int):
        self.retry_after = retry_after
        super().__init__(f"Too many login attempts; try again in {retry_after} seconds.")


class PasswordExpired(AuthError):
    code = "password_expired"

    def __init__(self) -> None:
        super().__init__("Your password has expired (or was set by an administrator); "
                         "choose a new one before you continue.")


class PasswordRejected(AuthError):
    code = "password_rejected"

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("The new password is not accepted: " + "; ".join(problems) + ".")


class SecondFactorFailed(AuthError):
    code = "second_factor_failed"

    def __init__(self, message: str = "The authentication code is wrong, expired or was "
                                      "already used."):
        super().__init__(message)


class LoginStepExpired(AuthError):
    """The second-factor step of a login cannot go on: it expired, was already used, is
    unknown, or the password changed since. One message for all (issue 14 item 2)."""

    code = "login_step_expired"

    def __init__(self) -> None:
        super().__init__("This login step has expired or was already used; enter your "
                         "username and password again.")


class SessionEnded(AuthError):
    code = "session_ended"

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__({"idle": "Your session timed out after inactivity; log in again.",
                          "lifetime": "Your session reached its maximum length; log in again.",
                          "logout": "You are logged out.",
                          "revoked": "Your session was ended from another of your sessions; "
                                     "log in again.",
                          "logged out everywhere": "You logged out everywhere; log in again.",
                          "ended by an administrator": "An administrator ended your "
                                                       "session; log in again.",
                          "password changed": "Your password was changed in another session; "
                                              "log in again.",
                          "password reset": "An administrator reset your password; log in "
                                            "with the new one.",
                          "authenticator reset": "An administrator reset your authenticator; "
                                                 "log in again.",
                          }.get(reason, "Your session has ended; log in again."))


# --------------------------------------------------------------------------- API tokens


class TokenError(WorkflowError):
    """A token management request is not possible (bad name, scopes, expiry...)."""

    code = "token_invalid_request"


class TokenRejected(WorkflowError):
    """Authentication with a token failed. ``reason`` is one of: missing, malformed, unknown,
    expired, revoked, suspended, inactive_user, tampered."""

    code = "token_rejected"

    def __init__(self, reason: str, message: str):
        self.reason = reason
        super().__init__(message)


# --------------------------------------------------------------------------- configuration


class ConfigError(WorkflowError):
    """A ``QMS_`` environment variable is malformed. ``variable`` names it; the message says
    what is wrong and what was given."""

    code = "config_invalid"

    def __init__(self, variable: str, message: str):
        self.variable = variable
        super().__init__(message)


class TamperedData(WorkflowError):
    """A row the engine would act on fails its integrity check (a keyed seal or a content
    hash): it was changed outside the application, so it is not trusted. ``what`` names the
    kind of row, ``where`` the row itself."""

    code = "tampered_data"

    def __init__(self, what: str, where: str, message: str | None = None):
        self.what = what
        self.where = where
        super().__init__(message or (
            f"The {what} {where} fails its integrity check: it was changed outside the "
            "application, so it is not used. An administrator should run `qms verify-audit`."))


class DefinitionTampered(TamperedData):
    """A published definition version's stored source no longer has its recorded content
    hash: it is refused, so no record runs under it."""

    code = "definition_tampered"

    def __init__(self, key: str, version: int, stored: str, actual: str | None):
        self.key = key
        self.version = version
        found = (f"its source hashes to {actual[:12]}" if actual
                 else "its source no longer loads")
        super().__init__(
            "workflow definition", f"{key} v{version}",
            f"Workflow definition {key} version {version} was changed outside the application: "
            f"{found}, not to its published hash {stored[:12]}. It is "
            "refused, so its records cannot move; an administrator should run "
            "`qms verify-audit` and restore the published version.")


class UntrustedGrant(NotAuthorized):
    """The role a step needs is held only through a role grant whose seal is broken (the
    grant was inserted or changed outside the application): it is not honoured."""

    code = "untrusted_grant"

    def __init__(self, username: str, roles: tuple[str, ...]):
        self.username = username
        names = ", ".join(roles)
        super().__init__(
            f"The grant of {names} to {username} fails its integrity check (it was inserted or "
            "changed outside the application), so it is not honoured. An administrator should "
            "run `qms verify-audit`.", required_roles=roles)


# ----------------------------------------------------------------- content controls (issue 15)


class ContentLocked(WorkflowError):
    """A step tried to change content a signature covers (Part 11 §11.70, R-P11-70-2): it is
    read-only until a step sends the record back for re-approval. ``field`` is the locked
    field, ``signature`` the signing step's meaning, ``unlock_steps`` the steps that release
    the lock."""

    code = "content_locked"

    def __init__(self, number: str, field: str, label: str, meaning: str, step: str,
                 signers: str, unlock_steps: tuple[str, ...]):
        self.number = number
        self.field = field
        self.signature = meaning
        self.step = step
        self.unlock_steps = unlock_steps
        how = (f"send it back for re-approval first ({', '.join(unlock_steps)})"
               if unlock_steps else "start a new record; this definition has no step that "
               "sends it back for re-approval")
        super().__init__(
            f"{label} on {number} is locked by the signature {meaning!r} ({signers}, step "
            f"{step!r}): signed content cannot be changed; to change it, {how}.")


class ChangeReasonRequired(WorkflowError):
    """Changing or clearing a value that another person or an earlier step entered needs a
    reason for change (EU GMP Annex 11 §9, R-P11-10e-7); ``fields`` are the fields concerned."""

    code = "change_reason_required"

    def __init__(self, number: str, fields: dict[str, str]):
        self.number = number
        self.fields = fields
        names = ", ".join(fields.values())
        super().__init__(
            f"Changing {names} on {number} needs a reason for change: the value was entered "
            "by another person or at an earlier step. Give the reason; it is recorded in the "
            "audit trail with the old and new value.")


class RequiredEarlier(ValidationFailed):
    """A step tried to clear a field that an earlier step required."""

    code = "required_earlier"


class PopulationFixed(WorkflowError):
    """A step tried to add, remove or rewrite rows of a generated list (a population the
    system generated, e.g. the grants of an access review), or a person tried to decide a
    row about themselves. ``field`` names the list."""

    code = "population_fixed"

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(message)


class KeyProblem(WorkflowError):
    """A server key or anchor key cannot be had or used as asked: a malformed key file (file
    and line named), an unknown key id, a rotation the key source cannot do (the key comes
    from an environment variable). ``source`` names the file, variable or provider."""

    code = "key_problem"

    def __init__(self, source: str, message: str):
        self.source = source
        super().__init__(message)


class BackupError(WorkflowError):
    """A backup cannot be written or restored as asked; the message names the file and why."""


class CheckpointError(WorkflowError):
    """A checkpoint or signed true copy cannot be used: missing, unreadable, not in the
    expected format, or (when checked) not signed by the key given. ``path`` names it."""

    code = "checkpoint_invalid"

    def __init__(self, path: str, message: str):
        self.path = path
        super().__init__(message)


class AttachmentRefused(WorkflowError):
    """An uploaded file is not accepted (workflow/blobs.py); nothing was stored. ``code``:
    attachment_empty, attachment_too_large or attachment_type_refused."""

    code = "attachment_refused"

    def __init__(self, code: str, message: str):
        self.code = code
        super().__init__(message)


class AttachmentTooLarge(AttachmentRefused):
    """An uploaded file is larger than QMS_ATTACHMENT_MAX_BYTES."""

    code = "attachment_too_large"


class AttachmentTypeRefused(AttachmentRefused):
    """An uploaded file's type (read from its content) is not in QMS_ATTACHMENT_TYPES."""

    code = "attachment_type_refused"


class AttachmentDamaged(WorkflowError):
    """A stored attachment is missing or no longer matches its SHA-256: it is not handed
    out (verify-audit names it). ``sha256`` names the file."""

    code = "attachment_damaged"

    def __init__(self, sha256: str, message: str):
        self.sha256 = sha256
        super().__init__(message)
