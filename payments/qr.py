"""QR codes of the cashier pages.

The buyer's browser draws them (static/js/qr.js with the vendored qrcode-generator, error
correction M, the best of the eight masks as segno picks it): every purchase's cashier shows a
new order, so a code drawn here (about 5 ms: segno scores all eight masks) was never reused.
The page carries the text in ``data-qr-text``.

What stays here is the fallback for a browser without JavaScript: inside ``<noscript>``, an
``<img>`` of ``payments:qr`` (``views.qr_image``), whose token is the text and scale signed
(``fallback_token``). Nobody can make the server draw a text it did not put on a page, and a
browser with JavaScript never fetches the image. A drawn code depends only on its text, so each
is drawn once: kept per process (LRU) and in the shared cache."""

import hashlib
from functools import lru_cache

import segno
from django.core import signing
from django.core.cache import cache

DARK = "#1f2937"  # static/js/qr.js draws in the same colour
CACHE_SECONDS = 2 * 3600  # longer than a payable stays payable
SALT = "payments.qr"
SCALES = range(1, 11)  # px per module a token may ask for


@lru_cache(maxsize=256)
def qr_svg(text: str, scale: int) -> str:
    """``text`` as a QR code (error correction M), an ``<svg>`` of ``scale`` px per module with a
    4-module quiet zone; with its namespace, so that it stands alone as an image too."""
    key = "qr-svg:" + hashlib.sha256(f"{scale}\n{text}".encode()).hexdigest()
    svg = cache.get(key)
    if svg is None:
        svg = segno.make(text, error="m").svg_inline(scale=scale, dark=DARK)
        svg = svg.replace("<svg ", '<svg xmlns="http://www.w3.org/2000/svg" ', 1)
        cache.set(key, svg, CACHE_SECONDS)
    return svg


def fallback_token(text: str, scale: int) -> str:
    """The signed, timestamped token of the no-JavaScript image of ``text`` (``payments:qr``)."""
    return signing.dumps([text, scale], salt=SALT, compress=True)


def fallback_read(token: str) -> tuple[str, int] | None:
    """The text and scale of a token this server signed within ``CACHE_SECONDS``; None for a
    token tampered with, expired or not of this shape."""
    try:
        value = signing.loads(token, salt=SALT, max_age=CACHE_SECONDS)
    except signing.BadSignature:  # SignatureExpired too
        return None
    match value:
        case [str() as text, int() as scale] if scale in SCALES and text:
            return text, scale
    return None
