"""The alerting rules (ops/prometheus/), their runbook and what /metrics exports, kept together.

- `promtool check rules` / `check config` accept the files and `promtool test rules` passes the
  unit tests in alerts_test.yml (each alert fires when it should and stays silent otherwise);
- every metric a rule reads, and every label value it matches on, is in the real /metrics: a
  typo in a rule (or a metric renamed in the app) fails here instead of never alerting;
- docs/runbook.md has a section for every alert, each alert's runbook_url points at it, and the
  commands, settings and admin pages the runbook names exist.

promtool comes from Debian's `prometheus` package (.ci/run installs it); without it these tests
skip, which CI=true turns into failures (tests/conftest.py).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from django.conf import settings
from django.urls import reverse
from prometheus_client.parser import text_string_to_metric_families

from ops import heartbeat
from tests.builders import place
from tests.factories import ProductFactory, UserFactory, add_stock

ROOT = Path(__file__).resolve().parent.parent
RULES_DIR = ROOT / "ops" / "prometheus"
ALERTS = RULES_DIR / "alerts.yml"
RUNBOOK = ROOT / "docs" / "runbook.md"
TOKEN = "alert-rules-metrics-token"
# Series Prometheus makes itself, not the app.
PROMETHEUS_OWN = {"up"}


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("needs promtool (Debian's `prometheus` package; .ci/run installs it)")
    return path


def run_promtool(*args: str, cwd: Path = RULES_DIR) -> str:
    result = subprocess.run([promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return output


def rules() -> list[dict]:
    doc = yaml.safe_load(ALERTS.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def alert_names() -> list[str]:
    return [rule["alert"] for rule in rules()]


def test_promtool_accepts_the_rules_and_their_unit_tests_pass():
    assert "SUCCESS" in run_promtool("check", "rules", "alerts.yml")
    assert "SUCCESS" in run_promtool("test", "rules", "alerts_test.yml")


def test_every_alert_has_a_firing_and_a_silent_unit_test():
    tests = yaml.safe_load((RULES_DIR / "alerts_test.yml").read_text())["tests"]
    cases = [case for test in tests for case in test["alert_rule_test"]]
    for name in alert_names():
        mine = [case for case in cases if case["alertname"] == name]
        assert any(case["exp_alerts"] for case in mine), f"{name}: no case where it fires"
        assert any(not case["exp_alerts"] for case in mine), f"{name}: no case where it stays silent"


def test_every_rule_has_severity_summary_description_and_runbook():
    for rule in rules():
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        assert "for" in rule, rule["alert"]
        for key in ("summary", "description", "runbook_url"):
            assert rule["annotations"].get(key), (rule["alert"], key)


def test_the_example_prometheus_config_is_valid(tmp_path):
    """promtool checks the config with its rule files and the token file in place."""
    token = tmp_path / "metrics_token"
    token.write_text(TOKEN)
    config = (RULES_DIR / "prometheus.yml").read_text()
    assert "credentials_file: /etc/prometheus/metrics_token" in config
    (tmp_path / "prometheus.yml").write_text(config.replace("/etc/prometheus/metrics_token", str(token)))
    shutil.copy(ALERTS, tmp_path / "alerts.yml")
    output = run_promtool("check", "config", "prometheus.yml", cwd=tmp_path)
    assert "SUCCESS: 1 rule files found" in output
    # The job the rules' up{job=...} matches is the one scraped.
    job = yaml.safe_load(config)["scrape_configs"][0]["job_name"]
    assert all(f'job="{job}"' in rule["expr"] for rule in rules() if "up{" in rule["expr"])


def test_compose_runs_prometheus_only_with_the_monitoring_profile():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    service = compose["services"]["prometheus"]
    assert service["profiles"] == ["monitoring"]
    for volume in service["volumes"]:
        source = volume.split(":")[0]
        if source.startswith("./"):
            assert (ROOT / source).is_file(), source
    assert service["configs"] == [{"source": "metrics-token", "target": "/etc/prometheus/metrics_token"}]
    assert "METRICS_TOKEN" in compose["configs"]["metrics-token"]["content"]
    assert all(p.startswith("127.0.0.1:") for p in service["ports"])  # Prometheus has no login


# --- what the rules read is what /metrics exports ---------------------------------------------

METRIC = re.compile(r"\b((?:kamarket|django)_[a-z0-9_]+)\b(?:\{([^}]*)\})?")
MATCHER = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"')


def rule_references() -> list[tuple[str, str, str, str, str]]:
    """(alert, metric, label, operator, value) for every metric and label matcher in the rules;
    label, operator and value empty for a metric read without matchers."""
    found = []
    for rule in rules():
        for metric, matchers in METRIC.findall(rule["expr"]):
            found.append((rule["alert"], metric, "", "", ""))
            for label, op, value in MATCHER.findall(matchers or ""):
                found.append((rule["alert"], metric, label, op, value))
    return found


@pytest.mark.django_db
def test_every_metric_and_label_value_in_the_rules_is_exported(client, settings):
    settings.METRICS_TOKEN = TOKEN
    settings.METRICS_ALLOWED_IPS = []
    # Give every family its series: an order placed, the heartbeats stamped, requests answered
    # (the product page, by name, for the product page's latency rule).
    product = ProductFactory(slug="alert-rules")
    add_stock(product, 2)
    place(UserFactory(), product)
    for source in (heartbeat.BEAT, *settings.QUEUE_NAMES):
        heartbeat.heartbeat_stamp(source=source)
    assert client.get(f"/p/{product.slug}/").status_code == 200
    assert client.get("/no-such-page/").status_code == 404
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    exported: dict[str, list[dict[str, str]]] = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            exported.setdefault(sample.name, []).append(sample.labels)

    references = rule_references()
    assert {metric for _, metric, *_ in references} >= {
        "kamarket_oldest_undelivered_paid_order_age_seconds",
        "django_http_requests_latency_including_middlewares_seconds_bucket",
        "kamarket_admission_refused_total",
    }
    for alert, metric, label, op, value in references:
        assert metric in exported, f"{alert}: {metric} is not exported by /metrics"
        if not label:
            continue
        values = {labels.get(label) for labels in exported[metric]} - {None}
        assert values, f"{alert}: {metric} has no label {label!r}"
        if op == "=":
            assert value in values, f"{alert}: {metric}{{{label}={value!r}}} matches nothing exported"
        elif op == "=~" and re.fullmatch(r"[\w:|]+", value):
            for alternative in value.split("|"):
                assert alternative in values, f"{alert}: {metric}{{{label}=~...{alternative}...}} matches nothing"
    # The views the HTTP rules single out or leave out exist under those names.
    assert reverse("catalog:product", kwargs={"slug": "x"}) and reverse("ops_health")
    # A rule on a misspelt metric would fail above: prove the check is not vacuous.
    assert "kamarket_oldest_undelivered_paid_order_age_second" not in exported


# --- the runbook ---------------------------------------------------------------------------


def runbook_sections() -> list[str]:
    text = RUNBOOK.read_text()
    alerts_part = text.split("\n## Alerts\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^### (\w+)\s*$", alerts_part, re.M)


def test_the_runbook_has_a_section_for_every_alert_and_no_other():
    assert sorted(runbook_sections()) == sorted(alert_names())
    for rule in rules():
        assert rule["annotations"]["runbook_url"] == f"docs/runbook.md#{rule['alert'].lower()}"


def test_what_the_runbook_names_exists():
    """Commands, settings and admin pages: the runbook tells people under pressure what to type
    and where to click, so a name that does not exist is a defect."""
    from django.apps import apps
    from django.contrib import admin
    from django.core.management import get_commands

    text = RUNBOOK.read_text()
    commands = set(re.findall(r"manage\.py (\w+)", text))
    assert commands, "the runbook names no manage.py command"
    assert commands <= set(get_commands()), commands - set(get_commands())

    deployment = (ROOT / "docker-compose.yml").read_text() + (ROOT / ".env.example").read_text()
    for name in set(re.findall(r"`([A-Z][A-Z0-9]+(?:_[A-Z0-9]+)+)", text)):
        assert hasattr(settings, name) or name in deployment, f"{name}: neither a setting nor in the deployment files"

    pages = set(re.findall(r"/admin/(\w+)/(\w+)/", text))
    assert pages
    for app_label, model in pages:
        assert apps.get_model(app_label, model) in admin.site._registry, f"/admin/{app_label}/{model}/"

    for path in re.findall(r"`((?:bench|ops|docs|marketplace)/[\w/.]+)`", text):
        assert (ROOT / path).exists(), path
