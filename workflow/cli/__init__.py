"""The ``qms`` command. Every change goes through the engine's unit of work; no command
commits on its own. Errors are printed as one clear line and exit with status 1 (2 for
usage errors).

One module per command group; each command parses its options, calls one function of the
engine or of a workflow package, and prints. ``qms serve`` is added by webapp/cli.py, the
console script, so that the engine package never imports Flask.
"""

from __future__ import annotations

import logging

import click

from workflow import config
from workflow.cli.anchor import audit_group, verify_copy
from workflow.cli.audit import export, verify_audit
from workflow.cli.backup import backup_command, restore_command
from workflow.cli.common import CliError
from workflow.cli.db import db_group, init, stats
from workflow.cli.definitions import definitions_group
from workflow.cli.gap import gap_group
from workflow.cli.jobs import jobs_group, notifications_group, scheduler, timers_group
from workflow.cli.keys import keys_group
from workflow.cli.records import records_group
from workflow.cli.sbom import sbom_group
from workflow.cli.settings import config_group
from workflow.cli.tokens import tokens_group
from workflow.cli.users import users_group
from workflow.cli.validation import validation_report
from workflow.errors import ConfigError


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Log more.")
def main(verbose: bool) -> None:
    """QMS workflow engine: deviations, CAPAs, change control, access reviews, training."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    # a command reads the QMS_ variables as they are when it starts, checks them before it
    # does anything, and leaves no settings behind (several commands can run in one process)
    config.reset()
    click.get_current_context().call_on_close(config.reset)
    try:
        config.settings()
    except ConfigError as exc:
        raise CliError(str(exc)) from None


for command in (db_group, init, stats, definitions_group, verify_audit, export, users_group,
                tokens_group, records_group, timers_group, scheduler, jobs_group,
                notifications_group, validation_report):
    main.add_command(command)
main.add_command(keys_group)  # docs/keys.md
main.add_command(gap_group)  # docs/risk.md
main.add_command(config_group)  # README, Configuration
main.add_command(audit_group)  # docs/inspector.md
main.add_command(verify_copy)  # docs/inspector.md
main.add_command(backup_command)  # docs/operations.md
main.add_command(restore_command)  # docs/operations.md
main.add_command(sbom_group)  # docs/operations.md, Software bill of materials

__all__ = ["main"]
