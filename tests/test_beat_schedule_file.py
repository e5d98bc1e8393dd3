"""Beat's schedule file in production: kept across restarts, on beat's own volume.

Celery beat remembers each periodic task's last run in its schedule file. Kept, a daily or monthly
task whose time passed while beat was down (a deploy at 10:30, a restart on the 1st at 02:00) runs
as soon as beat is back; lost, beat starts counting from "now" and that run is skipped until the
next day (the bills' reconciliation) or month (the regulator report). docker-compose.yml kept it
in the container's /tmp, forgotten at every recreate; now it is on a volume of beat's own.
"""

from datetime import timedelta

import yaml

from marketplace.celery import app
from tests.test_deploy_check import BASE_DIR


def compose() -> dict:
    return yaml.safe_load((BASE_DIR / "docker-compose.yml").read_text())


def test_beats_schedule_file_is_on_a_volume_of_its_own():
    services = compose()["services"]
    command = services["beat"]["command"]
    path = command[command.index("--schedule") + 1]
    folder = path.rsplit("/", 1)[0]
    mounts = {m.split(":")[1]: m.split(":")[0] for m in services["beat"]["volumes"]}
    assert folder in mounts, f"{path} is not on a volume: lost when the container is recreated"
    volume = mounts[folder]
    assert volume in compose()["volumes"]
    # Beat's alone: not the appdata volume the other containers (and hosts, over NFS) share.
    for name, service in services.items():
        if name != "beat":
            assert not any(m.split(":")[0] == volume for m in service.get("volumes", [])), name
    assert not folder.startswith(("/tmp", "/app/var"))
    # The image makes the folder the app user's, so a new volume is writable by beat.
    dockerfile = (BASE_DIR / "Dockerfile").read_text()
    assert f"mkdir -p /app/var {folder}" in dockerfile and f"chown app:app /app/var {folder}" in dockerfile


def test_a_kept_schedule_file_runs_a_daily_task_missed_while_beat_was_down(tmp_path):
    from celery.beat import PersistentScheduler

    name = "payments-bills-reconcile"  # crontab(hour=10, minute=30)
    path = str(tmp_path / "celerybeat-schedule")
    first = PersistentScheduler(app=app, schedule_filename=path)
    # It last ran two days ago; beat was then down (or restarted) through yesterday's 10:30.
    first.schedule[name].last_run_at = app.now() - timedelta(days=2)
    first.sync()
    first.close()

    kept = PersistentScheduler(app=app, schedule_filename=path)
    entry = kept.schedule[name]
    assert entry.is_due().is_due, "with the file kept, the missed run happens at once"
    kept.close()

    fresh = PersistentScheduler(app=app, schedule_filename=str(tmp_path / "new-schedule"))
    entry = fresh.schedule[name]
    assert not entry.is_due().is_due  # a new file: nothing until the next 10:30 (the run is lost)
    fresh.close()
