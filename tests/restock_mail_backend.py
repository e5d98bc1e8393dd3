"""A test-only email backend for the worker processes of tests/test_restock_alerts_worker.py.

The worker selects it through its environment (``EMAIL_BACKEND=tests.restock_mail_backend.
RecordingBackend``; settings.py reads EMAIL_BACKEND from the environment). Every message the
worker hands over is appended as one JSON line to ``TEST_MAIL_LOG`` (flushed and fsynced, so a
SIGKILL right after loses nothing the "mail server" accepted), which is what the test counts.

``TEST_MAIL_HANG=<when>:<n>`` makes the backend stop for good at the ``n``-th restock alert
(counted over the whole log, so across runs and processes), so the test can SIGKILL the worker
at a known point:
  - ``before:n``: the ``n``-th alert is never handed over; the worker is between two emails
    (alert ``n - 1`` sent and marked, alert ``n`` not sent);
  - ``after:n``: the ``n``-th alert is accepted (recorded), and the worker dies before
    ``send()`` returns, so before the sending run can mark the row: the one email in flight.
Before hanging it creates ``<TEST_MAIL_LOG>.hung`` holding the recipient, for the test to wait on.

``TEST_MAIL_HANG=stubborn:<n>``: as ``before``, but the hang also ignores the task's soft time limit
(it catches ``SoftTimeLimitExceeded``), so only the hard limit's kill ends it.

``TEST_MAIL_DELAY=<seconds>``: a slow mail server; each restock alert takes that long before it is
accepted (tests/test_task_time_limits_worker.py: a run of alerts longer than the visibility timeout).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from celery.exceptions import SoftTimeLimitExceeded
from django.core.mail.backends.base import BaseEmailBackend

UNSUBSCRIBE_PATH = "/restock/unsubscribe/"


def _is_restock_alert(message) -> bool:
    return UNSUBSCRIBE_PATH in message.extra_headers.get("List-Unsubscribe", "")


def _hang(log: Path, recipient: str, *, stubborn: bool = False) -> None:
    log.with_name(log.name + ".hung").write_text(recipient)
    while True:  # until SIGKILL
        try:
            time.sleep(60)
        except SoftTimeLimitExceeded:
            if not stubborn:
                raise


class RecordingBackend(BaseEmailBackend):
    def send_messages(self, email_messages) -> int:
        log = Path(os.environ["TEST_MAIL_LOG"])
        when, _, at = os.environ.get("TEST_MAIL_HANG", "").partition(":")
        hang_at = int(at) if at else 0
        for message in email_messages:
            alert = _is_restock_alert(message)
            nth = 0
            if alert:
                recorded = log.read_text().splitlines() if log.exists() else []
                nth = sum(1 for line in recorded if json.loads(line)["alert"]) + 1
            recipient = message.to[0]
            if alert:
                time.sleep(float(os.environ.get("TEST_MAIL_DELAY") or 0))
            if nth and nth == hang_at and when in ("before", "stubborn"):
                _hang(log, recipient, stubborn=when == "stubborn")
            line = {
                "to": message.to,
                "subject": message.subject,
                "alert": alert,
                "unsubscribe": message.extra_headers.get("List-Unsubscribe", ""),
                "pid": os.getpid(),
            }
            with log.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(line, ensure_ascii=False) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            if nth and nth == hang_at and when == "after":
                _hang(log, recipient)
        return len(email_messages)
