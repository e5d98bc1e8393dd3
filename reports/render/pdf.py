"""The PDF: A4 (landscape when a table is too wide for portrait), a cover with the platform's
company, the report, its period and when it was generated; one table per section with its header
repeated on every page it spans; each page's footer names the report and says "page n of N".
Chinese is drawn with reportlab's built-in CID font STSong-Light (no font file to ship; PDF
readers supply the glyphs, poppler from poppler-data). It has no glyph for "·" or "–": the text
here avoids them."""

from io import BytesIO
from xml.sax.saxutils import escape

from django.utils import timezone
from django.utils.translation import gettext as _
from reportlab.lib import colors
from reportlab.lib.enums import TA_CENTER, TA_LEFT, TA_RIGHT
from reportlab.lib.pagesizes import A4, landscape
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import (
    CondPageBreak,
    KeepTogether,
    PageBreak,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    TableStyle,
)
from reportlab.platypus import Table as PdfTable

from ..sections.table import Table, Unit
from . import Document, cell_text

FONT = "STSong-Light"
pdfmetrics.registerFont(UnicodeCIDFont(FONT))

INK = colors.HexColor("#1f2933")
MUTED = colors.HexColor("#616e7c")
HEADER_BG = colors.HexColor("#243b53")
RULE = colors.HexColor("#bcccdc")
ZEBRA = colors.HexColor("#f0f4f8")
TOTAL_BG = colors.HexColor("#d9e2ec")
MARGIN = 18 * mm
WIDE = 9  # a table of more columns than this turns the document's pages to landscape

_base = ParagraphStyle("base", fontName=FONT, fontSize=9, leading=12.5, textColor=INK, wordWrap="CJK")
STYLES = {
    "company": ParagraphStyle("company", _base, fontSize=16, leading=22, alignment=TA_CENTER),
    "title": ParagraphStyle("title", _base, fontSize=24, leading=32, alignment=TA_CENTER, spaceBefore=8),
    "meta": ParagraphStyle("meta", _base, fontSize=11, leading=18, alignment=TA_CENTER, textColor=MUTED),
    "contents": ParagraphStyle("contents", _base, fontSize=11, leading=18, leftIndent=40 * mm),
    "contents_h": ParagraphStyle("contents_h", _base, fontSize=12, leading=20, leftIndent=40 * mm, spaceAfter=4),
    "h": ParagraphStyle("h", _base, fontSize=13, leading=18, spaceBefore=6, spaceAfter=6),
    "note": ParagraphStyle("note", _base, fontSize=8, leading=11, textColor=MUTED, spaceBefore=4),
    "cell": ParagraphStyle("cell", _base, fontSize=8.5, leading=11, alignment=TA_LEFT),
    "num": ParagraphStyle("num", _base, fontSize=8.5, leading=11, alignment=TA_RIGHT),
    "head": ParagraphStyle("head", _base, fontSize=8.5, leading=11, textColor=colors.white),
    "head_num": ParagraphStyle("head_num", _base, fontSize=8.5, leading=11, textColor=colors.white, alignment=TA_RIGHT),
}
# A wide table (more than WIDE columns, on a landscape page) is set a size smaller.
for _name in ("cell", "num", "head", "head_num"):
    STYLES[f"{_name}_small"] = ParagraphStyle(f"{_name}_small", STYLES[_name], fontSize=7.5, leading=9.5)
NUMERIC = {Unit.COUNT, Unit.MONEY, Unit.SHARE, Unit.HOURS}


def _p(text: str, style: str) -> Paragraph:
    return Paragraph(escape(text), STYLES[style])


def _numbered_canvas(doc: Document):
    """A canvas that holds each page until the end, then stamps "page n of N" on them all."""
    footer_left = "  |  ".join(part for part in (doc.company, doc.title, doc.period) if part)

    class NumberedCanvas(Canvas):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._pages: list[dict] = []

        def showPage(self):
            self._pages.append(dict(self.__dict__))
            self._startPage()

        def save(self):
            total = len(self._pages)
            for state in self._pages:
                self.__dict__.update(state)
                self._footer(total)
                super().showPage()
            super().save()

        def _footer(self, total: int) -> None:
            width = self._pagesize[0]
            self.setStrokeColor(RULE)
            self.setLineWidth(0.5)
            self.line(MARGIN, 12 * mm, width - MARGIN, 12 * mm)
            self.setFont(FONT, 8)
            self.setFillColor(MUTED)
            self.drawString(MARGIN, 8 * mm, footer_left)
            self.drawRightString(
                width - MARGIN, 8 * mm, _("Page %(n)d of %(total)d") % {"n": self._pageNumber, "total": total}
            )

    return NumberedCanvas


