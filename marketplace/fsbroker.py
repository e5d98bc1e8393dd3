"""kombu's filesystem transport (the embedded broker of ``dev.py up`` and of the tests' real
worker: a folder, no server), with every message written whole before a reader can see it.

kombu 5.7's writer creates the message file under its final name, then writes it. A worker
listing the folder in between takes the still-empty file, fails to decode it and stops
("Unrecoverable error: JSONDecodeError"), and the message is gone: `dev.py up`'s fulfilment
worker died this way once (eleventh session). Here the message is written under a name no reader
looks for and then renamed to its final name, which within one folder is atomic: a reader finds
a whole message or none.

The exchange's table (which queues a routing key reaches) had the same hole: kombu creates the
table file empty, then locks and writes it, so a publish looking the table up in between read an
empty file and failed with JSONDecodeError (the full suite caught it once, twelfth session); two
processes binding at once could also each create it and the second's write drop the first's
binding; and kombu records a binding in a state shared by a process's threads before writing its
file, so a thread publishing in between found no table and the message was dropped. Here the
file comes first (``queue_bind``), and a new table is written under a name no one reads and
linked to its final name only if no other process has made it meanwhile (``os.link`` refuses an
existing name); otherwise kombu's locked update adds the binding. Everything else is kombu's
(settings.py: CELERY_BROKER_TRANSPORT).
"""

from __future__ import annotations

import contextlib
import os
import uuid
from time import monotonic

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps


class Channel(filesystem.Channel):
    def _put(self, queue, payload, **kwargs):
        """Put ``payload`` onto ``queue``: kombu's file name, written whole, then renamed."""
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        # No "." in it: a reader matches "<anything>.<queue>.msg" on what follows the first ".".
        partial = os.path.join(self.data_folder_out, f"writing-{uuid.uuid4().hex}")
        try:
            with open(partial, "wb", buffering=0) as f:
                f.write(str_to_bytes(dumps(payload)))
            os.replace(partial, final)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.remove(partial)
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc

    def queue_bind(self, queue, exchange=None, routing_key="", arguments=None, **kwargs):
        """The table file first, then kombu's record of the binding. kombu records it in a state
        shared by the process's threads and skips a binding already recorded, so another thread
        (runserver's, a test's reader) publishing between the record and the file's write found
        no table and the message was routed nowhere: dropped."""
        name = exchange or "amq.direct"
        if not self.state.has_binding(queue, name, routing_key):
            self._queue_bind(name, *self.typeof(name).prepare_bind(queue, name, routing_key, arguments))
        super().queue_bind(queue, exchange, routing_key, arguments, **kwargs)

    def _queue_bind(self, exchange, routing_key, pattern, queue):
        """Bind ``queue`` in ``exchange``'s table: a new table appears whole; an existing one is
        updated by kombu, under its exclusive lock (readers take a shared one)."""
        file = self._exchange_file(exchange)
        if not file.exists():
            self.control_folder.mkdir(exist_ok=True)
            binding = filesystem.exchange_queue_t(routing_key or "", pattern or "", queue or "")
            partial = self.control_folder / f"writing-{uuid.uuid4().hex}"  # never "<name>.exchange"
            try:
                partial.write_bytes(str_to_bytes(dumps([binding])))
                try:
                    os.link(partial, file)
                    return
                except FileExistsError:
                    pass  # another process made the table meanwhile: add to it below
                finally:
                    partial.unlink(missing_ok=True)
            except OSError as exc:
                raise ChannelError(f"Cannot open {file}") from exc
        super()._queue_bind(exchange, routing_key, pattern, queue)


class Transport(filesystem.Transport):
    Channel = Channel
