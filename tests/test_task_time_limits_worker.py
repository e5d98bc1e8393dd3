"""A task longer than the broker's visibility timeout runs twice at once; its time limit stops it
first (marketplace/tasklimits.py), with real Celery workers, Redis and PostgreSQL.

The task: one run of restock alerts (catalog.tasks.restock_notify) for 12 subscribers in one batch,
through a mail server that takes 0.8 s per email (tests/restock_mail_backend.py, TEST_MAIL_DELAY):
a run of about 10 s. The visibility timeout is 4 s. A second worker starts after the timeout, as one
does after a deploy or a crash (kombu restores unacknowledged messages older than the timeout when
a consumer starts, and every ~100 s while it runs).

- Control, the limit above the timeout (CELERY_TASK_TIME_LIMIT=60: what every task had before, no
  limit at all): the second worker is handed the running task's message and runs it too, under the
  same task id; the subscribers the first had not reached yet get the alert twice.
- The limit below the timeout (CELERY_TASK_TIME_LIMIT=3, so the soft limit is 2 s): each run
  stops at its soft limit with the alerts it sent marked, is acknowledged, and queues the rest under
  the same run; no message outlives the timeout, nobody is emailed twice, everybody once.
"""

import json
import sys
import time

import pytest
from django.conf import settings

from catalog import services as catalog_services
from catalog.models import RestockSubscription
from tests.factories import ProductFactory, UserFactory, add_stock
from tests.test_restock_alerts_worker import sent_alerts
from tests.worker_utils import Worker, broker_redis_emptied, wait_for, workers_started

pytestmark = [
    pytest.mark.worker,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(sys.platform == "win32", reason="prefork workers and process groups are POSIX"),
]

VISIBILITY_TIMEOUT = 4
TASK = "catalog.tasks.restock_notify"
SUBSCRIBERS = 12
MAIL_DELAY = 0.8  # seconds per email: a run of SUBSCRIBERS alerts takes about 10 s


@pytest.fixture
def broker_redis(redis_url):
    with broker_redis_emptied(redis_url, visibility_timeout=VISIBILITY_TIMEOUT) as client:
        yield client


@pytest.fixture
def start_worker(request, redis_url, broker_redis, tmp_path):

    with workers_started(request) as start:

        def start_worker(label: str, *, time_limit: int, hang: str = "", delay: float = MAIL_DELAY) -> Worker:
            env = {
                "EMAIL_BACKEND": "tests.restock_mail_backend.RecordingBackend",
                "TEST_MAIL_LOG": str(tmp_path / "mail.jsonl"),
                "TEST_MAIL_DELAY": str(delay),
                "TEST_MAIL_HANG": hang,
                "RESTOCK_ALERT_BATCH": str(SUBSCRIBERS),  # one run for everybody
                "CELERY_TASK_TIME_LIMIT": str(time_limit),
            }
            return start(broker_url=redis_url, visibility_timeout=VISIBILITY_TIMEOUT, label=label, env=env)

        yield start_worker


def subscribed_product():
    product = ProductFactory(name="Steam ¥100")  # sold out
    emails = []
    for i in range(SUBSCRIBERS):
        sub, outcome = catalog_services.restock_subscribe(product=product, user=UserFactory(email=f"fan{i:02d}@x.com"))
        assert outcome == "subscribed"
        emails.append(sub.email)
    return product, emails


