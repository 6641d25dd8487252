"""The PDF true copy (workflow/queries/copy_pdf.py) and the embedded Unicode fonts
(workflow/pdffonts.py): what a reader gets back from the PDF is exactly what was written."""

from __future__ import annotations

import io
import re

import pypdf

from workflow import pdffonts
from workflow.queries.copy_pdf import record_pdf

POLISH, GREEK, RUSSIAN, JAPANESE = "Łódź", "Δοκιμή", "Проверка", "測試"


def _doc(**over: object) -> dict:
    """A JSON true copy as workflow/queries/copies.py builds it (the fields the PDF reads)."""
    audit = [{"seq": 1, "at": "2026-03-01T09:00:00+00:00", "actor_name": "Zofia Łukasiewicz",
              "action": "create", "transition": None,
              "changes": {"title": [None, f"Leak in {POLISH}"], "site": [None, "lodz"]},
              "reason": None, "hash": "a" * 64},
             {"seq": 2, "at": "2026-03-02T10:00:00+00:00", "actor_name": "Γιώργος Παπαδόπουλος",
              "action": "update", "transition": "triage",
              "changes": {"site": ["lodz", "tokyo"]}, "reason": f"{JAPANESE} site",
              "hash": "b" * 64},
             {"seq": 3, "at": "2026-03-02T10:00:00+00:00", "actor_name": "Γιώργος Παπαδόπουλος",
              "action": "sign", "transition": "triage",
              "changes": {"signature": {"id": 7, "meaning": "Approved", "role": "qa"}},
              "reason": None, "hash": "c" * 64}]
    doc = {
        "format": "qms-true-copy/1", "exported_at": "2026-03-03T08:00:00+00:00",
        "record": {"number": "DEV-2026-0001", "title": f"Leak in {POLISH}",
                   "workflow": "deviation", "workflow_title": "Deviation",
                   "definition_version": 1, "state": "closed", "state_label": "Closed",
                   "outcome": "done", "initiator": {"username": "zofia", "name": "Zofia Łukasiewicz"},
                   "created_at": "2026-03-01T09:00:00+00:00", "closed_at": None,
                   "due_original": None, "due_current": None, "version": 3},
        "fields": [
            {"name": "title", "label": "Title", "type": "string", "value": f"Leak in {POLISH}",
             "display": f"Leak in {POLISH}", "changed_after_first_entry": []},
            {"name": "description", "label": "Description", "type": "text",
             "value": f"{GREEK} {RUSSIAN} {JAPANESE}", "display": f"{GREEK} {RUSSIAN} {JAPANESE}",
             "changed_after_first_entry": []},
            {"name": "site", "label": "Site", "type": "choice", "value": "tokyo_plant",
             "display": "Tokyo plant", "changed_after_first_entry": [2]},
            {"name": "owner", "label": "Owner", "type": "user", "value": "olga",
             "display": "Olga Owner (olga)", "changed_after_first_entry": []},
            {"name": "actions", "label": "Actions", "type": "list",
             "value": [{"what": "fix", "who": "olga"}],
             "display": {"columns": ["What", "Responsible"],
                         "rows": [["Fix the seal", "Olga Owner (olga)"]]},
             "changed_after_first_entry": []},
        ],
        "labels": {"steps": {"triage": "Triage"}, "roles": {"qa": "Quality assurance"},
                   "states": {}, "fields": {"site": "Site", "title": "Title"}},
        "state_history": [{"at": "2026-03-01T09:00:00+00:00", "from_state": None,
                           "from_label": None, "to_state": "open", "to_label": "Open",
                           "transition": None, "actor": "Zofia Łukasiewicz", "reason": None}],
        "links": [],
        "signatures": [{"id": 7, "printed_name": "Γιώργος Παπαδόπουλος", "username": "giorgos",
                        "role": "qa", "signed_at_utc": "2026-03-02T10:00:00+00:00",
                        "meaning": "Approved", "transition": "triage", "method": "password",
                        "record_version": 2, "content_hash": "d" * 64, "mac": "m",
                        "status": "valid"}],
        "audit_trail": audit,
        "integrity": {"chain": "r:1", "chain_head_seq": 3, "chain_head_hash": "c" * 64,
                      "seal": "s", "sealed": {}, "definition_hash": "e" * 64, "note": "n"},
    }
    doc.update(over)
    return doc


def _text(pdf: bytes) -> list[str]:
    return [page.extract_text() for page in pypdf.PdfReader(io.BytesIO(pdf)).pages]


def test_pdf_copy_keeps_polish_greek_cyrillic_and_japanese_text_exactly():
    """R-P11-10b-1: the PDF copy's extracted text holds "Łódź", Greek, Cyrillic and "測試"
    exactly as written (embedded Unicode fonts, no ■ in place of a letter)."""
    text = " ".join(" ".join(_text(record_pdf(_doc()))).split())  # cells wrap at spaces
    for needle in (POLISH, GREEK, RUSSIAN, JAPANESE, "Zofia Łukasiewicz",
                   "Γιώργος Παπαδόπουλος", f"{JAPANESE} site"):
        assert needle in text, needle
    assert "■" not in text


