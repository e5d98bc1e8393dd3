from celery import shared_task

from . import services


@shared_task(acks_late=True, reject_on_worker_lost=True)
def import_batch(batch_id: int) -> str:
    return services.batch_import_run(batch_id=batch_id)
