"""A request that runs past gunicorn's timeout (marketplace/gunicorn_conf.py): the arbiter kills
its worker, and the request, answered to nobody, is counted for /metrics and named in the log.
The stuck request here is a real one: a product page waiting on a table lock that another
session holds, as behind a migration's ALTER TABLE on the busiest day."""

import http.client
import logging
import re
import time
from types import SimpleNamespace

import psycopg2
import pytest
from django.db import connection
from prometheus_client import CollectorRegistry, multiprocess

from marketplace import gunicorn_conf
from tests.factories import ProductFactory
from tests.live_gunicorn import running_gunicorn


def timed_out_count(directory) -> float:
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(directory))
    return registry.get_sample_value("kamarket_web_requests_timed_out_total") or 0.0


def get(base: str, path: str, timeout: float = 20) -> tuple[int | None, str, float]:
    """(status, or None when the server closed the connection unanswered; body; seconds)."""
    host, port = base.removeprefix("http://").split(":")
    started = time.monotonic()
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode(), time.monotonic() - started
    except (http.client.RemoteDisconnected, ConnectionResetError):
        return None, "", time.monotonic() - started
    finally:
        conn.close()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_request_killed_by_the_timeout_is_counted_and_named(tmp_path):
    product = ProductFactory()
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    db = connection.settings_dict
    locker = psycopg2.connect(dbname=db["NAME"], user=db["USER"], host=db["HOST"], port=db["PORT"] or 5432)
    try:
        with running_gunicorn(
            *("--config", "python:marketplace.gunicorn_conf", "--workers", "1", "--timeout", "2"),
            "--no-control-socket",
            env={"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir), "LOG_FORMAT": "plain"},
        ) as (base, process):
            # Served, and nothing counted: the series exists at 0.
            assert get(base, f"/p/{product.slug}/")[0] == 200
            assert "kamarket_web_requests_timed_out_total 0.0" in get(base, "/metrics")[1]

            locker.cursor().execute("LOCK TABLE catalog_product IN ACCESS EXCLUSIVE MODE")
            try:
                status, _, seconds = get(base, f"/p/{product.slug}/?from=stuck")
            finally:
                locker.rollback()
            # The worker was killed: the connection closed unanswered after the timeout (the
            # arbiter looks once a second), long before the client's own 20 s.
            assert status is None and 2 <= seconds < 10

            # The next worker serves; the scrape merges the arbiter's count.
            assert "kamarket_web_requests_timed_out_total 1.0" in get(base, "/metrics")[1]
            assert timed_out_count(metrics_dir) == 1
            assert get(base, f"/p/{product.slug}/")[0] == 200
            process.terminate()
            output = process.stdout.read().decode()
    finally:
        locker.close()
    # The arbiter names the request (the path without its query string, as gunicorn parsed it);
    # the worker, stuck inside libpq, never ran its Python handler: SIGKILL a second later.
    assert re.search(
        r"\[ERROR\] request killed with worker \d+ after the 2s timeout: GET /p/" + product.slug + r"/\n", output
    )
    assert "WORKER TIMEOUT" in output
    assert "Exception in worker process" not in output and "Traceback" not in output


def test_a_worker_stuck_in_python_logs_where(caplog):
    """When the worker's SIGABRT handler does run (stuck in Python, or in a socket read that
    returns to Python), it logs the stack of the request it interrupted."""
    worker = SimpleNamespace(cfg=SimpleNamespace(timeout=30), request_slot=0)
    gunicorn_conf.pre_request(worker, SimpleNamespace(method="POST", path="/orders/checkout/steam-50/"))

    def handle_abort():  # what gunicorn's Worker.handle_abort does before exiting
        gunicorn_conf.worker_abort(worker)

    def a_view_waiting_on_a_supplier():
        handle_abort()

    with caplog.at_level(logging.ERROR, logger="marketplace.gunicorn"):
        a_view_waiting_on_a_supplier()
    (record,) = caplog.records
    message = record.getMessage()
    assert "request stuck past gunicorn's 30s timeout: POST /orders/checkout/steam-50/" in message
    assert "in a_view_waiting_on_a_supplier" in message and "in handle_abort" not in message
    assert "worker_abort" not in message


def test_a_long_path_is_cut_to_its_slot():
    worker = SimpleNamespace(request_slot=3)
    gunicorn_conf.pre_request(worker, SimpleNamespace(method="GET", path="/p/" + "长" * 500))
    text = gunicorn_conf._request_in(3)
    assert text == "GET /p/" + "长" * 82  # 254 bytes hold 82 whole characters after "GET /p/"
    gunicorn_conf.pre_request(worker, SimpleNamespace(method="GET", path="/"))
    assert gunicorn_conf._request_in(3) == "GET /"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_access_log_is_json_with_the_request_id():
    """Under LOG_FORMAT=json each access line is an object with the id the app's own lines carry."""
    import json

    product = ProductFactory()
    with running_gunicorn(
        *("--config", "python:marketplace.gunicorn_conf", "--workers", "1", "--access-logfile", "-"),
        "--no-control-socket",
        env={"LOG_FORMAT": "json"},
    ) as (base, process):
        host, port = base.removeprefix("http://").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=20)
        path = f"/p/{product.slug}/"
        conn.request(
            "GET",
            path + "?from=%E6%B5%8B",
            headers={"X-Request-ID": "access-log-0001", "User-Agent": 'a "quoted" agent'},
        )
        response = conn.getresponse()
        body = response.read()
        conn.close()
        assert response.status == 200
        process.terminate()
        output = process.stdout.read().decode()
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    access = next(line for line in lines if line["logger"] == "gunicorn.access")
    assert access["request_id"] == "access-log-0001" == response.getheader("X-Request-ID")
    assert access["method"] == "GET" and access["path"] == path and access["query"] == "from=%E6%B5%8B"
    assert access["status"] == 200
    assert access["bytes"] == len(body) and access["duration_ms"] > 0
    assert access["user_agent"] == 'a "quoted" agent' and access["message"] == f"GET {path} 200"
    assert set(access) >= {"time", "level", "logger", "message", "request_id"}  # the app's lines' shape
