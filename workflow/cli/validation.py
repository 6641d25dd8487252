"""``qms validation-report``: the IQ/OQ validation pack (workflow.validation.report)."""

from __future__ import annotations

import click

from workflow.cli.common import CliError, act_as, checked_engine, friendly
from workflow.validation.report import PackError, submit_pack, write_pack


@click.command("validation-report")
@click.option("--results", "results_path", type=click.Path(dir_okay=False, exists=True),
              default=None, help="Read this results JSON (written by `pytest --trace-report "
                                 "PATH`) instead of running the test suite.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Directory for the HTML, PDF and JSON report "
                   "(default: <QMS_INSTANCE_DIR>/validation-report).")
@click.option("--requirements", "catalogue_path", type=click.Path(dir_okay=False), default=None,
              help="Requirements catalogue (default: docs/requirements.yaml).")
@click.option("--pytest-args", default="", help="Extra pytest arguments when running the "
                                                "suite (a subset is reported as such).")
@click.option("--submit-as", "submit_as", default=None, metavar="USERNAME",
              help="Also start a validation_report record (QA approves it with an "
                   "e-signature) holding the PDF's SHA-256 and path.")
@click.option("--password-stdin", is_flag=True,
              help="With --submit-as: read the submitter's password from standard input.")
@click.option("--totp", default=None, help="With --submit-as: the submitter's authenticator "
                                           "code (asked when needed).")
@click.option("--maintenance", is_flag=True,
              help="With --submit-as: without the submitter's password (only when "
                   "QMS_CLI_MAINTENANCE=1; recorded with your OS user).")
@friendly
def validation_report(results_path: str | None, out_dir: str | None, catalogue_path: str | None,
                      pytest_args: str, submit_as: str | None, password_stdin: bool,
                      totp: str | None, maintenance: bool) -> None:
    """Write the IQ/OQ validation report (HTML, PDF, JSON) from a run of the test suite.
    --submit-as USER (asked for USER's password first) also submits it for QA's approval."""
    engine = None
    if submit_as:  # the submitter's credentials first, not after a long test run
        engine, _ = checked_engine()
        act_as(engine, submit_as, password_stdin=password_stdin, totp=totp,
               maintenance=maintenance, command="validation-report --submit-as")
    try:
        pack = write_pack(results_path=results_path, out_dir=out_dir,
                          catalogue_path=catalogue_path, pytest_args=pytest_args,
                          say=click.echo)
    except PackError as exc:
        raise CliError(str(exc)) from None
    report = pack.report
    t = report["requirement_totals"]
    click.echo(f"conclusion: {report['conclusion']}  ({t['requirements']} requirements, "
               f"{t['implemented']} implemented, {t['with tests']} with tests; "
               f"{len(report['tests'])} tests: "
               + ", ".join(f"{v} {k}" for k, v in report["test_totals"].items()) + ")")
    for d in report["deviations"]:
        click.echo(f"  deviation: {d}")
    for p, h in pack.digests.items():
        click.echo(f"{p}  sha256 {h}")
    if submit_as and engine is not None:
        r = submit_pack(engine, pack, submit_as)
        click.echo(f"{r.number} created in state {r.state}: QA approves it with an "
                   f"e-signature (meaning Approved)")
