"""Celery workers: they claim jobs with a lease in SQL, train them with nncore (on MPI
ranks when the spec asks), and write metrics, checkpoints and events back. Never
imports Flask or the API."""
