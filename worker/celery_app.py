"""The Celery application, configured from the environment.

Late acks with reject-on-worker-lost and prefetch 1: a message is acknowledged only
after its job ran, and a child killed mid-task gives its message back. Redis still
re-delivers an unacknowledged message only after its visibility timeout, and a worker
killed whole can leave one unacknowledged for that long, so correctness does not rest
on the broker: the SQL lease decides who runs a job and the reaper (worker.reaper)
recovers what the broker forgot within seconds of a lease expiring.
"""
from __future__ import annotations

import os

from celery import Celery
from celery.signals import worker_process_init

from service.shared.queue import QUEUE
from service.shared.settings import Settings

# Redis hands an unacknowledged message out again after this long; the lease and the
# reaper act far sooner, so it only needs to exceed the longest job's runtime by a bit.
REDIS_VISIBILITY_TIMEOUT_S = 6 * 3600


def make_celery(settings: Settings | None = None) -> Celery:
    settings = settings or Settings.from_env()
    app = Celery("trainyard", broker=settings.broker_url, include=["worker.tasks"])
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue=QUEUE,
        task_ignore_result=True,
        broker_connection_retry_on_startup=True,
        worker_cancel_long_running_tasks_on_connection_loss=False,
    )
    if settings.broker_url.startswith(("redis://", "rediss://")):
        app.conf.broker_transport_options = {"visibility_timeout": REDIS_VISIBILITY_TIMEOUT_S,
                                             "queue_order_strategy": "priority", "priority_steps": list(range(10))}
    elif settings.broker_url.startswith("sqla+"):
        # kombu's SQLAlchemy transport takes its polling interval from the class (its
        # transport options go to create_engine, which rejects them)
        from kombu.transport import sqlalchemy as sqla_transport

        sqla_transport.Transport.polling_interval = 0.1
    app.trainyard_settings = settings  # type: ignore[attr-defined]
    return app


celery = make_celery()


@worker_process_init.connect
def _fresh_process(**_kwargs: object) -> None:
    # a forked pool child must not reuse the parent's database connections
    from . import runner

    runner.reset_engines()
    # One BLAS thread per job by default: the pool's jobs share the cores, and for the
    # layer sizes most jobs have a threaded GEMM is slower than a single thread.
    from threadpoolctl import threadpool_limits

    threadpool_limits(int(os.environ.get("TRAINYARD_BLAS_THREADS", "1")), user_api="blas")
