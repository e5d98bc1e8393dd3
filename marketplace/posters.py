"""Share posters: a card with a title, a line or two of text, a price and a QR code, rendered on
the server (segno for the QR code), as a PNG when a CJK font is on the machine, else as an SVG
the browser renders with its own fonts.

Shared by every app that hands out a link to share (the agents' storefront and product posters);
callers pass the text already translated and the price already formatted, so this module knows
nothing of shops or prices. The layout is fixed (``WIDTH`` x ``HEIGHT``, the QR code in
``QR_BOX``) so the two formats look alike and tests can read the code back from the image.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from functools import lru_cache
from xml.sax.saxutils import escape

import segno
from django.conf import settings

WIDTH, HEIGHT = 720, 1080
QR_BOX = (150, 520, 420)  # left, top, side (pixels) of the QR code and its quiet zone
QR_BORDER = 2  # modules of quiet zone inside QR_BOX (the card around it is white too)
GREEN = "#198754"
DARK = "#212529"
GREY = "#6c757d"
PRICE = "#dc3545"

# Where Noto Sans CJK lives on Debian/Ubuntu (fonts-noto-cjk) and on the Docker image;
# ``POSTER_FONTS`` in settings replaces the list.
DEFAULT_FONTS = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Bold.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
)
SVG_FONTS = "'Noto Sans CJK SC','Noto Sans SC','PingFang SC','Microsoft YaHei','Hiragino Sans GB',sans-serif"


@dataclass(frozen=True)
class Poster:
    """What a poster says. ``price`` is already formatted ("¥12.50"), empty for none."""

    url: str  # what the QR code opens
    heading: str  # the shop's name, on the green band
    title: str  # the product's name (or the shop's slogan)
    price: str = ""
    caption: str = ""  # under the code: "Scan to buy"
    footer: str = ""  # small print at the bottom (the address, without the scheme)


def poster_qr(url: str) -> segno.QRCode:
    """The QR code a poster carries for ``url`` (error correction M, at least: quartile when it
    fits, for a printed poster that gets folded)."""
    return segno.make_qr(url, error="m", boost_error=True)


def qr_matrix(url: str) -> list[list[bool]]:
    """The dark modules of ``poster_qr(url)``, without the quiet zone (rows of booleans)."""
    return [[bool(m) for m in row] for row in poster_qr(url).matrix]


@lru_cache(maxsize=1)
def font_path() -> str | None:
    """The first CJK font found, or None (the poster is then an SVG)."""
    for path in getattr(settings, "POSTER_FONTS", None) or DEFAULT_FONTS:
        if path and os.path.isfile(path):
            return path
    return None


def _wrap(text: str, width: int, measure) -> list[str]:
    """``text`` in lines no wider than ``width`` (by ``measure``), breaking anywhere (CJK has no
    spaces); at most two lines, the second ending with an ellipsis when cut."""
    lines: list[str] = []
    line = ""
    for ch in text:
        if measure(line + ch) > width and line:
            lines.append(line)
            line = ch
            if len(lines) == 2:
                break
        else:
            line += ch
    else:
        if line:
            lines.append(line)
        return lines[:2]
    last = lines[1]
    while last and measure(last + "…") > width:
        last = last[:-1]
    return [lines[0], last + "…"]


def poster_png(poster: Poster) -> bytes | None:
    """The poster as a PNG, or None when no CJK font is on this machine."""
    path = font_path()
    if path is None:
        return None
    from PIL import Image, ImageDraw, ImageFont

    def font(size: int):
        return ImageFont.truetype(path, size)

    img = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(img)
    draw.rectangle((0, 0, WIDTH, 150), fill=GREEN)
    heading_font = font(44)
    (heading,) = _wrap(poster.heading, WIDTH - 80, lambda s: draw.textlength(s, font=heading_font))[:1] or [""]
    draw.text((WIDTH / 2, 75), heading, font=heading_font, fill="white", anchor="mm")
    title_font = font(40)
    y = 215
    for line in _wrap(poster.title, WIDTH - 100, lambda s: draw.textlength(s, font=title_font)):
        draw.text((WIDTH / 2, y), line, font=title_font, fill=DARK, anchor="mm")
        y += 56
    if poster.price:
        draw.text((WIDTH / 2, 420), poster.price, font=font(72), fill=PRICE, anchor="mm")
    left, top, side = QR_BOX
    qr = poster_qr(poster.url)
    out = io.BytesIO()
    n = qr.symbol_size(border=QR_BORDER)[0]
    qr.save(out, kind="png", scale=max(1, side // n), border=QR_BORDER)
    code = Image.open(io.BytesIO(out.getvalue())).convert("RGB").resize((side, side), Image.Resampling.NEAREST)
    img.paste(code, (left, top))
    if poster.caption:
        draw.text((WIDTH / 2, top + side + 45), poster.caption, font=font(34), fill=DARK, anchor="mm")
    if poster.footer:
        small = font(22)
        (footer,) = _wrap(poster.footer, WIDTH - 60, lambda s: draw.textlength(s, font=small))[:1] or [""]
        draw.text((WIDTH / 2, HEIGHT - 40), footer, font=small, fill=GREY, anchor="mm")
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def _svg_lines(text: str, per_line: int) -> list[str]:
    """Without font metrics: CJK counts 2, others 1, against ``per_line`` units."""
    return _wrap(text, per_line, lambda s: sum(2 if ord(c) > 0x2E7F else 1 for c in s))


def poster_svg(poster: Poster) -> bytes:
    """The poster as a standalone SVG (the viewer's fonts render the text)."""
    left, top, side = QR_BOX
    qr = poster_qr(poster.url)
    rows = qr.matrix
    n = len(rows) + 2 * QR_BORDER
    module = side / n
    path = "".join(
        f"M{x + QR_BORDER},{y + QR_BORDER}h1v1h-1z" for y, row in enumerate(rows) for x, dark in enumerate(row) if dark
    )

    def text(x: float, y: float, value: str, size: int, fill: str, weight: str = "normal") -> str:
        return (
            f'<text x="{x:g}" y="{y:g}" font-size="{size}" fill="{fill}" font-weight="{weight}" '
            f'text-anchor="middle" dominant-baseline="central">{escape(value)}</text>'
        )

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="{SVG_FONTS}">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>',
        f'<rect width="{WIDTH}" height="150" fill="{GREEN}"/>',
        text(WIDTH / 2, 75, (_svg_lines(poster.heading, 28) or [""])[0], 44, "#ffffff", "bold"),
    ]
    y = 215
    for line in _svg_lines(poster.title, 30):
        parts.append(text(WIDTH / 2, y, line, 40, DARK, "bold"))
        y += 56
    if poster.price:
        parts.append(text(WIDTH / 2, 420, poster.price, 72, PRICE, "bold"))
    parts.append(
        f'<g transform="translate({left},{top}) scale({module:.6f})">'
        f'<rect width="{n}" height="{n}" fill="#ffffff"/>'
        f'<path d="{path}" fill="#000000" shape-rendering="crispEdges"/></g>'
    )
    if poster.caption:
        parts.append(text(WIDTH / 2, top + side + 45, poster.caption, 34, DARK))
    if poster.footer:
        parts.append(text(WIDTH / 2, HEIGHT - 40, (_svg_lines(poster.footer, 56) or [""])[0], 22, GREY))
    parts.append("</svg>")
    return "".join(parts).encode("utf-8")


def poster_render(poster: Poster, *, kind: str = "png") -> tuple[bytes, str]:
    """The poster as ``kind`` ("png" or "svg"): bytes and content type. A PNG asked for on a
    machine without a CJK font comes as an SVG (the caller names the file by the type)."""
    if kind == "png":
        data = poster_png(poster)
        if data is not None:
            return data, "image/png"
    return poster_svg(poster), "image/svg+xml"
