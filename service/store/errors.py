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


class Forbidden(DomainError):
    """Allowed to an administrator only (asking for it reveals nothing about what exists)."""

    title = "Forbidden"


# one shape for every field problem, the spec validator's included
FieldProblem = Problem


def bad_text(value: str) -> str | None:
    """Why ``value`` cannot be stored as text, or None: PostgreSQL text cannot hold NUL,
    and neither it nor a JSON encoder an unpaired surrogate."""
    if "\x00" in value:
        return "must not contain NUL characters"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "must be valid Unicode text (it holds an unpaired surrogate)"
    return None


class Invalid(DomainError):
    """Input that cannot be accepted; ``problems`` names each field."""

    title = "Invalid request"

    def __init__(self, detail: str, problems: list[FieldProblem] | None = None) -> None:
        super().__init__(detail)
        self.problems = problems or []


class QuotaExceeded(DomainError):
    """Storing this would take the user past their quota; ``problems`` names the field."""

    title = "Quota exceeded"

    def __init__(self, detail: str, problems: list[FieldProblem]) -> None:
        super().__init__(detail)
        self.problems = problems
