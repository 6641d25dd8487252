"""``qms scheduler``, ``qms jobs ...``, ``qms timers run`` and ``qms notifications ...``: the
work that runs on a clock, and the delivery of what it queued."""

from __future__ import annotations

import sys

import click

from notifications.dispatcher import dead_letters, dispatch, requeue, requeue_all
from workflow import logs
from workflow.bootstrap import job_registry
from workflow.cli.common import CliError, checked_engine, friendly
from workflow.scheduling import claims, runner, service
from workflow.scheduling import schedules as schedule_file


@click.command("scheduler")
@click.option("--once", is_flag=True, help="Run what is due now, then exit.")
@friendly
def scheduler(once: bool) -> None:
    """Run the scheduled jobs (definitions/schedules/schedules.yaml or QMS_SCHEDULES_FILE).

    APScheduler is the clock (one tick a minute, in memory); the database decides what runs:
    each job runs once per period however many schedulers share the database, and a scheduler
    that was down runs a missed period once when it starts."""
    schedules = schedule_file.load_schedules(jobs=job_registry())
    engine, _ = checked_engine()
    if once:
        lines = service.run_due(engine, schedules, jobs=job_registry())
        for line in lines:
            click.echo(line)
        click.echo(f"{len(lines)} schedule(s) did something")
        return
    logs.configure(replace=True)  # the one handler: JSON lines (QMS_LOG_FORMAT)
    click.echo(f"scheduler {claims.runner_name()}: {len(schedules)} schedule(s); "
               "Ctrl-C stops it")
    service.serve(engine, schedules, jobs=job_registry())


@click.group("jobs")
def jobs_group() -> None:
    """Scheduled jobs: list, run one now, validate the schedules file."""


@jobs_group.command("list")
@friendly
def jobs_list() -> None:
    """Each schedule with its job, when it runs and its last run."""
    schedules = schedule_file.load_schedules(jobs=job_registry())
    engine, _ = checked_engine()
    runs = claims.last_runs(engine)
    for s in schedules.values():
        run = runs.get(s.name)
        last = "never" if run is None else (
            f"{run.status} {run.period_key} at {run.finished_at or run.started_at:%Y-%m-%d %H:%M}"
            + (f" ({run.error})" if run.error else ""))
        click.echo(f"{s.name:26} {s.job:24} "
                   f"{f'{s.cron} per {s.period}' if s.cron else 'every minute':32} "
                   f"last: {last}")
    click.echo("jobs: " + ", ".join(sorted(job_registry())))


@jobs_group.command("run")
@click.argument("name")
@friendly
def jobs_run(name: str) -> None:
    """Run schedule NAME now (still once per period: a done period is not run again)."""
    schedules = schedule_file.load_schedules(jobs=job_registry())
    if name not in schedules:
        raise CliError(f"no schedule {name!r}; schedules: {', '.join(schedules)}")
    engine, _ = checked_engine()
    line = runner.run_now(engine, schedules[name], jobs=job_registry())
    click.echo(line)
    if ": FAILED:" in line:
        sys.exit(1)


@jobs_group.command("validate")
@click.argument("file", required=False, type=click.Path(dir_okay=False))
def jobs_validate(file: str | None) -> None:
    """Validate the schedules file; print every problem as file:line: message."""
    try:
        schedules = schedule_file.load_schedules(file, jobs=job_registry())
    except schedule_file.ScheduleError as exc:
        for p in exc.problems:
            click.echo(str(p))
        sys.exit(1)
    click.echo(f"{file or schedule_file.schedules_file()}: ok: {len(schedules)} schedule(s)")


@click.group("timers")
def timers_group() -> None:
    """Timers set by definitions (escalations)."""


@timers_group.command("run")
def timers_run() -> None:
    """Fire every due timer now."""
    engine, _ = checked_engine()
    lines = engine.run_due_timers()
    for line in lines:
        click.echo(line)
    click.echo(f"{len(lines)} timer(s) handled")


@click.group("notifications")
def notifications_group() -> None:
    """Deliver queued notifications; list dead letters."""


@notifications_group.command("dispatch")
def notifications_dispatch() -> None:
    """Deliver pending messages now: in-app, e-mail (QMS_SMTP_URL), due digests."""
    engine, _ = checked_engine()
    report = dispatch(engine)
    click.echo(" ".join(f"{k}={v}" for k, v in report.summary().items()))


@notifications_group.command("dead")
def notifications_dead() -> None:
    """List dead-lettered messages (delivery gave up) with their last error."""
    engine, _ = checked_engine()
    with engine.reader() as s:
        rows = dead_letters(s)
    for m, who in rows:
        click.echo(f"#{m.id} {m.created_at:%Y-%m-%d %H:%M} to {who or m.recipient_role or '-'} "
                   f"({m.channel}, {m.attempts} attempt(s)): {m.subject} -- {m.last_error}")
    click.echo(f"{len(rows)} dead letter(s)")


@notifications_group.command("requeue")
@click.argument("ids", nargs=-1, type=int)
@click.option("--all", "every", is_flag=True, help="Every dead-lettered message.")
def notifications_requeue(ids: tuple[int, ...], every: bool) -> None:
    """Queue dead-lettered messages again (IDS from `qms notifications dead`, or --all) with a
    fresh set of attempts, after the cause is fixed; the next dispatch sends them."""
    if bool(ids) == every:
        raise CliError("name the messages (IDS) or give --all, not both")
    engine, _ = checked_engine()
    if every:
        click.echo(f"{requeue_all(engine)} message(s) queued again")
        return
    done = [i for i in ids if requeue(engine, i)]
    for i in sorted(set(ids) - set(done)):
        click.echo(f"#{i} is not dead-lettered", err=True)
    click.echo(f"{len(done)} message(s) queued again")
    if len(done) != len(ids):
        raise SystemExit(1)
