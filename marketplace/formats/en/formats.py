"""English: the same formats as zh-hans (marketplace/formats/__init__.py)."""

from marketplace.formats.zh_Hans.formats import (  # noqa: F401 (read by Django's format look-up)
    DATE_FORMAT,
    DATETIME_FORMAT,
    SHORT_DATE_FORMAT,
    SHORT_DATETIME_FORMAT,
    TIME_FORMAT,
)
