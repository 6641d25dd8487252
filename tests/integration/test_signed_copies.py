"""Signed true copies (issue 13, item 4): a JSON or PDF copy embeds the record's chain head and
the last checkpoint covering it and is signed with the Ed25519 anchor key, so a copy handed to
an inspector is verifiable on its own with the public key - by ``qms verify-copy`` and by the
standalone script that uses no code of ours (21 CFR 11.10(b)(e), EU GMP Annex 11 §7, §8)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.conftest import TEST_KEY
from tests.factories import anchor_key_file, sign
from tests.integration.test_inspector import run_script
from workflow.audit import checkpoints
from workflow.cli import main
from workflow.errors import CheckpointError
from workflow.identity import enablement
from workflow.identity import users as identity
from workflow.keyring import AnchorKeys
from workflow.queries import copies

ANCHOR = AnchorKeys.from_seeds({"a1": b"\x41" * 32}, "a1")
OTHER = AnchorKeys.from_seeds({"a1": b"\x42" * 32}, "a1")


def capa(engine, people, title="Label mix-up"):
    r = engine.start("capa", people["emp"], {"title": title, "description": "At QC."})
    engine.fire(r.number, "assign", people["qa"], {"owner": people["owner"]})
    engine.fire(r.number, "cancel", people["qa"], reason="Duplicate", signature=sign(people["qa"]))
    return r.number


def write_json(path: Path, doc: dict) -> Path:
    path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def test_a_json_copy_carries_chain_head_checkpoint_and_signature(engine, people, tmp_path):
    """R-SEC-17, R-SEC-16, R-P11-10b-1: the signed JSON copy names the checkpoint that covered
    the record (file, sha256, where it saw the chain) and verifies with the public key alone;
    any edit to the file, or another system's key, fails; the HMAC checks still pass."""
    number = capa(engine, people)
    cp = checkpoints.take(engine, ANCHOR, tmp_path / "cps")
    newer = capa(engine, people, "After the checkpoint")
    doc = copies.export(engine, number, "json", "inspection", anchor=ANCHOR,
                        checkpoint_dir=tmp_path / "cps")
    assert doc["integrity"]["checkpoint"]["file"] == cp.name
    assert doc["integrity"]["checkpoint"]["record_seq"] == doc["integrity"]["chain_head_seq"]
    assert doc["signature"]["key_id"] == "a1" and doc["signature"]["algorithm"] == "Ed25519"
    assert copies.check_copy(doc, TEST_KEY) == []
    path = write_json(tmp_path / f"{number}.json", doc)
    info, problems = copies.check_signed(path, [ANCHOR.public_key("a1")])
    assert problems == [] and info["record"] == number and info["key_id"] == "a1"
    assert info["chain_head"]["hash"] == doc["integrity"]["chain_head_hash"]

    _, foreign = copies.check_signed(path, [OTHER.public_key("a1")])
    assert foreign and "does not verify" in foreign[0]
    edited = json.loads(path.read_text())
    edited["fields"][0]["value"] = "changed"
    _, problems = copies.check_signed(write_json(tmp_path / "edited.json", edited),
                                      [ANCHOR.public_key("a1")])
    assert problems and "was changed after it was signed" in problems[0]

    later = copies.export(engine, newer, "json", "inspection", anchor=ANCHOR,
                          checkpoint_dir=tmp_path / "cps")
    assert later["integrity"]["checkpoint"] is None  # newer than the newest checkpoint


def test_a_pdf_copy_is_signed_over_its_bytes(engine, people, tmp_path):
    """R-SEC-17, R-SEC-16, R-P11-10b-1: the PDF's sidecar signature covers its exact bytes; one
    byte changed fails (signature and sha256); a missing sidecar is one clear error."""
    number = capa(engine, people)
    checkpoints.take(engine, ANCHOR, tmp_path / "cps")
    doc = copies.export(engine, number, "pdf", "inspection", anchor=ANCHOR,
                        checkpoint_dir=tmp_path / "cps")
    pdf = copies.record_pdf(doc)
    path = tmp_path / f"{number}.pdf"
    path.write_bytes(pdf)
    (tmp_path / f"{number}.pdf.sig").write_text(json.dumps(copies.sign_pdf(pdf, doc, ANCHOR,
                                                                           path.name)))
    info, problems = copies.check_signed(path, [ANCHOR.public_key("a1")])
    assert problems == [] and info["record"] == number and info["checkpoint"]["record_seq"] > 0
    path.write_bytes(pdf[:-10] + b"X" + pdf[-9:])
    _, problems = copies.check_signed(path, [ANCHOR.public_key("a1")])
    assert len(problems) == 2 and "sha256 differs" in problems[1]
    (tmp_path / f"{number}.pdf.sig").unlink()
    with pytest.raises(CheckpointError, match=r"signature .*\.pdf\.sig is missing"):
        copies.check_signed(path, [ANCHOR.public_key("a1")])


