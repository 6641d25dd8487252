"""The QMS workflow engine: declarative GxP workflows, one transactional path, audit trail.

This package never imports Flask or anything under ``webapp/``; it can be used and tested on
its own (see tests/unit and tests/integration). The names below are the stable public API for
those who embed the engine (docs/architecture.md, "Embedding the engine")::

    from workflow import open_engine, VouchedSignature

    engine, _ = open_engine("postgresql+psycopg://qms@db/qms")
    r = engine.start("deviation", "emma", {...})
    engine.fire(r.number, "triage", "quinn", {...}, expected_version=r.version)

They are imported on first use, so ``import workflow.clock`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: public name -> the module that defines it
_EXPORTS = {
    "open_engine": "workflow.bootstrap",
    "Engine": "workflow.engine",
    "Result": "workflow.engine",
    "VouchedSignature": "workflow.signatures.mac",
    "VouchingVerifier": "workflow.signatures.mac",
    **{name: "workflow.errors" for name in (
        "WorkflowError", "DefinitionError", "UnknownWorkflow", "RecordNotFound", "UnknownUser",
        "InactiveUser", "TaskNotFound", "CliActingRefused", "GrantRefused", "SigningNotEnabled",
        "TransitionNotAvailable", "NotAuthorized",
        "SegregationOfDuties",
        "TrainingRequired", "ValidationFailed", "GuardFailed", "ReasonRequired",
        "SignatureRequired", "SignatureRejected", "CredentialsRejected", "StaleRecord",
        "DueDateLocked", "AccountLocked", "UsernameTaken", "AuthError", "LoginFailed",
        "PasswordExpired", "PasswordRejected", "SecondFactorFailed", "SessionEnded",
        "LoginStepExpired", "LoginThrottled", "TokenError", "TokenRejected", "ConfigError",
        "TamperedData", "DefinitionTampered", "UntrustedGrant", "ContentLocked",
        "ChangeReasonRequired", "RequiredEarlier", "PopulationFixed", "ClaimHeld", "NotYetOpen",
        "LinkedRecordsOpen", "KeyProblem", "CheckpointError", "BackupError", "AttachmentRefused",
        "AttachmentTooLarge", "AttachmentTypeRefused", "AttachmentDamaged",
        "ExclusiveStateTaken")},
}

__all__ = [
    "AttachmentDamaged", "AttachmentRefused", "AttachmentTooLarge", "AttachmentTypeRefused",
    "AccountLocked", "AuthError", "BackupError", "CheckpointError", "ClaimHeld", "CliActingRefused",
    "ConfigError",
    "CredentialsRejected", "DefinitionError", "LinkedRecordsOpen", "NotYetOpen",
    "DefinitionTampered", "DueDateLocked", "ExclusiveStateTaken",
    "Engine", "GrantRefused", "GuardFailed", "InactiveUser", "KeyProblem", "LoginFailed", "LoginStepExpired",
    "LoginThrottled", "NotAuthorized",
    "PasswordExpired",
    "PasswordRejected", "ReasonRequired", "RecordNotFound", "Result", "SecondFactorFailed",
    "SegregationOfDuties", "SessionEnded", "SignatureRejected", "SignatureRequired",
    "SigningNotEnabled",
    "StaleRecord", "TamperedData", "TaskNotFound", "TokenError", "TokenRejected",
    "TrainingRequired", "TransitionNotAvailable", "UnknownUser", "UnknownWorkflow",
    "UntrustedGrant", "UsernameTaken",
    "ContentLocked", "ChangeReasonRequired", "RequiredEarlier", "PopulationFixed",
    "ValidationFailed", "VouchedSignature", "VouchingVerifier", "WorkflowError", "open_engine",
]

if TYPE_CHECKING:  # for type checkers and IDEs; at run time __getattr__ imports on first use
    from workflow.bootstrap import open_engine
    from workflow.engine import Engine, Result
    from workflow.errors import (
        AccountLocked,
        AttachmentDamaged,
        AttachmentRefused,
        AttachmentTooLarge,
        AttachmentTypeRefused,
        AuthError,
        BackupError,
        ChangeReasonRequired,
        CheckpointError,
        ClaimHeld,
        CliActingRefused,
        ConfigError,
        ContentLocked,
        CredentialsRejected,
        DefinitionError,
        DefinitionTampered,
        DueDateLocked,
        GrantRefused,
        GuardFailed,
        InactiveUser,
        KeyProblem,
        LinkedRecordsOpen,
        LoginFailed,
        LoginStepExpired,
        LoginThrottled,
        NotAuthorized,
        NotYetOpen,
        PasswordExpired,
        PasswordRejected,
        PopulationFixed,
        ReasonRequired,
        RecordNotFound,
        RequiredEarlier,
        SecondFactorFailed,
        SegregationOfDuties,
        SessionEnded,
        SignatureRejected,
        SignatureRequired,
        SigningNotEnabled,
        StaleRecord,
        TamperedData,
        TaskNotFound,
        TokenError,
        TokenRejected,
        TrainingRequired,
        TransitionNotAvailable,
        UnknownUser,
        UnknownWorkflow,
        UntrustedGrant,
        UsernameTaken,
        ValidationFailed,
        WorkflowError,
    )
    from workflow.signatures.mac import VouchedSignature, VouchingVerifier


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'workflow' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
