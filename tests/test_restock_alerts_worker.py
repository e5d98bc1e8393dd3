"""Restock alerts through a real Celery worker process, Redis and PostgreSQL (issue 15: "a
restock email reaches each subscriber exactly once, with a worker killed midway").

Stock is imported for a product with 12 confirmed subscribers; the alerts go out in runs of 5
(RESTOCK_ALERT_BATCH=5 in the worker's environment: 5 + 5 + 2, each run queueing the next). The
worker sends through tests/restock_mail_backend.py, which records every email it accepts to a
file and stops for good at the 8th alert, in the middle of the second run. The test then
SIGKILLs the worker's whole process group (no ack, no clean shutdown), waits out the Redis
visibility timeout, and starts a fresh worker, which is handed the killed run's message again
(acks_late: same task id, so the run finds its own claimed rows) and finishes.

- Killed between two emails (alert 7 sent and marked, alert 8 not sent): every subscriber gets
  exactly one email, in all.
- Killed with one email in flight (alert 8 accepted by the mail server, its row not yet marked):
  that one subscriber gets it twice, by design (catalog.services.restock_notify_run: at-least-once
  for the email in flight, never a lost alert); everyone else exactly once, nobody skipped.
"""

import json
import sys
import time
from pathlib import Path

import pytest
import redis
from django.conf import settings

from catalog import services as catalog_services
from catalog.models import RestockSubscription
from tests.factories import ProductFactory, UserFactory, add_stock
from tests.worker_utils import Worker, broker_redis_emptied, wait_for, workers_started

pytestmark = [
    pytest.mark.worker,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(sys.platform == "win32", reason="prefork workers and process groups are POSIX"),
]

VISIBILITY_TIMEOUT = 5  # seconds before Redis hands a dead worker's unacknowledged message out again
QUEUE = "notifications"  # catalog.tasks.restock_notify's queue (settings.CELERY_TASK_ROUTES)
TASK = "catalog.tasks.restock_notify"
SUBSCRIBERS = 12
BATCH = 5
HANG_AT = 8  # the 8th alert: the third of the second run's five


@pytest.fixture
def broker_redis(redis_url):
    """The test Redis, emptied, with this process publishing to it (worker tests take turns)."""
    with broker_redis_emptied(redis_url, visibility_timeout=VISIBILITY_TIMEOUT) as client:
        yield client


@pytest.fixture
def mail_log(tmp_path) -> Path:
    return tmp_path / "mail.jsonl"


@pytest.fixture
def start_worker(request, redis_url, broker_redis, mail_log):
    """Start workers sending through the recording backend; all killed at the end, their logs
    shown if the test failed."""

    with workers_started(request) as start:

        def start_worker(label: str, *, hang: str = "") -> Worker:
            env = {
                "EMAIL_BACKEND": "tests.restock_mail_backend.RecordingBackend",
                "TEST_MAIL_LOG": str(mail_log),
                "TEST_MAIL_HANG": hang,
                "RESTOCK_ALERT_BATCH": str(BATCH),
            }
            return start(broker_url=redis_url, visibility_timeout=VISIBILITY_TIMEOUT, label=label, env=env)

        yield start_worker


def sent_alerts(mail_log: Path) -> list[dict]:
    if not mail_log.exists():
        return []
    return [line for line in map(json.loads, mail_log.read_text().splitlines()) if line["alert"]]


def recipients(mail_log: Path) -> list[str]:
    return [line["to"][0] for line in sent_alerts(mail_log)]


def emails_of(rows) -> list[str]:
    return list(rows.order_by("pk").values_list("email", flat=True))


def drained(client: redis.Redis) -> bool:
    return all(client.llen(queue) == 0 for queue in settings.QUEUE_NAMES) and client.hlen("unacked") == 0


