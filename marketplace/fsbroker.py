"""kombu's filesystem transport (the embedded broker of ``dev.py up`` and of the tests' real
worker: a folder, no server), with every message written whole before a reader can see it.

kombu 5.7's writer creates the message file under its final name, then writes it. A worker
listing the folder in between takes the still-empty file, fails to decode it and stops
("Unrecoverable error: JSONDecodeError"), and the message is gone: `dev.py up`'s fulfilment
worker died this way once (eleventh session). Here the message is written under a name no reader
looks for and then renamed to its final name, which within one folder is atomic: a reader finds
a whole message or none. Everything else is kombu's (settings.py: CELERY_BROKER_TRANSPORT).
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


class Transport(filesystem.Transport):
    Channel = Channel
