"""Errors of configuration, tampered data, content controls, keys, backups and attachments."""

from __future__ import annotations

from workflow.errors.base import NotAuthorized, ValidationFailed, WorkflowError

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