@pytest.mark.parametrize("moment", ["between_emails", "email_in_flight"])
def test_worker_killed_midway_each_subscriber_gets_the_alert_once(moment, broker_redis, start_worker, mail_log):
    product = ProductFactory(name="Steam ¥100")  # no stock: sold out
    subs = []
    for i in range(SUBSCRIBERS):
        sub, outcome = catalog_services.restock_subscribe(
            product=product, user=UserFactory(email=f"fan{i:02d}@example.com")
        )
        assert outcome == "subscribed" and sub.confirmed_at is not None
        subs.append(sub)
    emails = [s.email for s in subs]
    waiting = RestockSubscription.objects.filter(product=product, notified_at__isnull=True)

    add_stock(product, 3)  # the import commits; the first sending run waits in Redis
    assert broker_redis.llen(QUEUE) == 1
    assert recipients(mail_log) == []

    hang = f"{'before' if moment == 'between_emails' else 'after'}:{HANG_AT}"
    first = start_worker("restock-killed", hang=hang)
    hung = mail_log.with_name(mail_log.name + ".hung")
    wait_for(hung.exists, timeout=60, what="the worker to stop at the 8th alert")
    in_flight = subs[HANG_AT - 1]  # rows are claimed and sent in primary-key order
    assert hung.read_text() == in_flight.email

    # The moment of the kill, as the database and the broker see it.
    sent_before_kill = recipients(mail_log)
    if moment == "between_emails":
        assert sent_before_kill == emails[: HANG_AT - 1]  # the 8th never handed over
    else:
        assert sent_before_kill == emails[:HANG_AT]  # the 8th accepted by the mail server...
    # ... and in both cases only the first 7 rows are marked: the 8th's mark never ran.
    assert emails_of(RestockSubscription.objects.filter(notified_at__isnull=False)) == emails[: HANG_AT - 1]
    second_run = RestockSubscription.objects.get(pk=in_flight.pk).claim
    assert second_run
    # The second run holds its five rows (6th to 10th); the last two wait for a third run.
    assert emails_of(RestockSubscription.objects.filter(claim=second_run)) == emails[BATCH : 2 * BATCH]
    assert emails_of(waiting.filter(claim="")) == emails[2 * BATCH :]
    # The second run's message: delivered to the worker, not acknowledged (acks_late).
    assert broker_redis.llen(QUEUE) == 0
    [(tag, delivered_at)] = broker_redis.zrange("unacked_index", 0, -1, withscores=True)
    [message, _exchange, _routing_key] = json.loads(broker_redis.hget("unacked", tag))
    assert message["headers"]["task"] == TASK and message["headers"]["id"] == second_run
    assert len(first.children()) == 1

    first.kill()  # SIGKILL to the worker's process group: main process and pool child
    assert first.children() == []
    assert f"Task {TASK}[{second_run}] succeeded" not in first.output()

    # The message comes back once older than the visibility timeout (kombu restores unacked
    # messages when a consumer starts): restart then.
    time.sleep(max(0.0, delivered_at + VISIBILITY_TIMEOUT + 0.5 - time.time()))
    second = start_worker("restock-restarted")
    wait_for(lambda: not waiting.exists(), timeout=90, what="every subscriber to be marked notified")
    wait_for(lambda: drained(broker_redis), timeout=30, what="the runs' messages to be acknowledged")
    assert f"Task {TASK}[{second_run}] received" in second.output()  # the killed run, same task id
    assert f"Task {TASK}[{second_run}] succeeded" in second.output()

    sent = recipients(mail_log)
    counts = {email: sent.count(email) for email in emails}
    assert set(sent) == set(emails)  # nobody skipped, nobody else emailed
    if moment == "between_emails":
        assert counts == dict.fromkeys(emails, 1)  # exactly once, all twelve
        assert len(sent) == SUBSCRIBERS
    else:
        # The one email in flight at the kill is sent again; nobody else is.
        assert counts == {email: 2 if email == in_flight.email else 1 for email in emails}
        assert len(sent) == SUBSCRIBERS + 1
    # Each alert went to its own subscriber, with that subscriber's unsubscribe link.
    tokens = {s.email: s.token for s in subs}
    for line in sent_alerts(mail_log):
        assert line["unsubscribe"].endswith(f"/restock/unsubscribe/{tokens[line['to'][0]]}/>")
    # One batch announced; the product's subscriptions all ended by the alert.
    batches = set(RestockSubscription.objects.values_list("notified_batch", flat=True))
    assert len(batches) == 1 and None not in batches
