"""The inspector's second way (docs/inspector.md): a checkpoint verified with the public key
alone by code that does not import the project - the standalone script
docs/inspector/verify_qms.py (with the ``cryptography`` package, and with plain ``openssl``
when that package is missing), and the documented openssl commands (21 CFR 11.10(b)(e),
EU GMP Annex 11 §7, §8)."""

from __future__ import annotations

import ast
import base64
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from workflow.audit import checkpoints
from workflow.config import REPO_ROOT
from workflow.keyring import AnchorKeys

SCRIPT = REPO_ROOT / "docs" / "inspector" / "verify_qms.py"
ANCHOR = AnchorKeys.from_seeds({"a1": b"\x31" * 32, "a2": b"\x32" * 32}, "a2")
PROJECT = ("workflow", "webapp", "notifications", "tests")

#: runs the script as ``python verify_qms.py ARGS`` and then proves nothing of the project was
#: imported; ``block`` hides a module (as if not installed)
RUNNER = """
import runpy, sys
block = {block!r}
if block:
    sys.modules[block] = None
sys.argv = {argv!r}
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
    code = 0
except SystemExit as exc:
    code = exc.code
loaded = sorted(m for m in sys.modules if m.split(".")[0] in {project!r})
if loaded:
    print("project modules imported:", loaded, file=sys.stderr)
    sys.exit(3)
sys.exit(code)
"""


def run_script(*args: str, block: str = "", cwd: Path) -> subprocess.CompletedProcess[str]:
    code = RUNNER.format(block=block, argv=[str(SCRIPT), *args], project=PROJECT)
    # -I: no PYTHONPATH, no user site, not the current directory on sys.path
    return subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True,
                          cwd=cwd, check=False, timeout=60)


def test_the_script_imports_only_the_standard_library_and_cryptography():
    """R-SEC-16: the script an inspector runs uses no code of ours (read from its source)."""
    tree = ast.parse(SCRIPT.read_text())
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            roots.add((node.module or "").split(".")[0])
    assert roots <= set(sys.stdlib_module_names) | {"cryptography", "__future__"}, roots


@pytest.fixture
def written(engine, people, tmp_path):
    """Two checkpoints of a database with a record, and the anchor public key as PEM."""
    r = engine.start("capa", people["emp"], {"title": "t", "description": "d"})
    engine.fire(r.number, "assign", people["qa"], {"owner": people["owner"]})
    cps = tmp_path / "cps"
    first = checkpoints.take(engine, ANCHOR, cps)
    second = checkpoints.take(engine, ANCHOR, cps)
    pem = tmp_path / "qms-anchor-a2.pem"
    pem.write_text(ANCHOR.public_pem("a2"))
    return first, second, pem


@pytest.mark.parametrize("block", ["", "cryptography"])
def test_the_standalone_script_verifies_a_checkpoint_with_the_public_key_only(written, tmp_path,
                                                                               block):
    """R-SEC-16, R-SEC-14: the script verifies the checkpoint (and that the one before it is
    unchanged) with the PEM public key alone, in a process that never imports the project;
    without the cryptography package it uses the openssl command. An edited checkpoint, or a
    changed earlier one, is NOT VERIFIED with exit status 1."""
    if block and shutil.which("openssl") is None:
        pytest.skip("no openssl command")
    first, second, pem = written
    ok = run_script("checkpoint", str(second), "--public-key", str(pem), block=block, cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith(f"VERIFIED: {second}\ncheckpoint of ")
    assert "chain system: #" in ok.stdout

    doc = json.loads(second.read_text())
    doc["checkpoint"]["chains"]["system"]["seq"] += 1
    edited = second.parent / "edited.json"
    edited.write_text(json.dumps(doc))
    bad = run_script("checkpoint", str(edited), "--public-key", str(pem), block=block,
                     cwd=tmp_path)
    assert bad.returncode == 1 and "NOT VERIFIED" in bad.stderr and "does not verify" in bad.stderr

    first.chmod(0o644)
    first.write_bytes(first.read_bytes().replace(b'"system"', b'"System"', 1))
    chained = run_script("checkpoint", str(second), "--public-key", str(pem), block=block,
                         cwd=tmp_path)
    assert chained.returncode == 1 and f"{first.name}, was changed" in chained.stderr


def test_the_documented_openssl_commands_verify_a_checkpoint(written, tmp_path):
    """R-SEC-16: docs/inspector.md's plain way: canonical JSON of the body with a Python
    one-liner (standard library), the signature base64-decoded, ``openssl pkeyutl -verify``."""
    if shutil.which("openssl") is None:
        pytest.skip("no openssl command")
    _, second, pem = written
    body = tmp_path / "body.bin"
    with body.open("wb") as out:
        subprocess.run([sys.executable, "-I", "-c", (
            "import json,sys; d=json.load(open(sys.argv[1],encoding='utf-8'));"
            "sys.stdout.buffer.write(json.dumps(d['checkpoint'],sort_keys=True,"
            "separators=(',',':'),ensure_ascii=False).encode())"), str(second)],
            stdout=out, check=True)
    sig = tmp_path / "sig.bin"
    sig.write_bytes(base64.b64decode(json.loads(second.read_text())["signature"]["value"]))
    ok = subprocess.run(["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", str(pem), "-rawin",
                         "-in", str(body), "-sigfile", str(sig)], capture_output=True, text=True)
    assert ok.returncode == 0 and "Signature Verified Successfully" in ok.stdout
    body.write_bytes(body.read_bytes().replace(b'"seq":', b'"seq":1', 1))
    bad = subprocess.run(["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", str(pem), "-rawin",
                          "-in", str(body), "-sigfile", str(sig)], capture_output=True, text=True)
    assert bad.returncode != 0
