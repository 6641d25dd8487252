"""``qms sbom import FILE``: record the product's components (a CycloneDX JSON SBOM, e.g.
from ``make sbom``) on this QMS's inventory entry, as a named person with a reason
(workflow/sbom.py)."""

from __future__ import annotations

from pathlib import Path

import click

from workflow import sbom
from workflow.cli.common import act_as, acting_options, checked_engine, friendly


@click.group("sbom")
def sbom_group() -> None:
    """Software bill of materials of this QMS (CycloneDX)."""


@sbom_group.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@acting_options()
@click.option("--reason", required=True, help="Why the component list changes (release, "
                                              "upgrade); kept in the audit trail.")
@click.option("--system", "entry", default=None,
              help="The inventory entry (SYS-...); default: this QMS's (QMS_SYSTEM_NAME).")
@friendly
def sbom_import(file: Path, actor: str | None, password_stdin: bool, totp: str | None,
                maintenance: bool, reason: str, entry: str | None) -> None:
    """Record the components of a CycloneDX JSON FILE on an inventory entry."""
    raw = file.read_bytes()
    sbom.parse(raw)  # a bad file is refused before anyone is asked for a password
    engine, _ = checked_engine()
    who = act_as(engine, actor, password_stdin=password_stdin, totp=totp,
                 maintenance=maintenance, command="sbom import")
    assert who.username is not None  # --as is required
    res, doc = sbom.import_sbom(engine, raw, actor=who.username, reason=reason, entry=entry)
    click.echo(f"{res.number}: {len(doc.components)} components recorded ({doc.source})")
