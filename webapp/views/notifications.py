"""In-app notifications: the bell's unread count (every page), the list with mark-as-read,
the delivery preference (immediately or a daily e-mail digest), and for administrators the
dead-lettered messages (delivery gave up after QMS_SMTP_MAX_ATTEMPTS attempts).

Every POST is CSRF-protected (CSRFProtect, webapp/__init__.py); a user only ever sees and
marks their own notifications (R-P11-10d-2).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from notifications import inbox, unread_count
from notifications.dispatcher import dead_letters, requeue, requeue_all
from webapp.context import engine, read_session, safe_next
from webapp.views.auth import roles_required
from workflow.identity import users as identity
from workflow.identity.admin import ADMIN_ROLE

bp = Blueprint("notifications", __name__)
MODES = {"immediate": "Immediately", "digest": "Once a day (digest)"}


@bp.app_context_processor
def _bell() -> dict[str, Any]:
    def unread_notifications() -> int:
        """Counted once per request, only when a page shows the bell."""
        if "qms_unread" not in g:
            s = read_session()
            g.qms_unread = unread_count(s, current_user.id)
        return g.qms_unread

    return {"unread_notifications": unread_notifications}


@bp.route("/notifications")
@login_required
def index() -> Any:
    unread_only = request.args.get("unread") == "1"
    s = read_session()
    items = inbox.notifications_of(s, current_user.id, unread_only=unread_only)
    mode = identity.get_user(s, current_user.username).notify_mode
    return render_template("notifications/index.html", items=items, unread_only=unread_only,
                           mode=mode, modes=MODES)


@bp.route("/notifications/<int:notification_id>/read", methods=["POST"])
@login_required
def mark_read(notification_id: int) -> Any:
    if inbox.mark_read(engine(), current_user.id, [notification_id]) is None:
        abort(404)
    return redirect(safe_next(request.form.get("back"), url_for("notifications.index")))


@bp.route("/notifications/read-all", methods=["POST"])
@login_required
def mark_all_read() -> Any:
    n = inbox.mark_read(engine(), current_user.id) or 0
    flash(f"{n} notification{'' if n == 1 else 's'} marked as read.", "success")
    return redirect(url_for("notifications.index"))


@bp.route("/notifications/preference", methods=["POST"])
@login_required
def preference() -> Any:
    mode = request.form.get("mode", "")
    if mode not in MODES:
        flash("Choose immediately or once a day.", "error")
        return redirect(url_for("notifications.index"))
    identity.set_notify_mode(engine(), current_user.username, mode)
    flash(f"E-mail notifications: {MODES[mode].lower()}.", "success")
    return redirect(url_for("notifications.index"))


@bp.route("/admin/notifications/dead")
@roles_required(ADMIN_ROLE)
def dead() -> Any:
    s = read_session()
    rows = dead_letters(s)
    return render_template("notifications/dead.html", rows=rows)


@bp.route("/admin/notifications/dead/<int:outbox_id>/retry", methods=["POST"])
@roles_required(ADMIN_ROLE)
def retry(outbox_id: int) -> Any:
    if requeue(engine(), outbox_id):
        flash(f"Message #{outbox_id} queued again; the dispatcher retries it within a minute.",
              "success")
    else:
        flash(f"Message #{outbox_id} is not dead-lettered.", "error")
    return redirect(url_for("notifications.dead"))


@bp.route("/admin/notifications/dead/retry-all", methods=["POST"])
@roles_required(ADMIN_ROLE)
def retry_all() -> Any:
    n = requeue_all(engine())
    flash(f"{n} message{'' if n == 1 else 's'} queued again; the dispatcher retries them "
          "within a minute." if n else "There was no undeliverable message.",
          "success" if n else "info")
    return redirect(url_for("notifications.dead"))
