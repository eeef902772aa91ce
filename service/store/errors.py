"""Domain errors: what the API maps to status codes (the store knows no HTTP)."""
from __future__ import annotations

from dataclasses import dataclass


class DomainError(Exception):
    """Base class; ``title`` is a short summary, ``str(self)`` the detail."""

    title = "Error"


class NotFound(DomainError):
    title = "Not found"


class Conflict(DomainError):
    title = "Conflict"


@dataclass(frozen=True)
class FieldProblem:
    path: str
    message: str

    @property
    def pointer(self) -> str:
        if not self.path:
            return ""
        parts = self.path.replace("[", ".").replace("]", "").split(".")
        return "/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts if p)


class Invalid(DomainError):
    """Input that cannot be accepted; ``problems`` names each field."""

    title = "Invalid request"

    def __init__(self, detail: str, problems: list[FieldProblem] | None = None) -> None:
        super().__init__(detail)
        self.problems = problems or []
