#!/usr/bin/env python3
"""Developer entry point: one script, standard library only, Python 3.11+.

    python3 dev.py up                  Run the whole marketplace locally.
    python3 dev.py test [pytest args]  Run the test suite.
    python3 dev.py lint [ruff args]    Run `ruff check .`, `ruff format --check .`, `lint-imports`
                                       (the layer contracts in pyproject.toml), then `mypy`
                                       (services, selectors and gateways, [tool.mypy]); fails if
                                       any of them fails.

Every command first makes sure the project's virtualenv (.venv) exists and holds the project
with its dev dependencies: `pip install -e ".[dev]"` runs again only when pyproject.toml has
changed since the last install (a hash is kept in var/pyproject.sha256).

`up` compiles translations (only when gettext's msgfmt is installed; the compiled .mo files
are committed anyway), applies migrations, loads the demo data (`manage.py seed_demo` prints
the demo logins), then runs four processes until Ctrl-C: the web server
(http://127.0.0.1:$PORT/, PORT defaults to 8000), two Celery workers (deliveries; the other
queues) and Celery beat. With no environment set this needs no server at all (SQLite and a
folder broker under var/); set
DATABASE_URL / CELERY_BROKER_URL / REDIS_CACHE_URL to use PostgreSQL and Redis instead.
If one process dies, the others are stopped and the exit code is non-zero.

`test` uses PostgreSQL on 127.0.0.1:5432 and Redis on 127.0.0.1:6379 when they answer, by
setting DATABASE_URL=postgres://postgres@127.0.0.1:5432/marketplace and
TEST_REDIS_URL=redis://127.0.0.1:6379/15 unless those are already set. Under CI=true both
servers are required. Browser tests use Debian's /usr/bin/chromium: no `playwright install`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

if sys.version_info < (3, 11):  # noqa: UP036 (the script may be started by an older python3)
    sys.exit("dev.py needs Python 3.11 or newer")

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
VAR = Path(os.environ.get("VAR_DIR") or ROOT / "var")
STAMP = ROOT / "var" / "pyproject.sha256"
IS_WINDOWS = os.name == "nt"
PYTHON = VENV / ("Scripts/python.exe" if IS_WINDOWS else "bin/python")

TEST_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/marketplace"
TEST_REDIS_URL = "redis://127.0.0.1:6379/15"


def log(message: str) -> None:
    print(f"[dev] {message}", flush=True)


def run(*args: str | Path, env: dict[str, str] | None = None) -> None:
    """Run a command in the project root; stop dev.py if it fails."""
    result = subprocess.run([str(a) for a in args], cwd=ROOT, env=env)
    if result.returncode != 0:
        log(f"failed (exit {result.returncode}): {' '.join(str(a) for a in args)}")
        sys.exit(result.returncode or 1)


def manage(*args: str, env: dict[str, str] | None = None) -> None:
    run(PYTHON, "manage.py", *args, env=env)


def ensure_venv() -> None:
    """Create .venv if needed and (re)install the project when pyproject.toml changed."""
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if not PYTHON.exists():
        log(f"creating virtualenv in {VENV}")
        run(sys.executable, "-m", "venv", VENV)
        STAMP.unlink(missing_ok=True)  # a new venv is empty whatever the stamp says
    if STAMP.exists() and STAMP.read_text().strip() == digest:
        return
    log("installing the project and its dev dependencies (pyproject.toml changed)")
    run(PYTHON, "-m", "pip", "install", "--disable-pip-version-check", "-e", ".[dev]")
    STAMP.parent.mkdir(parents=True, exist_ok=True)
    STAMP.write_text(digest + "\n")


def compile_messages(env: dict[str, str] | None = None) -> None:
    """Compile .po files when gettext is installed; committed .mo files serve otherwise."""
    if shutil.which("msgfmt"):
        manage("compilemessages", "--ignore", ".venv", "--ignore", "var", "-v", "0", env=env)


def answers(host: str, port: int, timeout: float = 1.0) -> bool:
    """True if something accepts a TCP connection on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


# --- dev.py up -----------------------------------------------------------------------------


def start(name: str, *args: str | Path, env: dict[str, str]) -> tuple[str, subprocess.Popen]:
    # Each child gets its own session, so a Ctrl-C in the terminal reaches only dev.py,
    # which forwards it once (a second SIGINT would make Celery shut down cold).
    proc = subprocess.Popen([str(a) for a in args], cwd=ROOT, env=env, start_new_session=not IS_WINDOWS)
    log(f"started {name} (pid {proc.pid})")
    return name, proc


def stop_all(procs: list[tuple[str, subprocess.Popen]], signum: int, grace: float = 20.0) -> None:
    for _name, proc in procs:
        if proc.poll() is None:
            proc.send_signal(signum)
    deadline = time.monotonic() + grace
    for name, proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log(f"{name} did not stop in {grace:.0f}s; killing it")
            proc.kill()
            proc.wait()
    if not IS_WINDOWS:
        # Leftovers in a child's process group (runserver's reloader child, pool workers).
        for _name, proc in procs:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)