@pytest.mark.parametrize("block", ["", "cryptography"])
def test_the_standalone_script_verifies_signed_copies(engine, people, tmp_path, block):
    """R-SEC-16, R-SEC-17: the script that imports nothing of ours verifies the JSON and the
    PDF copy with the PEM public key (with cryptography, or with openssl) and refuses an
    edited one."""
    number = capa(engine, people)
    checkpoints.take(engine, ANCHOR, tmp_path / "cps")
    doc = copies.export(engine, number, "json", "inspection", anchor=ANCHOR,
                        checkpoint_dir=tmp_path / "cps")
    pem = tmp_path / "qms-anchor-a1.pem"
    pem.write_text(ANCHOR.public_pem("a1"))
    js = write_json(tmp_path / f"{number}.json", doc)
    pdf = copies.record_pdf(doc)
    pdf_path = tmp_path / f"{number}.pdf"
    pdf_path.write_bytes(pdf)
    (tmp_path / f"{number}.pdf.sig").write_text(json.dumps(copies.sign_pdf(pdf, doc, ANCHOR,
                                                                           pdf_path.name)))
    for f in (js, pdf_path):
        ok = run_script("copy", str(f), "--public-key", str(pem), block=block, cwd=tmp_path)
        assert ok.returncode == 0, ok.stderr
        assert ok.stdout.startswith(f"VERIFIED: {f}\n") and number in ok.stdout
        assert "covered by checkpoint checkpoint-" in ok.stdout
    js.write_text(js.read_text().replace('"Label mix-up"', '"Label mix-up!"'))
    bad = run_script("copy", str(js), "--public-key", str(pem), block=block, cwd=tmp_path)
    assert bad.returncode == 1 and "does not verify" in bad.stderr


def test_qms_export_and_verify_copy(committed_engine, committed_url, tmp_path):
    """R-SEC-17, R-SEC-16, R-P11-10b-2: ``qms export`` writes signed JSON and PDF copies
    (PDF + .sig); ``qms verify-copy FILE --public-key KEY`` says OK with the chain head and
    checkpoint, FAILED (exit 1) for an edited copy, one clear line for a missing file."""
    eng = committed_engine
    with eng.unit() as s:
        actor = identity.system_user(s)
        for name, roles in (("emma", ["employee"]), ("quinn", ["qa", "employee"]),
                            ("olga", ["capa_owner"])):
            u = identity.create_user(s, name, name.title(), actor=actor, reason="test")
            enablement.enable_for_system(s, u, reason="test")  # may sign (as conftest's people)
            for r in roles:
                identity.grant_role(s, u, r, actor=actor, reason="test")
    number = capa(eng, {"emp": "emma", "qa": "quinn", "owner": "olga"})
    eng.sessions.kw["bind"].dispose()
    # the export acts as the system account in a maintenance window (R-SEC-35: else --as)
    env = {"QMS_DATABASE_URL": committed_url, "QMS_SIGNATURE_KEY": TEST_KEY.hex(),
           "QMS_INSTANCE_DIR": str(tmp_path), "QMS_CHECKPOINT_DIR": str(tmp_path / "cps"),
           "QMS_CLI_MAINTENANCE": "1"}
    anchor_key_file(tmp_path / "anchor.key")
    runner = CliRunner(env=env)
    assert runner.invoke(main, ["audit", "checkpoint"]).exit_code == 0
    js, pdf = tmp_path / "copy.json", tmp_path / "copy.pdf"
    r = runner.invoke(main, ["export", number, "-o", str(js), "--maintenance"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(main, ["export", number, "--format", "pdf", "-o", str(pdf), "--maintenance"])
    assert r.exit_code == 0 and f"its signature to {pdf}.sig" in r.output
    assert runner.invoke(main, ["keys", "export-public", "-o", str(tmp_path / "pub")]
                         ).exit_code == 0
    pem = str(tmp_path / "pub" / "qms-anchor-a1.pem")
    offline = CliRunner(env={"QMS_DATABASE_URL": "", "QMS_SIGNATURE_KEY": "",
                             "QMS_INSTANCE_DIR": str(tmp_path / "elsewhere"),
                             "QMS_CLI_MAINTENANCE": ""})
    for f in (js, pdf):
        ok = offline.invoke(main, ["verify-copy", str(f), "--public-key", pem])
        assert ok.exit_code == 0, ok.output
        assert ok.output.startswith(f"OK: {f} is a true copy of {number} signed by anchor key a1")
        assert "covered by checkpoint checkpoint-" in ok.output
    js.write_text(js.read_text().replace('"Label mix-up"', '"Label mix-up (edited)"'))
    bad = offline.invoke(main, ["verify-copy", str(js), "--public-key", pem])
    assert bad.exit_code == 1 and "FAILED" in bad.output and "does not verify" in bad.output
    missing = offline.invoke(main, ["verify-copy", str(tmp_path / "nope.json"), "--public-key",
                                    pem])
    assert missing.exit_code == 1 and missing.output.startswith("error: cannot read")
    assert "Traceback" not in missing.output
