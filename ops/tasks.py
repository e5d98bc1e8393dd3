from celery import shared_task
from celery.signals import before_task_publish

from marketplace import tasklimits

from . import heartbeat as heartbeats


@shared_task(**tasklimits.QUICK, ignore_result=True)
def heartbeat(queue: str) -> None:
    """Beat sends one to each queue every 30 s: the worker that runs it stamps that queue."""
    heartbeats.heartbeat_stamp(source=queue)


@before_task_publish.connect
def _beat_stamp(sender=None, **kwargs) -> None:
    """In the beat process, publishing a heartbeat is beat's own sign of life."""
    if sender == heartbeats.HEARTBEAT_TASK:
        heartbeats.heartbeat_stamp(source=heartbeats.BEAT)
