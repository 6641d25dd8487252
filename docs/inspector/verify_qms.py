#!/usr/bin/env python3
"""Verify a QMS checkpoint or signed true copy with the public key alone.

This script is for inspectors. It uses NO code of the QMS product: only the Python standard
library, and the ``cryptography`` package if it is installed (otherwise the ``openssl``
command, version 3.0 or later). Read it before you trust it: it is short on purpose.

    python3 verify_qms.py checkpoint checkpoint-20260302T090000.000000Z-01.json --public-key qms-anchor-a1.pem
    python3 verify_qms.py copy CAPA-2026-0001.json --public-key qms-anchor-a1.pem
    python3 verify_qms.py copy CAPA-2026-0001.pdf --public-key qms-anchor-a1.pem  # + the .pdf.sig

What is signed (Ed25519, docs/inspector.md):
* a checkpoint file ``{"checkpoint": BODY, "signature": SIG}``: the canonical JSON of BODY
  (keys sorted, no spaces, UTF-8, non-ASCII characters as they are);
* a JSON true copy ``{..., "signature": SIG}``: the canonical JSON of the copy without its
  ``signature`` member;
* a PDF true copy: the PDF file's bytes, exactly; SIG is in the sidecar ``<file>.sig``.

SIG is ``{"algorithm": "Ed25519", "key_id": ..., "public_key_sha256": ..., "value": BASE64}``.
Exit status 0: verified; 1: not verified (the reason is printed); 2: bad usage or input.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile


def canonical(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def verify_ed25519(pem: bytes, data: bytes, signature: bytes) -> bool:
    """True when ``signature`` is the Ed25519 signature of ``data`` under the PEM public key."""
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
        from cryptography.hazmat.primitives.serialization import load_pem_public_key
    except ImportError:
        return _verify_with_openssl(pem, data, signature)
    key = load_pem_public_key(pem)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("the public key is not an Ed25519 key")
    try:
        key.verify(signature, data)
    except InvalidSignature:
        return False
    return True


def _verify_with_openssl(pem: bytes, data: bytes, signature: bytes) -> bool:
    if shutil.which("openssl") is None:
        raise SystemExit("neither the Python package 'cryptography' nor the openssl command is available")
    with tempfile.TemporaryDirectory() as tmp:
        paths = {}
        for name, content in (("key.pem", pem), ("data", data), ("sig", signature)):
            paths[name] = os.path.join(tmp, name)
            with open(paths[name], "wb") as fh:
                fh.write(content)
        result = subprocess.run(
            ["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", paths["key.pem"], "-rawin",
             "-in", paths["data"], "-sigfile", paths["sig"]],
            capture_output=True, text=True, check=False)
    return result.returncode == 0


def public_key_sha256(pem: bytes) -> str:
    """sha256 of the raw 32-byte key (the last 32 bytes of the DER SubjectPublicKeyInfo)."""
    lines = [ln for ln in pem.decode().splitlines() if ln and not ln.startswith("-----")]
    der = base64.b64decode("".join(lines))
    return hashlib.sha256(der[-32:]).hexdigest()


def check(data: bytes, sig: dict, pems: list[bytes]) -> list[str]:
    if sig.get("algorithm") != "Ed25519" or not isinstance(sig.get("value"), str):
        return ["the signature block is missing or not Ed25519"]
    signature = base64.b64decode(sig["value"])
    for pem in pems:
        if verify_ed25519(pem, data, signature):
            return []
    given = ", ".join(public_key_sha256(p)[:16] for p in pems)
    return [f"the signature (key {sig.get('key_id')}, public key sha256 "
            f"{str(sig.get('public_key_sha256'))[:16]}) does not verify with the public key(s) "
            f"given ({given}): the file was changed after it was signed, or another key signed it"]


def verify_checkpoint(path: str, pems: list[bytes]) -> tuple[list[str], str]:
    with open(path, "rb") as fh:
        doc = json.loads(fh.read())
    body, sig = doc["checkpoint"], doc["signature"]
    problems = check(canonical(body), sig, pems)
    prev = body.get("previous")
    if prev:
        before = os.path.join(os.path.dirname(os.path.abspath(path)), prev["file"])
        if not os.path.exists(before):
            problems.append(f"the checkpoint before it, {prev['file']}, is missing")
        else:
            with open(before, "rb") as fh:
                if hashlib.sha256(fh.read()).hexdigest() != prev["sha256"]:
                    problems.append(f"the checkpoint before it, {prev['file']}, was changed")
    summary = (f"checkpoint of {body['created_at']} ({body.get('system')}): "
               f"{len(body['chains'])} chains, {len(body['records'])} records")
    for name, chain in sorted(body["chains"].items()):
        summary += f"\n  chain {name}: #{chain['seq']} {chain['head']}"
    return problems, summary


def verify_copy(path: str, pems: list[bytes]) -> tuple[list[str], str]:
    with open(path, "rb") as fh:
        raw = fh.read()
    if raw.startswith(b"%PDF"):
        with open(path + ".sig", "rb") as fh:
            sig = json.loads(fh.read())
        problems = check(raw, sig, pems)
        if sig.get("sha256") != hashlib.sha256(raw).hexdigest():
            problems.append("the PDF's sha256 differs from the one its .sig names")
        summary = f"PDF true copy of {sig.get('record')} (chain head {sig.get('chain_head')})"
        cp = sig.get("checkpoint") or {}
    else:
        doc = json.loads(raw)
        sig = doc.get("signature") or {}
        body = {k: v for k, v in doc.items() if k != "signature"}
        problems = check(canonical(body), sig, pems)
        integrity = doc.get("integrity", {})
        summary = (f"JSON true copy of {doc.get('record', {}).get('number')}, exported "
                   f"{doc.get('exported_at')}, chain head #{integrity.get('chain_head_seq')} "
                   f"{integrity.get('chain_head_hash')}")
        cp = integrity.get("checkpoint") or {}
    if cp:
        summary += (f"; covered by checkpoint {cp.get('file')} of {cp.get('created_at')} "
                    f"(record chain at #{cp.get('record_seq')})")
    else:
        summary += "; no checkpoint covered the record when it was copied"
    return problems, summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["checkpoint", "copy"])
    parser.add_argument("file")
    parser.add_argument("--public-key", action="append", required=True,
                        help="PEM file of the anchor public key (repeatable)")
    args = parser.parse_args(argv)
    try:
        pems = []
        for p in args.public_key:
            with open(p, "rb") as fh:
                pems.append(fh.read())
        run = verify_checkpoint if args.what == "checkpoint" else verify_copy
        problems, summary = run(args.file, pems)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"cannot verify {args.file}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    if problems:
        print(f"NOT VERIFIED: {args.file}", file=sys.stderr)
        for p in problems:
            print(f"  {p}", file=sys.stderr)
        return 1
    print(f"VERIFIED: {args.file}\n{summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