def cmd_up() -> int:
    port = int(os.environ.get("PORT", "8000"))
    if answers("127.0.0.1", port):
        log(f"port {port} is already in use; stop what runs there or set PORT=...")
        return 1
    ensure_venv()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # Links in emails (SLA reminders, guest links) point at this server unless set otherwise.
    env.setdefault("SITE_URL", f"http://127.0.0.1:{port}")
    compile_messages(env)
    manage("migrate", "--noinput", env=env)
    manage("seed_demo", env=env)
    manage("seed_demo_agents", env=env)
    manage("seed_demo_sales", env=env)
    manage("seed_demo_aftersales", env=env)
    manage("seed_demo_compliance", env=env)
    manage("seed_demo_rights", env=env)  # approved authorisation reviews for the demo products
    manage("seed_demo_legal", env=env)
    manage("trust_compute", env=env)  # the trust centre's figures over the demo data (then hourly by beat)

    VAR.mkdir(parents=True, exist_ok=True)
    celery = (PYTHON, "-m", "celery", "-A", "marketplace")
    # Production's two workers (docker-compose.yml): deliveries on their own, solo pool (one
    # process here), and the other queues (notifications, callbacks, reports, default), prefork.
    quiet = ("--without-gossip", "--without-mingle", "--without-heartbeat")  # nothing uses remote control or events
    procs = [
        start("web", PYTHON, "manage.py", "runserver", f"127.0.0.1:{port}", env=env),
        start(
            "worker-fulfilment",
            *celery,
            "worker",
            "-l",
            "info",
            "-Q",
            "fulfilment",
            "--pool",
            "solo",
            "-n",
            "fulfilment@%h",
            *quiet,
            env=env,
        ),
        start(
            "worker",
            *celery,
            "worker",
            "-l",
            "info",
            "-Q",
            "notifications,callbacks,reports,default",
            "--concurrency",
            "2",
            "--pool",
            "prefork",
            "-n",
            "worker@%h",
            *quiet,
            env=env,
        ),
        start("beat", *celery, "beat", "-l", "info", "--schedule", VAR / "celerybeat-schedule", env=env),
    ]

    requested: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        requested.append(signum)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    url = f"http://127.0.0.1:{port}/"
    announced = False
    while not requested:
        dead = [(name, proc) for name, proc in procs if proc.poll() is not None]
        if dead:
            name, proc = dead[0]
            log(f"{name} exited with code {proc.returncode}; stopping the others")
            stop_all(procs, signal.SIGTERM)
            code = proc.returncode
            return 128 - code if code < 0 else code or 1  # killed by signal N: 128+N, like a shell
        if not announced and answers("127.0.0.1", port, timeout=0.2):
            announced = True
            log(f"marketplace running at {url}  (Ctrl-C to stop)")
        time.sleep(0.5)

    log("stopping web, worker and beat")
    stop_all(procs, requested[0])
    return 0


# --- dev.py test ---------------------------------------------------------------------------


def test_environment() -> dict[str, str]:
    """The environment for pytest: local PostgreSQL and Redis when they answer."""
    env = dict(os.environ)
    ci = env.get("CI", "").strip().lower() == "true"
    missing = []
    if not env.get("DATABASE_URL"):
        if answers("127.0.0.1", 5432):
            env["DATABASE_URL"] = TEST_DATABASE_URL
        else:
            missing.append("PostgreSQL on 127.0.0.1:5432")
    if not env.get("TEST_REDIS_URL"):
        if answers("127.0.0.1", 6379):
            env["TEST_REDIS_URL"] = TEST_REDIS_URL
        else:
            missing.append("Redis on 127.0.0.1:6379")
    if missing and ci:
        print(
            f"error: CI=true but nothing answers: {', '.join(missing)}.\n"
            "Start the servers (see .ci/run) or set DATABASE_URL / TEST_REDIS_URL.",
            file=sys.stderr,
        )
        sys.exit(2)
    log(f"DATABASE_URL={env.get('DATABASE_URL') or '(unset: SQLite)'}")
    log(f"TEST_REDIS_URL={env.get('TEST_REDIS_URL') or '(unset: tests that need Redis skip)'}")
    return env


def cmd_test(args: list[str]) -> int:
    ensure_venv()
    env = test_environment()
    compile_messages(env)
    code = subprocess.run([str(PYTHON), "-m", "pytest", *args], cwd=ROOT, env=env).returncode
    if code == 5:
        log("pytest collected no tests; that counts as a failure")
        return 1
    return code


def cmd_lint(args: list[str]) -> int:
    ensure_venv()
    ruff = subprocess.run([str(PYTHON), "-m", "ruff", "check", ".", *args], cwd=ROOT).returncode
    # Formatting too (`ruff format .` fixes it), so no file drifts from the style the others keep.
    layout = subprocess.run([str(PYTHON), "-m", "ruff", "format", "--check", "."], cwd=ROOT).returncode
    # All run, so one report shows every problem; the exit code is non-zero if any failed.
    lint_imports = VENV / ("Scripts/lint-imports.exe" if IS_WINDOWS else "bin/lint-imports")
    contracts = subprocess.run([str(lint_imports), "--no-cache"], cwd=ROOT).returncode
    # The files and options are in pyproject.toml; the cache (.mypy_cache) makes reruns quick.
    types = subprocess.run([str(PYTHON), "-m", "mypy"], cwd=ROOT).returncode
    if ruff or layout or contracts or types:
        log(
            f"lint failed: ruff check exited {ruff}, ruff format --check exited {layout}, "
            f"lint-imports exited {contracts}, mypy exited {types}"
        )
    return ruff or layout or contracts or types


def main(argv: list[str]) -> int:
    command, args = (argv[0], argv[1:]) if argv else ("", [])
    if command == "up" and not args:
        return cmd_up()
    if command == "test":
        return cmd_test(args)
    if command == "lint":
        return cmd_lint(args)
    print(__doc__.strip(), file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
