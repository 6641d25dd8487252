"""Errors of credentials, sessions and API tokens."""

from __future__ import annotations

from workflow.errors.base import NotAuthorized, WorkflowError

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
