"""Unicode fonts embedded in the PDFs the system writes (true copies, the validation report).

ReportLab's standard fonts cover Windows-1252 only and are not embedded: "Łódź" or "測試"
printed as black boxes. These TrueType fonts come from packages on PyPI (docs/copies.md
lists them with their licences) and are embedded, subset, in every PDF:

- DejaVu Sans, Bold and Mono (shipped by matplotlib; Bitstream Vera / DejaVu licence, free
  to embed): Latin, Greek, Cyrillic and many symbols;
- IPAexGothic (shipped by matplotlib-fontja; IPA Font License v1.0, OSI approved):
  Japanese kana and the Han characters of JIS X 0213 (Chinese and Japanese text).

A character the first font lacks is drawn with the first one that has it
(:func:`markup`): text keeps every character, and a PDF reader's text extraction gives back
exactly what was written. The font files are found without importing their packages
(importing matplotlib is slow and not needed).
"""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

#: font name -> (package, path inside the package)
FILES = {
    "DejaVuSans": ("matplotlib", "mpl-data/fonts/ttf/DejaVuSans.ttf"),
    "DejaVuSans-Bold": ("matplotlib", "mpl-data/fonts/ttf/DejaVuSans-Bold.ttf"),
    "DejaVuSansMono": ("matplotlib", "mpl-data/fonts/ttf/DejaVuSansMono.ttf"),
    "IPAexGothic": ("matplotlib_fontja", "fonts/ipaexg.ttf"),
}
REGULAR, BOLD, MONO = "DejaVuSans", "DejaVuSans-Bold", "DejaVuSansMono"
#: tried in this order for a character the text's own font lacks
FALLBACKS = ("DejaVuSans", "IPAexGothic")


def font_path(name: str) -> Path:
    """The file of font ``name`` (FileNotFoundError naming the package when it is missing)."""
    package, inner = FILES[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the font {name} comes with the Python package {package}, "
                                "which is not installed (pip install qms-workflow installs it)")
    path = Path(next(iter(spec.submodule_search_locations))) / inner
    if not path.is_file():
        raise FileNotFoundError(f"the font {name} is missing from the package {package}: {path}")
    return path


@cache
def register() -> None:
    """Register the fonts with ReportLab once per process (DejaVuSans as a family, so
    ``<b>`` in a paragraph picks the bold face)."""
    from reportlab.lib.fonts import addMapping
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont

    for name in FILES:
        pdfmetrics.registerFont(TTFont(name, str(font_path(name))))
    for bold, italic, face in ((0, 0, REGULAR), (1, 0, BOLD), (0, 1, REGULAR), (1, 1, BOLD)):
        addMapping(REGULAR, bold, italic, face)
    for bold in (0, 1):
        for italic in (0, 1):
            addMapping("IPAexGothic", bold, italic, "IPAexGothic")
            addMapping(MONO, bold, italic, MONO)


@cache
def _charmap(name: str) -> frozenset[int]:
    from reportlab.pdfbase import pdfmetrics

    register()
    return frozenset(pdfmetrics.getFont(name).face.charToGlyph)


def font_for(ch: str, base: str = REGULAR) -> str:
    """The font that draws ``ch``: ``base`` when it has the character, else the first
    fallback that does (``base`` when none has it)."""
    cp = ord(ch)
    if cp in _charmap(base) or ch in "\n\t":
        return base
    return next((f for f in FALLBACKS if cp in _charmap(f)), base)


def runs(text: str, base: str = REGULAR) -> list[tuple[str, str]]:
    """``text`` split into (font, run) pieces, each drawn with one font."""
    out: list[tuple[str, str]] = []
    for ch in text:
        f = font_for(ch, base)
        if out and out[-1][0] == f:
            out[-1] = (f, out[-1][1] + ch)
        else:
            out.append((f, ch))
    return out


def needs_cjk_wrap(text: str) -> bool:
    """Whether ``text`` holds characters only the CJK font draws (ReportLab then wraps it
    between any two characters, as CJK text is written without spaces)."""
    return any(font_for(ch) == "IPAexGothic" for ch in text)


def markup(text: Any, base: str = REGULAR) -> str:
    """``text`` as Paragraph markup: escaped, line breaks kept, and every run of characters
    ``base`` lacks wrapped in ``<font name=...>`` of a font that has them."""
    s = "" if text is None else str(text)
    register()
    parts = []
    for f, run in runs(s, base):
        body = escape(run).replace("\n", "<br/>")
        parts.append(body if f == base else f'<font name="{f}">{body}</font>')
    return "".join(parts)


def draw_string(canvas: Any, x: float, y: float, text: str, size: float,
                base: str = REGULAR, *, right: bool = False) -> None:
    """``canvas.drawString`` with the fallback fonts (a header or footer line)."""
    from reportlab.pdfbase import pdfmetrics

    register()
    pieces = runs(text, base)
    if right:
        x -= sum(pdfmetrics.stringWidth(r, f, size) for f, r in pieces)
    for f, r in pieces:
        canvas.setFont(f, size)
        canvas.drawString(x, y, r)
        x += pdfmetrics.stringWidth(r, f, size)


def styles() -> dict[str, Any]:
    """ReportLab's sample paragraph styles set in the embedded fonts (body text, headings
    in DejaVu Sans Bold; CJK word wrap so long runs without spaces still break)."""
    from reportlab.lib.styles import getSampleStyleSheet

    register()
    sheet = getSampleStyleSheet()
    out: dict[str, Any] = {}
    for name in ("Title", "Heading1", "Heading2", "Heading3", "BodyText", "Normal"):
        st = sheet[name].clone(name)
        st.fontName = BOLD if name.startswith(("Title", "Heading")) else REGULAR
        out[name] = st
    return out


def paragraph_style(name: str, parent: Any, **kw: Any) -> Any:
    """A ParagraphStyle with the embedded font (``fontName`` in ``kw`` overrides)."""
    from reportlab.lib.styles import ParagraphStyle

    register()
    return ParagraphStyle(name, parent=parent, **{"fontName": REGULAR, **kw})
