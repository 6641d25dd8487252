"""``qms audit checkpoint``, ``qms audit verify-checkpoint``: signed checkpoints anchored
outside the database, and their offline check with the public key alone (docs/inspector.md;
R-SEC-14, R-SEC-15, R-SEC-16)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from workflow import config
from workflow.audit import checkpoints
from workflow.audit.trail import ChainProblem
from workflow.cli.common import CliError, checked_engine, friendly
from workflow.db.uow import Units
from workflow.errors import WorkflowError
from workflow.keyring import load_public_pem, public_fingerprint
from workflow.queries import copies
from workflow.signatures.keys import key_provider


def public_keys(paths: tuple[str, ...]) -> list[Any]:
    """The Ed25519 public keys in these PEM files (``qms keys export-public``); a file that
    is missing or holds no such key is one clear line."""
    keys = []
    for p in paths:
        try:
            keys.append(load_public_pem(Path(p).read_bytes()))
        except OSError as exc:
            raise CliError(f"cannot read the public key {p}: {exc.strerror or exc}") from None
        except ValueError:
            raise CliError(f"{p} is not an Ed25519 public key in PEM form (give the file "
                           "`qms keys export-public` wrote)") from None
    return keys


def since_checkpoint(given: str) -> Path:
    """The checkpoint ``--since-checkpoint`` names (empty: the newest in the checkpoint
    directory), read and checked for its form now: a missing or garbled file is one clear
    line and exit status 1 before anything is verified."""
    try:
        path = Path(given) if given else checkpoints.latest(config.settings().checkpoint_path)
        checkpoints.load(path)
    except WorkflowError as exc:
        raise CliError(str(exc)) from None
    return path


def compare_checkpoint(engine: Units, path: Path) -> list[ChainProblem]:
    """The checkpoint's signature and whether the database still extends it."""
    return checkpoints.verify_since(engine, path, key_provider().anchor_keys())


@click.group("audit")
def audit_group() -> None:
    """Signed checkpoints of the audit trail, kept outside the database."""


@audit_group.command("checkpoint")
@click.option("--dir", "directory", type=click.Path(file_okay=False), default=None,
              help="Write into this directory instead of QMS_CHECKPOINT_DIR.")
@friendly
def checkpoint(directory: str | None) -> None:
    """Write a signed checkpoint: every audit chain's head and sequence, every record, the
    record counters and the definition hashes, at the current UTC time, signed with the
    Ed25519 anchor key; one new read-only file, never rewritten."""
    engine, _ = checked_engine()
    s = config.settings()
    anchor = key_provider(s).anchor_keys()
    path = checkpoints.take(engine, anchor, Path(directory) if directory else s.checkpoint_path,
                            system=engine.system_name)
    body = checkpoints.load(path)["checkpoint"]
    totals = body["totals"]
    click.echo(f"checkpoint {path} ({totals['chains']} chains, {totals['records']} records, "
               f"{totals['events']} events; anchor key {anchor.current_id})")


@audit_group.command("verify-checkpoint")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--public-key", "keys", multiple=True, required=True,
              help="The anchor public key (PEM from `qms keys export-public`); repeatable.")
def verify_checkpoint(file: str, keys: tuple[str, ...]) -> None:
    """Offline, with the public key alone (no database, no server secret): is FILE a
    checkpoint signed by this system, unchanged, and is the checkpoint before it unchanged?"""
    pubs = public_keys(keys)
    try:
        doc, problems = checkpoints.check_file(Path(file), pubs)
    except WorkflowError as exc:
        raise CliError(str(exc)) from None
    body = doc["checkpoint"]
    if problems:
        click.echo(f"FAILED: {file}", err=True)
        for p in problems:
            click.echo(f"  [checkpoint] {p}", err=True)
        sys.exit(1)
    fp = ", ".join(public_fingerprint(k)[:16] for k in pubs)
    click.echo(f"OK: {file} signed {body['created_at']} by {body.get('system')} (anchor key "
               f"{doc['signature']['key_id']}, public key sha256 {fp}): "
               f"{len(body['chains'])} chains, {len(body['records'])} records, "
               f"{len(body['counters'])} counters, {len(body['definitions'])} definitions")


@click.command("verify-copy")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--public-key", "keys", multiple=True, required=True,
              help="The anchor public key (PEM from `qms keys export-public`); repeatable.")
def verify_copy(file: str, keys: tuple[str, ...]) -> None:
    """Offline, with the public key alone: is FILE (a JSON true copy, or a PDF with its
    FILE.sig) signed by this system and unchanged? Prints the record, its chain head and the
    checkpoint that covered it."""
    pubs = public_keys(keys)
    try:
        info, problems = copies.check_signed(Path(file), pubs)
    except WorkflowError as exc:
        raise CliError(str(exc)) from None
    if problems:
        click.echo(f"FAILED: {file}", err=True)
        for p in problems:
            click.echo(f"  [copy] {p}", err=True)
        sys.exit(1)
    head = info.get("chain_head") or {}
    cp = info.get("checkpoint")
    covered = (f"covered by checkpoint {cp['file']} of {cp['created_at']} (sha256 "
               f"{str(cp['sha256'])[:16]}..., record chain at #{cp['record_seq']})" if cp else
               "no checkpoint covered the record when it was copied")
    click.echo(f"OK: {file} is a true copy of {info.get('record')} signed by anchor key "
               f"{info.get('key_id')}; chain head #{head.get('seq')} {head.get('hash')}; "
               f"{covered}")
