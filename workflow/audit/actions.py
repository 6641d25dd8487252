"""The actions an audit event can name, each with how a person reads it.

The audit-trail pages offer these in their filter menu (instead of scanning every event for
its distinct actions), and show the label in the trail. tests/unit/test_audit_actions.py
checks that every action the code writes is listed here: a new kind of event needs a line
here to be offered in the filter (filtering by an unlisted action still works).
"""

from __future__ import annotations

#: events on a record's chain
RECORD_ACTIONS: dict[str, str] = {
    "create": "Record created",
    "update": "Data changed",
    "transition": "Step taken",
    "sign": "Signed",
    "migrated": "Moved to a new definition version",
    "task_assigned": "Task assigned",
    "task_claimed": "Task claimed",
    "task_released": "Task released",
    "task_delegated": "Task delegated",
    "extension_requested": "Due-date extension requested",
    "extension_rejected": "Due-date extension rejected",
    "due_date_extended": "Due date extended",
    "record_exported": "True copy exported",
    "fired_on_matching": "Step fired on a matching record",
}

#: events on the system chain
SYSTEM_ACTIONS: dict[str, str] = {
    "login": "Signed in",
    "logout": "Signed out",
    "login_failed": "Sign-in failed",
    "account_locked": "Account locked",
    "account_unlocked": "Account unlocked",
    "sessions_ended": "Sessions ended",
    "user_created": "User created",
    "user_deactivated": "User deactivated",
    "password_changed": "Password changed",
    "password_reset": "Password reset",
    "password_change_failed": "Password change failed",
    "totp_enrolled": "Authenticator enrolled",
    "totp_reset": "Authenticator reset",
    "recovery_code_used": "Recovery code used",
    "role_granted": "Role granted",
    "role_revoked": "Role revoked",
    "role_grant_requested": "Role grant requested",
    "role_grant_approved": "Role grant approved",
    "role_grant_rejected": "Role grant rejected",
    "identity_verified": "Identity verified for signing",
    "signing_enabled": "Signing enabled",
    "esign_policy_accepted": "E-signature policy accepted",
    "esign_policy_acceptance_failed": "E-signature policy acceptance failed",
    "signature_failed": "Signature refused",
    "api_token_created": "API token created",
    "api_token_revoked": "API token revoked",
    "api_token_confirmed": "API token confirmed",
    "api_tokens_suspended": "API tokens suspended",
    "notify_mode_changed": "Notification setting changed",
    "profile_changed": "Profile changed (time zone, e-mail, notifications)",
    "definition_published": "Definition published",
    "definition_draft_created": "Definition draft created",
    "definition_draft_saved": "Definition draft saved",
    "definition_draft_submitted": "Definition draft submitted",
    "definition_draft_withdrawn": "Definition draft withdrawn",
    "records_migrated": "Records migrated",
    "key_created": "Key created",
    "database_restored": "Database restored from a backup",
    "key_rotated": "Key rotated",
    "rows_sealed": "Rows sealed",
    "integrity_check_failed": "Integrity check failed",
    "cli_authenticated": "Command line: person authenticated",
    "cli_maintenance": "Command line: maintenance mode",
    "attachment_uploaded": "File uploaded",
    "attachment_downloaded": "File downloaded",
}

ACTIONS: dict[str, str] = {**RECORD_ACTIONS, **SYSTEM_ACTIONS}


def action_label(action: str) -> str:
    """How ``action`` reads (an unlisted one: its name with spaces)."""
    return ACTIONS.get(action) or action.replace("_", " ").capitalize()
