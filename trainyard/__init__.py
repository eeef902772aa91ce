"""trainyard: the Python client (``from trainyard import Client``) and, in ``trainyard.cli``
and ``trainyard.server``, the composition root that puts ``service`` and ``worker`` together.

Importing this package loads only the client (requests, the job statuses): scripts that
talk to a server need neither Flask, SQLAlchemy nor Celery installed to start quickly.
"""
from service.store.status import FINISHED, JobStatus

from .client import ApiError, ChecksumError, Client, NoSuchCheckpoint

__all__ = ["FINISHED", "ApiError", "ChecksumError", "Client", "JobStatus", "NoSuchCheckpoint"]
