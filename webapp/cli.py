"""The ``qms`` console script: the engine's commands (workflow/cli/) plus ``qms serve``.

Kept here so that the engine package never imports Flask.
"""

from __future__ import annotations

import logging

import click
from werkzeug.serving import WSGIRequestHandler

from webapp import create_app
from webapp.ops import ENVIRON_KEY
from workflow import logs
from workflow.cli import main

access_log = logging.getLogger("qms.access")


class QuietRequestHandler(WSGIRequestHandler):
    """Flask's development server without its version banner: the ``Server`` header says
    ``QMS``, not ``Werkzeug/3.x Python/3.x`` (a version tells an attacker which known
    flaws to try); its access lines are structured like gunicorn's (webapp/gunicorn_conf.py),
    with the request id of the answer and the client address after ProxyFix."""

    server_version = "QMS"  # type: ignore[assignment]  # werkzeug's is a property

    def version_string(self) -> str:
        return "QMS"

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        environ = getattr(self, "environ", {}) or {}
        status = getattr(code, "value", code)
        access_log.info("%s %s %s", self.command, self.path, status,
                        extra={"method": self.command, "path": self.path,
                               "status": int(status) if str(status).isdigit() else None,
                               "bytes": size if size != "-" else None,
                               "client": environ.get("REMOTE_ADDR", self.address_string()),
                               "request_id": environ.get(ENVIRON_KEY)})


@main.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--scheduler", "with_scheduler", is_flag=True,
              help="Also run the scheduler (notifications, timers, reminders, periodic jobs) "
                   "in this process, as `make run` does.")
def serve(host: str, port: int, with_scheduler: bool) -> None:
    """Serve the web UI with Flask's server (for one machine; see README for production)."""
    # imported here: every ``qms`` command loads this module, only ``serve`` needs these
    from workflow.demo import DEMO_PASSWORD
    from workflow.identity.users import find_user

    logs.configure(replace=True)  # the one handler (QMS_LOG_FORMAT), not the CLI's plain one
    app = create_app()
    click.echo(f"QMS web UI on http://{host}:{port}/")
    with app.config["QMS_ENGINE"].reader() as s:
        if find_user(s, "emma") is not None:
            click.echo(f"demo login: emma (employee), olga (owner), quinn (QA), ada (admin); "
                       f"password {DEMO_PASSWORD}")
            click.echo("QA and admin users set up an authenticator app at first login.")
    if with_scheduler:
        from workflow.bootstrap import job_registry
        from workflow.scheduling import schedules as schedule_file
        from workflow.scheduling import service

        jobs = job_registry()
        service.start_background(app.config["QMS_ENGINE"],
                                 schedule_file.load_schedules(jobs=jobs), jobs=jobs)
        click.echo("scheduler running in this process (notifications, timers, reminders)")
    app.run(host=host, port=port, debug=False, use_reloader=False,
            request_handler=QuietRequestHandler)


__all__ = ["main"]

if __name__ == "__main__":  # ``python -m webapp.cli serve`` works without the installed script
    main()
