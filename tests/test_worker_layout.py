"""Production's Celery workers, as docker-compose.yml runs them, are what dev.py starts, what the
benchmarks measure and what the fault tests kill: deliveries on a worker of their own, in the
solo pool (issue 17), every other queue on a prefork worker."""

import ast
import shlex
from pathlib import Path

import yaml
from django.conf import settings

from bench import purchase
from tests.worker_utils import FULFILMENT_POOL

ROOT = Path(settings.BASE_DIR)
OTHER_QUEUES = [q for q in settings.QUEUE_NAMES if q != "fulfilment"]


def _option(command: list[str], name: str) -> str | None:
    return command[command.index(name) + 1] if name in command else None


def _compose_command(service: str) -> list[str]:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    command = compose["services"][service]["command"]
    return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]


def test_compose_runs_deliveries_on_their_own_solo_workers_and_the_rest_on_prefork():
    fulfilment = _compose_command("worker-fulfilment")
    assert _option(fulfilment, "-Q") == "fulfilment"
    assert _option(fulfilment, "--pool") == FULFILMENT_POOL == "solo"
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    # Solo runs one delivery at a time per process: the processes are the concurrency.
    assert compose["services"]["worker-fulfilment"]["deploy"]["replicas"] >= 2
    other = _compose_command("worker")
    assert _option(other, "-Q").split(",") == OTHER_QUEUES
    assert _option(other, "--pool") in (None, "prefork")  # Celery's default pool is prefork


def _dev_worker_calls() -> list[list[str]]:
    """The string arguments of each ``start("worker...", ...)`` call in dev.py."""
    calls = []
    for node in ast.walk(ast.parse((ROOT / "dev.py").read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "start" and node.args:
            args = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
            if args and args[0].startswith("worker"):
                calls.append(args)
    return calls


def test_dev_start_runs_the_same_two_workers():
    by_queue = {_option(call, "-Q"): call for call in _dev_worker_calls()}
    assert set(by_queue) == {"fulfilment", ",".join(OTHER_QUEUES)}
    assert _option(by_queue["fulfilment"], "--pool") == FULFILMENT_POOL
    assert _option(by_queue[",".join(OTHER_QUEUES)], "--pool") == "prefork"


def test_the_benchmarks_measure_that_layout_by_default(monkeypatch, tmp_path):
    monkeypatch.setenv("VAR_DIR", str(tmp_path))  # purchase.py sets it before starting the servers
    parser = purchase.argparse.ArgumentParser()
    purchase.add_load_arguments(parser)
    args = parser.parse_args([])
    assert args.celery_pool == FULFILMENT_POOL
    commands = purchase.Servers(args, 0).commands()
    fulfilment = [str(c) for c in commands["celery"]]
    other = [str(c) for c in commands["celery-other"]]
    assert (_option(fulfilment, "-Q"), _option(fulfilment, "--pool")) == ("fulfilment", FULFILMENT_POOL)
    assert (_option(other, "-Q").split(","), _option(other, "--pool")) == (OTHER_QUEUES, "prefork")
    assert list(purchase.OTHER_QUEUES) == OTHER_QUEUES


def test_the_benchmarks_run_one_solo_worker_per_fulfilment_process(monkeypatch, tmp_path):
    """As compose runs replicas: ``--celery-concurrency 2`` in the solo pool is two workers, each
    on the fulfilment queue alone under its own name, and both are paused and counted as Celery."""
    monkeypatch.setenv("VAR_DIR", str(tmp_path))
    parser = purchase.argparse.ArgumentParser()
    purchase.add_load_arguments(parser)
    servers = purchase.Servers(parser.parse_args(["--celery-concurrency", "2"]), 0)
    commands = servers.commands()
    workers = {name: [str(c) for c in cmd] for name, cmd in commands.items() if "fulfilment" in map(str, cmd)}
    assert sorted(workers) == ["celery", "celery-2"]
    assert {_option(cmd, "--pool") for cmd in workers.values()} == {"solo"}
    assert len({_option(cmd, "-n") for cmd in workers.values()}) == 2
    servers.procs = {name: type("P", (), {"pid": i})() for i, name in enumerate(commands, start=100)}
    assert sorted(servers.fulfilment_groups()) == sorted(servers.procs[name].pid for name in workers)


def _seconds(duration: str) -> int:
    """Compose's duration ("250s", "4m10s", "2m") in seconds."""
    import re

    parts = re.fullmatch(r"(?:(\d+)m)?(?:(\d+)s)?", duration)
    assert parts and duration, duration
    return int(parts[1] or 0) * 60 + int(parts[2] or 0)


def test_a_stopped_worker_has_time_to_finish_the_task_in_hand():
    """An upgrade or `docker compose stop` sends SIGTERM: Celery's warm shutdown finishes the task
    in hand, but Docker kills the container after its stop_grace_period (10 s by default). A task
    killed then stays unacknowledged until the visibility timeout (600 s): a late report, a
    delivery left to the sweeper. So each worker waits at least its tasks' hard time limit."""
    from marketplace import tasklimits

    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    # Production's default (CELERY_TASK_TIME_LIMIT from a 600 s visibility timeout), not the tests'.
    batch_hard = (600 - settings.CELERY_RETRY_COUNTDOWN_MAX) * 4 // 5
    assert batch_hard >= tasklimits.BATCH["time_limit"]
    assert _seconds(services["worker"]["stop_grace_period"]) > batch_hard
    # Deliveries: the solo pool enforces no limit; the longest is one supplier call (CALL class).
    assert _seconds(services["worker-fulfilment"]["stop_grace_period"]) > tasklimits.CALL["time_limit"]
