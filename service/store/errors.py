"""Domain errors: what the API maps to status codes (the store knows no HTTP)."""
from __future__ import annotations

from nncore.spec import Problem


class DomainError(Exception):
    """Base class; ``title`` is a short summary, ``str(self)`` the detail."""

    title = "Error"


class NotFound(DomainError):
    title = "Not found"


class Conflict(DomainError):
    title = "Conflict"


# one shape for every field problem, the spec validator's included
FieldProblem = Problem


class Invalid(DomainError):
    """Input that cannot be accepted; ``problems`` names each field."""

    title = "Invalid request"

    def __init__(self, detail: str, problems: list[FieldProblem] | None = None) -> None:
        super().__init__(detail)
        self.problems = problems or []
