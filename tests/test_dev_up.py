"""`python3 dev.py up`, the README's first command, on its embedded default: SQLite and the
filesystem broker, no server to install. It migrates, loads the demo data (whose sales are paid
from wallets and through the sandbox gateway, so the payment paths run on SQLite), starts web,
both workers and beat, prints the logins and serves the shop; SIGTERM stops it all cleanly.

The rest of the suite runs on PostgreSQL; this is what keeps the development default working
(a raw ``FOR UPDATE`` once broke its demo sales on SQLite unnoticed)."""

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
START_SECONDS = 600  # migrate, compile the messages, seven seeds: ~2-4 min on 2 cores


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.status, response.read().decode()


@pytest.mark.timeout(START_SECONDS + 120)
def test_dev_up_starts_the_whole_product_on_sqlite_and_stops_on_sigterm(tmp_path):
    port = _free_port()
    # Only what a fresh shell has: no DATABASE_URL, broker or cache URL from the test run.
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", str(tmp_path)),
        "LANG": "C.UTF-8",
        "VAR_DIR": str(tmp_path / "var"),
        "PORT": str(port),
    }
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "dev.py"), "up"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: nothing is left behind if the test fails
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + START_SECONDS
        while not any("marketplace running at" in line for line in lines):
            assert proc.poll() is None, "dev.py up exited early:\n" + "".join(lines[-60:])
            assert time.monotonic() < deadline, "dev.py up did not start in time:\n" + "".join(lines[-60:])
            time.sleep(1)
        output = "".join(lines)
        assert "Demo data ready. Logins" in output
        assert "guest orders" in output  # seed_demo_sales ran to its end (its sales were paid)
        assert (tmp_path / "var" / "db.sqlite3").exists()

        status, html = _get(f"http://127.0.0.1:{port}/")
        assert status == 200
        assert 'lang="zh-hans"' in html
        # Healthy once the workers' and beat's first heartbeats are in (a few seconds after start).
        health = ""
        for _ in range(60):
            try:
                _status, health = _get(f"http://127.0.0.1:{port}/healthz")
                break
            except urllib.error.HTTPError as exc:  # 503 until then
                health = exc.read().decode()
                time.sleep(1)
        assert health == '{"ok": true}', health

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, "".join(lines[-40:])
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        reader.join(timeout=5)
