"""Date and time formats for both languages (settings.FORMAT_MODULE_PATH): the site's own.

The pages, emails and messages write dates as ``2026-12-08 09:30`` in every language, with a
format of their own (``|date:"Y-m-d H:i"``). What is drawn without one (Django admin's lists and
read-only fields, ``formats.date_format(..., "SHORT_DATETIME_FORMAT")`` in refund messages) used
Django's formats for the language: ``2026年12月8日 09:30`` and ``Dec. 8, 2026, 9:30 a.m.``. Staff
comparing an order's times with a gateway's bill (``2026-12-08 09:30:12``) or a log line now read
the same shape everywhere, seconds included where a moment matters. Input formats are Django's
(the admin's date pickers and forms accept what they did).
"""