def test_pdf_copy_embeds_its_fonts():
    """R-P11-10b-1: every font the PDF uses is embedded (a subset, with a file), none is a
    standard font the reader must supply."""
    reader = pypdf.PdfReader(io.BytesIO(record_pdf(_doc())))
    names = set()
    for page in reader.pages:
        for font in page["/Resources"]["/Font"].values():
            font = font.get_object()
            names.add(str(font["/BaseFont"]))
            desc = font.get("/FontDescriptor")
            if desc is None and "/DescendantFonts" in font:
                desc = font["/DescendantFonts"][0].get_object()["/FontDescriptor"]
            assert desc is not None, font["/BaseFont"]
            desc = desc.get_object()
            assert any(k in desc for k in ("/FontFile2", "/FontFile3", "/FontFile")), font
    assert any("DejaVuSans" in n for n in names) and any("IPAexGothic" in n for n in names)
    assert not any(n.lstrip("/") in ("Helvetica", "Times-Roman", "Courier") for n in names)


def test_pdf_copy_shows_labels_names_tables_and_page_header_footer():
    """R-P11-10b-1 R-P11-50-1: choice labels and printed names instead of keys and
    usernames, a list as a table, the signature manifestation (printed name, UTC time,
    meaning), and on every page the record number, "page x of y" and the copy's time."""
    pages = _text(record_pdf(_doc()))
    text = " ".join(" ".join(pages).split())
    assert "Tokyo plant" in text and "tokyo_plant" not in text
    assert "Olga Owner (olga)" in text and "Fix the seal" in text and "Responsible" in text
    assert "Approved" in text and "2026-03-02 10:00:00" in text
    assert "Quality assurance" in text and "Triage" in text
    for i, page in enumerate(pages, start=1):
        assert "DEV-2026-0001" in page
        assert f"page {i} of {len(pages)}" in page
        assert "copy made 2026-03-03 08:00:00 UTC" in page


def test_long_pdf_copy_numbers_every_page():
    """R-P11-10b-1: a copy with a long trail runs over several pages, each "page x of y"."""
    doc = _doc()
    base = doc["audit_trail"][0]
    doc["audit_trail"] = [{**base, "seq": i, "reason": f"{POLISH} {i}"} for i in range(1, 120)]
    pages = _text(record_pdf(doc))
    assert len(pages) > 2
    assert [re.search(r"page (\d+) of (\d+)", p).groups() for p in pages] == [
        (str(i), str(len(pages))) for i in range(1, len(pages) + 1)]


def test_pdf_copy_flags_fields_changed_after_first_entry():
    """R-A11-8-1: a field changed after its first entry is flagged with a pointer to the
    audit entries that changed it; a field entered once is not."""
    text = " ".join(" ".join(_text(record_pdf(_doc()))).split())
    assert "changed after first entry: audit #2" in text
    assert text.count("changed after first entry: audit") == 1


def test_fallback_font_draws_what_the_latin_font_lacks():
    """R-P11-10b-1: Latin, Greek and Cyrillic come from DejaVu Sans; the CJK characters it
    lacks from IPAexGothic; markup escapes what it wraps."""
    assert pdffonts.runs(f"{POLISH} {GREEK} {RUSSIAN}") == [("DejaVuSans", f"{POLISH} {GREEK} "
                                                             f"{RUSSIAN}")]
    assert pdffonts.runs(f"a{JAPANESE}b") == [("DejaVuSans", "a"), ("IPAexGothic", JAPANESE),
                                              ("DejaVuSans", "b")]
    assert pdffonts.markup("<b>&測") == '&lt;b&gt;&amp;<font name="IPAexGothic">測</font>'


def test_trail_changes_read_as_labels_and_due_dates_as_times():
    """R-P11-10b-1: in the audit trail a choice reads as its label, a file as its name and
    hash; due dates read as times, not ISO strings with microseconds."""
    doc = _doc()
    doc["labels"]["choice_fields"] = ["site"]
    doc["record"]["due_current"] = "2027-03-01T09:23:14.578521+00:00"
    doc["audit_trail"][1]["changes"] = {
        "site": ["lodz_plant", "tokyo_plant"],
        "title": [None, {"sha256": "ab" * 32, "name": "scan.pdf", "size": 9, "type": "x/y"}]}
    text = " ".join(" ".join(_text(record_pdf(doc))).split())
    assert "Site: Lodz plant → Tokyo plant" in text
    assert "file scan.pdf (sha256 abababababababab…)" in text
    assert "2027-03-01 09:23:14 UTC" in text and "578521" not in text
