"""``qms keys ...``: list the keys by id, rotate one, export the anchor keys' public half for
an inspector (docs/keys.md; R-SEC-11, R-SEC-12, R-SEC-13). No command ever prints a secret."""

from __future__ import annotations

from pathlib import Path

import click

from workflow import config
from workflow.cli.common import checked_engine, cli_reason, friendly
from workflow.cli.db import history, make_keys
from workflow.signatures.keys import KINDS, key_provider, record_creation, record_rotation


@click.group("keys")
def keys_group() -> None:
    """The HMAC server keys and the Ed25519 anchor keys, by id."""


@keys_group.command("list")
@friendly
def keys_list() -> None:
    """The key ids of each kind, the current one marked (anchor keys with the sha256 of their
    public key); never a secret."""
    provider = key_provider()
    ring = provider.hmac_keys()
    click.echo("hmac (audit hashes, seals, signature MACs; secret):")
    for key_id in ring.ids:
        mark = "  current" if key_id == ring.current_id else ""
        click.echo(f"  {key_id}{mark}")
    anchors = provider.anchor_keys()
    click.echo("anchor (Ed25519: checkpoints and true copies; give inspectors the public key):")
    for key_id in anchors.ids:
        mark = "  current" if key_id == anchors.current_id else ""
        click.echo(f"  {key_id}  public sha256 {anchors.public_fingerprint(key_id)}{mark}")


@keys_group.command("rotate")
@click.argument("kind", type=click.Choice(KINDS))
@click.option(
    "--reason", default="scheduled key rotation", show_default=True, help="Why the key is rotated (audited)."
)
@friendly
def keys_rotate(kind: str, reason: str) -> None:
    """Start a new current key of KIND (hmac or anchor): new audit events, seals, signature
    MACs (hmac) or checkpoints and copies (anchor) use it; everything made with an older key
    stays verifiable. Restart the web server and the scheduler afterwards: a process reads
    the keys when it starts. The rotation is recorded on the system audit trail."""
    why = cli_reason(reason)
    checked_engine()  # the database is reachable and current before anything changes
    new = key_provider().rotate(kind)
    config.reset()
    engine, _ = checked_engine()  # the keys as they are now: the event carries the new id
    record_rotation(engine, kind, new, why)
    click.echo(
        f"{kind}: new current key {new}; older keys stay for verification. Restart the "
        "web server and the scheduler so they use it."
    )
    if kind == "anchor":
        click.echo("Give inspectors its public key: qms keys export-public --id " + new)


@keys_group.command("create")
@click.option("--new-anchor", is_flag=True,
              help="Create a missing anchor key although the database holds audit events "
                   "(an installation that never had one). Never creates a missing HMAC key.")
@click.option("--reason", default="anchor key created", show_default=True,
              help="Why (audited, with --new-anchor).")
@friendly
def keys_create(new_anchor: bool, reason: str) -> None:
    """Create the key files that are missing (QMS_SIGNATURE_KEY_FILE, QMS_ANCHOR_KEY_FILE),
    only while the database holds no audit event and no signature; `qms init` does the same.
    Existing key files are never replaced. On a database with history a missing key is
    restored from the backup of the keys, not created."""
    why = cli_reason(reason)
    made = make_keys(allow_new_anchor=new_anchor)
    if not made:
        click.echo("every key is there (or comes from QMS_SIGNATURE_KEY or QMS_KEY_PROVIDER); "
                   "nothing created")
        return
    if new_anchor and any(kind == "anchor" for kind, _ in made) and history():
        engine, _ = checked_engine()  # a new anchor key on a database with history: audited
        record_creation(engine, "anchor", "a1", why)
        click.echo("recorded on the system audit trail (key_created); give inspectors its "
                   "public key: qms keys export-public --id a1")

@keys_group.command("export-public")
@click.option("--id", "key_id", default=None, help="Only this anchor key (PEM on stdout).")
@click.option(
    "--output",
    "-o",
    type=click.Path(file_okay=False),
    default=None,
    help="Write qms-anchor-<id>.pem per key into this directory.",
)
@friendly
def keys_export_public(key_id: str | None, output: str | None) -> None:
    """The anchor keys' public halves (PEM, SubjectPublicKeyInfo) for verifying checkpoints
    and true copies offline (docs/inspector.md). The HMAC keys have no public half."""
    anchors = key_provider().anchor_keys()
    ids = anchors.ids
    if key_id is not None:
        if key_id not in ids:
            raise click.ClickException(f"no anchor key {key_id!r} (have: {', '.join(ids)})")
        ids = [key_id]
    if output:
        folder = Path(output)
        folder.mkdir(parents=True, exist_ok=True)
        for k in ids:
            path = folder / f"qms-anchor-{k}.pem"
            path.write_text(anchors.public_pem(k))
            click.echo(f"{k}: {path} (sha256 {anchors.public_fingerprint(k)})", err=True)
        return
    if key_id is not None:
        click.echo(anchors.public_pem(key_id), nl=False)
        return
    for k in ids:
        click.echo(f"# anchor key {k} (sha256 {anchors.public_fingerprint(k)})")
        click.echo(anchors.public_pem(k), nl=False)
