"""The embedded broker (marketplace/fsbroker.py): a worker never sees a message or an exchange table half written.

kombu's own filesystem transport creates the file under its final name and then writes it; a
worker listing the folder in between took the empty file, failed to decode it and stopped, and
the message was lost (`dev.py up`, eleventh session). These tests hold the writer in the middle
of writing and look at what a reader would find, with kombu's transport (the control: the bug)
and with ours, then run a writer and a reader at full speed against each other."""

import threading

from kombu import Connection, Exchange, Queue
from kombu.transport import filesystem as kombu_filesystem

from marketplace import fsbroker


def options(tmp_path) -> dict:
    folder = tmp_path / "queue"
    folder.mkdir(exist_ok=True)
    (tmp_path / "processed").mkdir(exist_ok=True)
    return {
        "data_folder_in": str(folder),
        "data_folder_out": str(folder),
        "processed_folder": str(tmp_path / "processed"),
        "control_folder": str(tmp_path / "control"),
        "store_processed": False,
    }


def visible_while_writing(tmp_path, transport, monkeypatch) -> list[tuple[str, int]]:
    """The queue's message files (name, size) a reader could take while the payload is written."""
    folder = tmp_path / "queue"
    seen: list[tuple[str, int]] = []
    real_dumps = kombu_filesystem.dumps

    def dumps_and_look(payload):
        seen.extend((p.name, p.stat().st_size) for p in folder.iterdir() if p.name.endswith(".fulfilment.msg"))
        return real_dumps(payload)

    monkeypatch.setattr(kombu_filesystem, "dumps", dumps_and_look)
    monkeypatch.setattr(fsbroker, "dumps", dumps_and_look)
    with Connection("filesystem://", transport=transport, transport_options=options(tmp_path)) as conn:
        conn.default_channel._put("fulfilment", {"body": "x" * 100})
    return seen


def test_kombus_own_writer_shows_an_empty_message_file_while_writing(tmp_path, monkeypatch):
    """The control: what made the worker stop."""
    seen = visible_while_writing(tmp_path, kombu_filesystem.Transport, monkeypatch)
    assert len(seen) == 1 and seen[0][1] == 0


def test_ours_shows_none_until_it_is_whole(tmp_path, monkeypatch):
    assert visible_while_writing(tmp_path, fsbroker.Transport, monkeypatch) == []
    names = [p.name for p in (tmp_path / "queue").iterdir()]
    assert len(names) == 1 and names[0].endswith(".fulfilment.msg")  # nothing left behind


def tables_while_binding(tmp_path, transport, monkeypatch) -> list[tuple[str, int]]:
    """The exchange table files (name, size) a publish could read while a new table is written."""
    control = tmp_path / "control"
    seen: list[tuple[str, int]] = []
    real_dumps = kombu_filesystem.dumps

    def dumps_and_look(payload):
        if control.exists():
            seen.extend((p.name, p.stat().st_size) for p in control.iterdir() if p.name.endswith(".exchange"))
        return real_dumps(payload)

    with Connection("filesystem://", transport=transport, transport_options=options(tmp_path)) as conn:
        channel = conn.default_channel
        monkeypatch.setattr(kombu_filesystem, "dumps", dumps_and_look)
        monkeypatch.setattr(fsbroker, "dumps", dumps_and_look)
        channel._queue_bind("fulfilment", "fulfilment", None, "fulfilment")
        monkeypatch.undo()
        assert [q.queue for q in channel.get_table("fulfilment")] == ["fulfilment"]
        channel._queue_bind("fulfilment", "other", None, "other")  # an existing table: kombu's update
        assert {q.queue for q in channel.get_table("fulfilment")} == {"fulfilment", "other"}
    return seen


def test_kombus_own_binding_shows_an_empty_exchange_table_while_writing(tmp_path, monkeypatch):
    """The control: a publish reading the table then fails with JSONDecodeError."""
    assert tables_while_binding(tmp_path, kombu_filesystem.Transport, monkeypatch) == [("fulfilment.exchange", 0)]


def test_ours_shows_no_table_until_it_is_whole(tmp_path, monkeypatch):
    assert tables_while_binding(tmp_path, fsbroker.Transport, monkeypatch) == []
    assert [p.name for p in (tmp_path / "control").iterdir()] == ["fulfilment.exchange"]  # nothing left behind


def test_processes_binding_at_once_keep_every_binding(tmp_path):
    """Two processes creating the table at once: kombu's second writer could truncate the
    first's; here the second finds the table made and adds its binding to it."""
    start = threading.Barrier(8)
    errors = []

    def bind(n):
        try:
            with Connection("filesystem://", transport=fsbroker.Transport, transport_options=options(tmp_path)) as conn:
                start.wait()
                conn.default_channel._queue_bind("fanned", f"key{n}", None, f"queue{n}")
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=bind, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    with Connection("filesystem://", transport=fsbroker.Transport, transport_options=options(tmp_path)) as conn:
        assert sorted(q.queue for q in conn.default_channel.get_table("fanned")) == [f"queue{n}" for n in range(8)]


def test_a_reader_at_full_speed_gets_every_message_whole(tmp_path):
    exchange = Exchange("fulfilment", type="direct")
    queue = Queue("fulfilment", exchange, routing_key="fulfilment")
    sent, received, errors = 600, [], []
    transport_options = options(tmp_path)

    def read():
        try:
            conn = Connection("filesystem://", transport=fsbroker.Transport, transport_options=transport_options)
            with conn, conn.SimpleQueue(queue) as simple:
                while len(received) < sent:
                    message = simple.get(block=True, timeout=10)
                    received.append(message.payload["n"])
                    message.ack()
        except Exception as exc:
            errors.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    with Connection("filesystem://", transport=fsbroker.Transport, transport_options=transport_options) as conn:
        producer = conn.Producer()
        for n in range(sent):
            producer.publish({"n": n}, exchange=exchange, routing_key="fulfilment", declare=[queue])
    reader.join(timeout=60)
    left = sorted(path.name for path in (tmp_path / "queue").iterdir())
    assert not errors and sorted(received) == list(range(sent)), (errors, len(received), left[:5], len(left))


def test_the_settings_use_it_for_the_embedded_broker():
    from django.conf import settings

    embedded = settings.CELERY_BROKER_URL.startswith("filesystem://")
    assert (getattr(settings, "CELERY_BROKER_TRANSPORT", None) == "marketplace.fsbroker:Transport") == embedded
