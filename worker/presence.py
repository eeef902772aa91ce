"""The worker's entry in the registry (service.store.workers): registered at start,
a heartbeat every few seconds, marked stopped on a clean shutdown. A worker that dies
simply stops beating and shows as lost."""
from __future__ import annotations

import logging
import os
import socket
import threading
from importlib.metadata import version

from service.shared.settings import Settings
from service.store import workers as registry

from .runner import sessions_for

log = logging.getLogger(__name__)

NAME_VAR = "TRAINYARD_WORKER_NAME"


def worker_name() -> str:
    """This worker's name; set in the environment by the main process, so its forked
    pool processes name the leases they take after it."""
    name = os.environ.get(NAME_VAR)
    if not name:
        name = os.environ[NAME_VAR] = f"{socket.gethostname()}:{os.getpid()}"
    return name


class Presence(threading.Thread):
    def __init__(self, settings: Settings, concurrency: int, queues: str,
                 every_s: float = registry.HEARTBEAT_S) -> None:
        super().__init__(daemon=True, name="presence")
        self.settings, self.every_s = settings, every_s
        self.name_ = worker_name()
        self.sessions = sessions_for(settings.database_url)
        with self.sessions() as s:
            registry.register(s, self.name_, hostname=socket.gethostname(), pid=os.getpid(),
                              concurrency=concurrency, queues=queues,
                              broker=settings.broker_url.split(":", 1)[0], version=version("trainyard"))
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(self.every_s):
            try:
                with self.sessions() as s:
                    registry.heartbeat(s, self.name_)
            except Exception:  # the database is down: the next beat tries again
                log.warning("worker heartbeat failed", exc_info=True)

    def stop(self) -> None:
        self._halt.set()
        try:
            with self.sessions() as s:
                registry.mark_stopped(s, self.name_)
        except Exception:
            log.warning("could not mark worker %s stopped", self.name_, exc_info=True)
