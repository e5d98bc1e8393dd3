"""/health/ for the load balancer (issue 17): database, cache, beat and worker heartbeats."""

import time

import pytest
from django.core.cache import caches

from marketplace.celery import app
from ops import heartbeat
from ops.tasks import heartbeat as heartbeat_task

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def clean_heartbeats():
    caches["heartbeat"].clear()
    yield
    caches["heartbeat"].clear()


def stamp_all(now=None):
    for source in ("beat", "fulfilment", "default"):
        heartbeat.heartbeat_stamp(source=source, now=now)


def test_healthy_when_beat_and_workers_stamped(client):
    stamp_all()
    response = client.get("/health/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert len(body) == 5 and set(body.values()) == {"OK"}
    assert "no-cache" in response["Cache-Control"]


def test_never_stamped_is_unhealthy(client):
    response = client.get("/health/", HTTP_ACCEPT="application/json")
    assert response.status_code == 503
    body = response.json()
    assert body["Heartbeat(source='beat')"].endswith("no heartbeat from beat")
    assert body["Heartbeat(source='fulfilment')"].endswith("no heartbeat from fulfilment")
    assert body["Database(alias='default')"] == "OK"


def test_stale_fulfilment_heartbeat_is_unhealthy(client, settings):
    stamp_all()
    heartbeat.heartbeat_stamp(source="fulfilment", now=time.time() - settings.HEARTBEAT_MAX_AGE - 5)
    response = client.get("/health/?format=text")
    assert response.status_code == 503
    text = response.content.decode()
    assert "fulfilment" in text and "s ago" in text
    # Only the fulfilment queue's check fails.
    assert text.count("OK") == 4


def test_web_subset_ignores_workers(client):
    response = client.get("/health/web/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    assert len(response.json()) == 2


def test_heartbeat_task_stamps_its_queue_and_its_publish_stamps_beat(settings):
    assert heartbeat.heartbeat_age(source="reports") is None
    heartbeat_task.delay("reports")  # eager in tests: published (the beat stamp) and run (the queue's)
    assert heartbeat.heartbeat_age(source="reports") < 5
    # before_task_publish fires only for a real publish; in eager mode, apply the signal directly.
    from celery.signals import before_task_publish

    before_task_publish.send(sender="ops.tasks.heartbeat", body=None, exchange="", routing_key="reports")
    assert heartbeat.heartbeat_age(source="beat") < 5


def test_beat_sends_a_heartbeat_to_every_queue():
    entries = [e for e in app.conf.beat_schedule.values() if e["task"] == "ops.tasks.heartbeat"]
    assert {e["options"]["queue"] for e in entries} == {
        "fulfilment",
        "notifications",
        "callbacks",
        "reports",
        "default",
    }
    assert all(e["args"] == (e["options"]["queue"],) and e["schedule"] <= 30 for e in entries)


def test_health_is_anonymous_and_html_renders(client):
    stamp_all()
    response = client.get("/health/")
    assert response.status_code == 200
    assert b"<html" in response.content.lower() or b"<!doctype" in response.content.lower()


def test_with_redis_away_the_shop_serves_but_health_takes_it_out_of_rotation(client, settings):
    """What docs/runbook.md (BrokerUnreachable) tells the on-call engineer: a web process without
    Redis still serves pages (cache misses, sessions from the database), but /health/ checks the
    cache and reads the heartbeats from Redis, so the load balancer takes every web container out.
    The runbook said pages still work, as if the load balancer did not ask /health/."""
    from tests.test_faults import free_port, redis_cache_settings

    stamp_all()
    away = redis_cache_settings(f"redis://127.0.0.1:{free_port()}/0")["default"]
    settings.CACHES = {"default": away, "heartbeat": {**away, "KEY_PREFIX": "ops"}}
    assert client.get("/").status_code == 200
    for url in ("/health/", "/health/web/"):
        response = client.get(url, HTTP_ACCEPT="application/json")
        assert response.status_code == 503, url
        assert response.json()["Cache(alias='default')"] != "OK"
    assert "no heartbeat" in client.get("/health/", HTTP_ACCEPT="application/json").json()["Heartbeat(source='beat')"]
