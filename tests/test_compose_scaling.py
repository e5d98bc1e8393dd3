"""Scaling commands the README and the runbook give, against docker-compose.yml.

The runbook told the on-call engineer to add web capacity with `docker compose up -d --scale web=N`,
but the web service publishes the host's port 8000: a second container on the host cannot bind it
and does not start. A command named under pressure must work, so every `--scale` named in the
documents is checked against the service's ports, and the capacity knob that replaces it on one
host (WEB_WORKERS) is followed from .env into gunicorn's command line.
"""

import re

import yaml

from tests.test_deploy_check import BASE_DIR
from tests.test_production_ops import interpolate

DOCUMENTS = ("README.md", "docs/runbook.md", "docker-compose.yml", ".env.example")


def services() -> dict:
    return yaml.safe_load((BASE_DIR / "docker-compose.yml").read_text())["services"]


def fixed_host_ports(service: dict) -> list[str]:
    """ "HOST:CONTAINER" mappings with one host port (a range or a bare container port can repeat)."""
    return [p for p in map(str, service.get("ports", [])) if re.fullmatch(r"(?:[\d.]+:)?\d+:\d+", p)]


def test_every_scale_command_named_in_the_documents_can_start_its_containers():
    named = {
        (document, name)
        for document in DOCUMENTS
        for name in re.findall(r"--scale[ =]([\w-]+)=", (BASE_DIR / document).read_text())
    }
    assert ("docs/runbook.md", "worker-fulfilment") in named
    for document, name in sorted(named):
        assert name in services(), f"{document}: --scale {name}: no such service"
        ports = fixed_host_ports(services()[name])
        assert not ports, f"{document}: --scale {name}=N cannot start a second container: it publishes {ports}"


def test_web_workers_set_in_dotenv_reaches_gunicorn():
    command = services()["web"]["command"][-1]
    assert "--workers=4 " in interpolate(command, {})
    assert "--workers=9 " in interpolate(command, {"WEB_WORKERS": "9"})
