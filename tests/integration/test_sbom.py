"""The product's SBOM (CycloneDX JSON) recorded on this QMS's inventory entry: an audited
step with a reason by the system owner or ISMS; bad files refused, nothing written."""

from __future__ import annotations

import json

import pytest

from tests.factories import sign
from tests.integration.test_cli import demo, demo_db  # noqa: F401 - fixtures
from tests.integration.test_system_inventory import ENTRY
from workflow import sbom
from workflow.errors import NotAuthorized, ReasonRequired, TransitionNotAvailable

DOC = {
    "bomFormat": "CycloneDX", "specVersion": "1.6",
    "serialNumber": "urn:uuid:30fa1021-842f-4c4a-8e0b-301bc73554cb",
    "metadata": {"tools": {"components": [{"type": "application", "group": "CycloneDX",
                                           "name": "cyclonedx-py", "version": "7.5.0"}]}},
    "components": [
        {"type": "library", "name": "SQLAlchemy", "version": "2.0.36",
         "purl": "pkg:pypi/sqlalchemy@2.0.36",
         "licenses": [{"license": {"acknowledgement": "declared", "id": "MIT"}}]},
        {"type": "library", "name": "Flask", "version": "3.1.0", "purl": "pkg:pypi/flask@3.1.0",
         "licenses": [{"expression": "BSD-3-Clause"}]},
    ],
}


@pytest.fixture
def staff(people, make_user):
    return {**people,
            "sam": make_user("sam", "system_owner", "employee", full_name="Sam System-Owner"),
            "ivy": make_user("ivy", "isms", "employee", full_name="Ivy ISMS")}


def qms_entry(engine, approve=True):
    r = engine.start("system_inventory", "sam", {"title": engine.system_name})
    engine.fire(r.number, "submit", "sam", {k: v for k, v in ENTRY.items() if k != "title"})
    if approve:
        engine.fire(r.number, "approve", "quinn", signature=sign("quinn"))
    return r.number


def test_components_recorded_on_this_qms_entry_with_a_reason(engine, staff):
    """R-VUL-10: the SBOM's components (name, version, purl, licence) are recorded on this
    QMS's inventory entry, found by QMS_SYSTEM_NAME, with the tool, serial number and file
    hash; the step needs a reason and the system owner or ISMS."""
    number = qms_entry(engine)
    raw = json.dumps(DOC).encode()
    with pytest.raises(ReasonRequired):
        sbom.import_sbom(engine, raw, actor="sam", reason="")
    with pytest.raises(NotAuthorized):
        sbom.import_sbom(engine, raw, actor="emma", reason="release 1.4")
    res, doc = sbom.import_sbom(engine, raw, actor="ivy", reason="release 1.4")
    assert res.number == number and res.state == "active"
    data = engine.get(number).data
    assert data["components"] == [
        {"name": "Flask", "version": "3.1.0", "purl": "pkg:pypi/flask@3.1.0",
         "license": "BSD-3-Clause"},
        {"name": "SQLAlchemy", "version": "2.0.36", "purl": "pkg:pypi/sqlalchemy@2.0.36",
         "license": "MIT"}]
    assert data["sbom_source"].startswith("CycloneDX 1.6 by cyclonedx-py 7.5.0, urn:uuid:30fa")
    assert doc.source == data["sbom_source"]


@pytest.mark.parametrize("raw, message", [
    (b"\xff\xfe", "not UTF-8 JSON"),
    (b"{", "not UTF-8 JSON"),
    (json.dumps({"bomFormat": "SPDX"}).encode(), "not a CycloneDX SBOM"),
    (json.dumps({**DOC, "components": []}).encode(), "lists no components"),
    (json.dumps({**DOC, "components": [{"version": "1"}]}).encode(), "component 1 has no name"),
    (json.dumps({**DOC, "components": [{"name": "x" * 201}]}).encode(), "longer than 200"),
])
def test_bad_files_are_refused_and_nothing_written(engine, staff, raw, message):
    """R-VUL-11: a file that is not a CycloneDX JSON SBOM with named components is refused
    with a clear message; the entry is unchanged."""
    number = qms_entry(engine)
    before = engine.get(number)
    with pytest.raises(sbom.SbomInvalid, match=message):
        sbom.import_sbom(engine, raw, actor="sam", reason="release 1.4")
    after = engine.get(number)
    assert (after.version, after.data) == (before.version, before.data)


def test_an_entry_not_yet_approved_takes_no_components(engine, staff):
    """R-VUL-11: the component list is recorded on an approved (active) entry only."""
    qms_entry(engine, approve=False)
    with pytest.raises(TransitionNotAvailable):
        sbom.import_sbom(engine, json.dumps(DOC).encode(), actor="sam", reason="r")


@pytest.mark.committed
def test_qms_sbom_import_as_a_named_person(demo, tmp_path):  # noqa: F811
    """R-VUL-10 R-VUL-11: `qms sbom import FILE --as ivy --reason ...` (her password) records
    the components on this QMS's demo inventory entry; a bad file is refused before any
    password is asked, and nothing is written."""
    from workflow.demo import DEMO_PASSWORD

    PW = DEMO_PASSWORD + "\n"
    good = tmp_path / "sbom.cdx.json"
    good.write_text(json.dumps(DOC))
    r = demo("sbom", "import", str(good), "--as", "ivy", "--reason", "release 1.4", input=PW)
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("SYS-2026-0001: 2 components recorded (CycloneDX 1.6 by ")
    bad = tmp_path / "bad.json"
    bad.write_text('{"bomFormat": "SPDX"}')
    r = demo("sbom", "import", str(bad), "--as", "ivy", "--reason", "x", input=PW)
    assert r.exit_code == 1 and "not a CycloneDX SBOM" in r.output
    assert "Password" not in r.stderr
