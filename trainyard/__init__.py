"""trainyard's Python client: ``from trainyard import Client``.

The service itself lives in ``service`` (API, store, CLI), ``worker`` and ``nncore``;
this package is the stable import path for users of the API.
"""
from service.client import ApiError, ChecksumError, Client, NoSuchCheckpoint
from service.store.status import FINISHED, JobStatus

__all__ = ["FINISHED", "ApiError", "ChecksumError", "Client", "JobStatus", "NoSuchCheckpoint"]