def publish_with_limits(monkeypatch, time_limit: int) -> None:
    """A message carries the time limits its publisher knows (Celery puts the task's time_limit
    and soft_time_limit in its `timelimit` header, which the worker prefers to its own): this
    process publishes the first run with the limits the workers were given."""
    from catalog.tasks import restock_notify as task

    monkeypatch.setattr(task, "time_limit", time_limit)
    monkeypatch.setattr(task, "soft_time_limit", time_limit * 3 // 4)
    monkeypatch.setattr(task, "_exec_options", None)


def restocked(broker_redis, time_limit: int):
    """The product with its subscribers, restocked: (product, emails, the sending run's task id)."""
    product, emails = subscribed_product()
    add_stock(product, 3)  # commits; the sending run waits in Redis
    [message] = [json.loads(m) for m in broker_redis.lrange("notifications", 0, -1)]
    assert message["headers"]["timelimit"] == [time_limit, time_limit * 3 // 4]
    return product, emails, message["headers"]["id"]


def run_alerts(broker_redis, start_worker, tmp_path, monkeypatch, *, time_limit: int):
    """Restock the product, let one worker start the run, a second one join after the timeout;
    return (emails, alerts sent, the first run's task id, the two workers)."""
    publish_with_limits(monkeypatch, time_limit)
    product, emails, run_id = restocked(broker_redis, time_limit)
    first = start_worker("first", time_limit=time_limit)
    mail_log = tmp_path / "mail.jsonl"
    wait_for(lambda: sent_alerts(mail_log), timeout=60, what="the first alert")
    [(_tag, delivered_at)] = broker_redis.zrange("unacked_index", 0, -1, withscores=True)
    time.sleep(max(0.0, delivered_at + VISIBILITY_TIMEOUT + 0.5 - time.time()))
    second = start_worker("second", time_limit=time_limit)
    waiting = RestockSubscription.objects.filter(product=product, notified_at__isnull=True)
    wait_for(lambda: not waiting.exists(), timeout=90, what="every subscriber to be marked notified")
    wait_for(
        lambda: all(broker_redis.llen(q) == 0 for q in settings.QUEUE_NAMES) and broker_redis.hlen("unacked") == 0,
        timeout=30,
        what="every run's message to be acknowledged",
    )
    second.wait_ready()
    # The first run's message may be in both workers; both finish (an ack by either removes it).
    wait_for(
        lambda: all(
            w.output().count(f"Task {TASK}[{run_id}] received") <= w.output().count(f"Task {TASK}[{run_id}] succeeded")
            for w in (first, second)
        ),
        timeout=60,
        what="the first run to finish in every worker that received it",
    )
    return emails, [line["to"][0] for line in sent_alerts(mail_log)], run_id, first, second


def test_control_a_run_longer_than_the_visibility_timeout_runs_twice_at_once(
    broker_redis, start_worker, tmp_path, monkeypatch
):
    emails, sent, run_id, first, second = run_alerts(broker_redis, start_worker, tmp_path, monkeypatch, time_limit=60)
    # The second worker was handed the message the first was still running: same task id.
    assert f"Task {TASK}[{run_id}] received" in first.output()
    assert f"Task {TASK}[{run_id}] received" in second.output()
    assert f"Task {TASK}[{run_id}] succeeded" in second.output()
    assert set(sent) == set(emails)
    twice = [email for email in emails if sent.count(email) == 2]
    assert twice, sent  # the subscribers both runs reached
    assert "time limit" not in first.output() + second.output()


def test_the_time_limit_stops_each_run_before_the_timeout_and_the_rest_goes_on(
    broker_redis, start_worker, tmp_path, monkeypatch
):
    emails, sent, run_id, first, second = run_alerts(broker_redis, start_worker, tmp_path, monkeypatch, time_limit=3)
    assert sorted(sent) == sorted(emails)  # everybody once, nobody twice
    logs = first.output() + second.output()
    # The first run stopped at its soft limit, was acknowledged, and was never handed out again.
    assert logs.count(f"Task {TASK}[{run_id}] received") == 1
    assert f"Task {TASK}[{run_id}] succeeded" in first.output()
    assert f"task {TASK} reached its soft time limit (stopped at product" in logs
    # Each run sends two alerts (2 s at 0.8 s each; the soft limit strikes in the third's wait, before
    # the mail server accepts it): several runs, none cut by the hard limit.
    runs = logs.count(f"Task {TASK}[")
    assert logs.count("reached its soft time limit") >= SUBSCRIBERS // 3
    assert runs >= 2 * (SUBSCRIBERS // 3)  # received + succeeded, per run
    assert "Hard time limit" not in logs


def test_a_run_killed_at_its_hard_limit_is_acknowledged_not_handed_out_again(
    broker_redis, start_worker, tmp_path, monkeypatch
):
    """The fact marketplace/tasklimits.py states: at the hard limit the pool kills the child and
    Celery acknowledges the message although the task is acks_late and reject_on_worker_lost, so
    the broker never hands it out again; the killed run's claimed rows wait for the sweeper."""
    from marketplace import tasklimits

    publish_with_limits(monkeypatch, 3)
    product, emails, run_id = restocked(broker_redis, 3)
    before = tasklimits.time_limit_counts([TASK])[(TASK, "hard")]
    # The mail server hangs at the 3rd alert and the hang ignores the soft limit (2 s).
    worker = start_worker("killed", time_limit=3, hang="stubborn:3", delay=0)
    wait_for(lambda: "Hard time limit (3s) exceeded" in worker.output(), timeout=60, what="the hard limit")
    wait_for(lambda: f"{TASK}[{run_id}]" in worker.output().split("Hard time limit", 1)[1], timeout=10, what="its id")
    # Acknowledged at the kill: nothing unacknowledged for Redis to hand out after the timeout.
    wait_for(lambda: broker_redis.hlen("unacked") == 0, timeout=10, what="the message to be acknowledged")
    assert all(broker_redis.llen(q) == 0 for q in settings.QUEUE_NAMES)
    time.sleep(VISIBILITY_TIMEOUT + 1)
    assert broker_redis.hlen("unacked") == 0 and broker_redis.llen("notifications") == 0
    assert worker.output().count(f"Task {TASK}[{run_id}] received") == 1
    # The two alerts sent before the hang are marked; the rest stay claimed by the killed run.
    notified = RestockSubscription.objects.filter(product=product, notified_at__isnull=False)
    assert sorted(notified.values_list("email", flat=True)) == emails[:2]
    assert set(
        RestockSubscription.objects.filter(product=product, notified_at__isnull=True).values_list("claim", flat=True)
    ) == {run_id}
    assert tasklimits.time_limit_counts([TASK])[(TASK, "hard")] == before + 1
