"""The ``trainyard`` command line.

``trainyard train SPEC`` trains a job spec on this machine with nncore alone (no
server, no database): the offline mode of the same spec the service runs. The server
commands (``up``, ``api``, ``worker``, ``migrate``, ``token``) run the service; the
client verbs (``submit``, ``jobs``, ``metrics``, ...) talk to its API.
"""
from __future__ import annotations

import sys

import click


def _fail(message: str, code: int = 2) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 60}:{seconds % 60:02d}"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="trainyard", prog_name="trainyard")
def main() -> None:
    """trainyard: train neural networks from JSON job specs, on this machine (train)
    or as a service (up; then submit, jobs, metrics, ...)."""


# the commands register themselves on ``main``
from . import local, metrics, remote, serve  # noqa: E402,F401
