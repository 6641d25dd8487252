"""Domain errors. Each carries the data a caller needs and a message a person can act on;
HTTP status codes are chosen in webapp/, never here.

One tree, kept in three modules by area (each under the module size limit); import every
name from ``workflow.errors``. A new class goes into the module of its area and is listed here.
"""

from workflow.errors.auth import (  # noqa: F401
    LOGIN_FAILED,
    AuthError,
    CliActingRefused,
    GrantRefused,
    LoginFailed,
    LoginStepExpired,
    LoginThrottled,
    PasswordExpired,
    PasswordRejected,
    SecondFactorFailed,
    SessionEnded,
    SigningNotEnabled,
    TokenError,
    TokenRejected,
)
from workflow.errors.base import (  # noqa: F401
    AccountLocked,
    ClaimHeld,
    CredentialsRejected,
    DefinitionError,
    DueDateLocked,
    ExclusiveStateTaken,
    GuardFailed,
    InactiveUser,
    LinkedRecordsOpen,
    NotAuthorized,
    NotYetOpen,
    Problem,
    ReasonRequired,
    RecordNotFound,
    SegregationOfDuties,
    SignatureRejected,
    SignatureRequired,
    StaleRecord,
    TaskNotFound,
    TrainingRequired,
    TransitionNotAvailable,
    UnknownUser,
    UnknownWorkflow,
    UsernameTaken,
    ValidationFailed,
    WorkflowError,
)
from workflow.errors.integrity import (  # noqa: F401
    AttachmentDamaged,
    AttachmentRefused,
    AttachmentTooLarge,
    AttachmentTypeRefused,
    BackupError,
    ChangeReasonRequired,
    CheckpointError,
    ConfigError,
    ContentLocked,
    DefinitionTampered,
    KeyProblem,
    PopulationFixed,
    RequiredEarlier,
    TamperedData,
    UntrustedGrant,
)
