"""What the token commands share: the ``--expires`` option and how a token is shown.

``trainyard token ...`` (serve.py) works on the database, as the server's operator;
``trainyard tokens ...`` (remote.py) goes through the API with your own token. Both
show tokens as the API gives them (``TokenOut``): by id (``#12``), never a secret.
"""
from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import click

_RELATIVE = re.compile(r"(\d+)\s*([hdw])")
_UNITS = {"h": "hours", "d": "days", "w": "weeks"}


class Expiry(click.ParamType):
    """``30d``, ``12h``, ``2w`` (from now), or a date or time: ``2027-01-01`` (midnight
    UTC), ``2027-01-01T09:00:00+01:00`` (without a zone: UTC). A timedelta for the
    former, an aware datetime for the latter; either is refused if it is not in the
    next 10 years."""

    name = "30d|12h|DATE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> timedelta | datetime:
        from service.store.users import MAX_LIFETIME, expiry_problem

        if isinstance(value, (timedelta, datetime)):
            return value
        text = str(value).strip()
        m = _RELATIVE.fullmatch(text.lower())
        if m:
            delta = timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
            if not timedelta(0) < delta <= MAX_LIFETIME:
                self.fail(f"{text!r} must be more than nothing and at most {MAX_LIFETIME.days} days (10 years)",
                          param, ctx)
            return delta
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            self.fail(f"{text!r} is not a duration (30d, 12h, 2w) nor a date (2027-01-01) or time "
                      "(2027-01-01T09:00:00Z)", param, ctx)
        when = when if when.tzinfo else when.replace(tzinfo=UTC)
        problem = expiry_problem(when)
        if problem:
            self.fail(f"the expiry {problem}", param, ctx)
        return when


def expiry_time(value: timedelta | datetime | None) -> datetime | None:
    """When an ``--expires`` value ends, counted from now."""
    if isinstance(value, timedelta):
        return datetime.now(UTC) + value
    return value


def describe(token: dict[str, Any]) -> str:
    """``#12 (laptop) of alice``: how messages name a token."""
    return f"#{token['id']} ({token['name']}) of {token['user']}"


def _when(iso: str | None, none: str = "-") -> str:
    if iso is None:
        return none
    return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M")


def state(token: dict[str, Any]) -> str:
    if token.get("revoked_at"):
        return "revoked"
    return "expired" if token.get("expired") else "active"


def expiry_text(token: dict[str, Any]) -> str:
    return f"expires {_when(token['expires_at'])}" if token.get("expires_at") else "never expires"


def print_tokens(items: list[dict[str, Any]]) -> None:
    """A table of tokens (times in this machine's zone), or a line saying there are none."""
    from .remote import _table

    if not items:
        click.echo("no tokens", err=True)
        return
    _table(["id", "user", "name", "state", "created", "last used", "expires"],
           [[f"#{t['id']}", t["user"], t["name"], state(t), _when(t["created_at"]), _when(t["last_used_at"]),
             _when(t["expires_at"], "never")] for t in items], left=(1, 2, 3, 4, 5, 6))
