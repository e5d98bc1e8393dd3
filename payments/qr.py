"""QR codes drawn as inline SVG for the cashier pages.

Drawing one costs about 5 ms (segno scores all eight masks and keeps the best), and a code
depends only on its text: the same payable's page, reloaded or opened by another worker,
shows the same code. So each is drawn once: kept per process (LRU) and in the shared cache."""

import hashlib
from functools import lru_cache

import segno
from django.core.cache import cache

DARK = "#1f2937"
CACHE_SECONDS = 2 * 3600  # longer than a payable stays payable


@lru_cache(maxsize=256)
def qr_svg(text: str, scale: int) -> str:
    """``text`` as a QR code (error correction M), an inline ``<svg>`` of ``scale`` px per module."""
    key = "qr-svg:" + hashlib.sha256(f"{scale}\n{text}".encode()).hexdigest()
    svg = cache.get(key)
    if svg is None:
        svg = segno.make(text, error="m").svg_inline(scale=scale, dark=DARK)
        cache.set(key, svg, CACHE_SECONDS)
    return svg