def _cover(doc: Document, wide: bool) -> list:
    generated = timezone.localtime(doc.generated_at).strftime("%Y-%m-%d %H:%M")
    story: list = [Spacer(1, (25 if wide else 55) * mm)]
    if doc.company:
        story.append(_p(doc.company, "company"))
    if doc.credit_code:
        story.append(_p(_("Unified social credit code: %(code)s") % {"code": doc.credit_code}, "meta"))
    story += [
        Spacer(1, 10 * mm),
        _p(doc.title, "title"),
        Spacer(1, 8 * mm),
        _p(_("Period: %(period)s") % {"period": doc.period}, "meta"),
        _p(_("Generated: %(time)s (Beijing time)") % {"time": generated}, "meta"),
        _p(_("Generated by: %(who)s") % {"who": doc.generated_by}, "meta"),
        Spacer(1, (12 if wide else 22) * mm),
        _p(_("Contents"), "contents_h"),
    ]
    story += [_p(f"{i}.  {t.title}", "contents") for i, t in enumerate(doc.tables, 1)]
    story.append(PageBreak())
    return story


def _table(table: Table, width: float) -> PdfTable:
    weights = [c.width for c in table.columns]
    widths = [width * w / sum(weights) for w in weights]
    size = "_small" if len(table.columns) > WIDE else ""

    def cells(values: list) -> list[Paragraph]:
        return [
            _p(cell_text(v, c.unit), ("num" if c.unit in NUMERIC else "cell") + size)
            for v, c in zip(values, table.columns, strict=True)
        ]

    header = [_p(c.label, ("head_num" if c.unit in NUMERIC else "head") + size) for c in table.columns]
    body = [cells(row) for row in table.rows]
    if not body:
        body = [[_p(_("Nothing in this period."), "cell")] + [_p("", "cell")] * (len(table.columns) - 1)]
    data = [header, *body]
    style = [
        ("BACKGROUND", (0, 0), (-1, 0), HEADER_BG),
        ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
        ("LINEBELOW", (0, 0), (-1, -1), 0.4, RULE),
        ("BOX", (0, 0), (-1, -1), 0.6, RULE),
        ("TOPPADDING", (0, 0), (-1, -1), 4),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 4),
        ("LEFTPADDING", (0, 0), (-1, -1), 5),
        ("RIGHTPADDING", (0, 0), (-1, -1), 5),
    ]
    if not table.rows:
        style.append(("SPAN", (0, 1), (-1, 1)))
    for i in range(2, len(data), 2):
        style.append(("BACKGROUND", (0, i), (-1, i), ZEBRA))
    if table.totals is not None and table.rows:
        data.append(cells(table.totals))
        style += [("BACKGROUND", (0, -1), (-1, -1), TOTAL_BG), ("LINEABOVE", (0, -1), (-1, -1), 1, HEADER_BG)]
    return PdfTable(data, colWidths=widths, repeatRows=1, style=TableStyle(style), hAlign="LEFT")


def render(doc: Document) -> bytes:
    out = BytesIO()
    wide = any(len(t.columns) > WIDE for t in doc.tables)
    pdf = SimpleDocTemplate(
        out,
        pagesize=landscape(A4) if wide else A4,
        leftMargin=MARGIN,
        rightMargin=MARGIN,
        topMargin=MARGIN,
        bottomMargin=20 * mm,
        title=f"{doc.title} {doc.period}",
        author=doc.company,
        subject=doc.title,
        creator="marketplace reports",
    )
    story = _cover(doc, wide)
    for i, table in enumerate(doc.tables, 1):
        story.append(CondPageBreak(45 * mm))  # a heading never sits alone at a page's foot
        parts = [_p(f"{i}. {table.title}", "h"), _table(table, pdf.width)]
        if table.note:
            parts.append(_p(table.note, "note"))
        story.append(KeepTogether(parts) if len(table.rows) < 25 else parts[0])
        if len(table.rows) >= 25:
            story += parts[1:]
        story.append(Spacer(1, 8 * mm))
    pdf.build(story, canvasmaker=_numbered_canvas(doc))
    return out.getvalue()
