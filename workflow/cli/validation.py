"""``qms validation-report``: the IQ/OQ validation pack (workflow.validation.report)."""

from __future__ import annotations

import click

from workflow.cli.common import CliError, checked_engine, friendly
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
@friendly
def validation_report(results_path: str | None, out_dir: str | None, catalogue_path: str | None,
                      pytest_args: str, submit_as: str | None) -> None:
    """Write the IQ/OQ validation report (HTML, PDF, JSON) from a run of the test suite."""
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
    if submit_as:
        engine, _ = checked_engine()
        r = submit_pack(engine, pack, submit_as)
        click.echo(f"{r.number} created in state {r.state}: QA approves it with an "
                   f"e-signature (meaning Approved)")
