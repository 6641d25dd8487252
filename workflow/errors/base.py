"""Domain errors: the base and the errors of records, transitions and signatures.
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


class ExclusiveStateTaken(WorkflowError):
    """Another record with the same key values is already in a state only one may be in at a
    time (an ``exclusive:`` rule, e.g. one effective version per document). ``other``: that
    record's number; ``state``: the state asked for."""

    code = "exclusive_state_taken"

    def __init__(self, message: str, *, state: str, other: str):
        self.state = state
        self.other = other
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
