"""Name -> class registries with one resolver per family.

Every configurable family (activations, losses, optimizers, schedules, initialisers)
is a :class:`Registry`. ``resolve`` accepts a registered name, a ``{"name": ..., **kw}``
dict or an instance, and rejects anything else with a message that quotes the value
and lists the known names.
"""
from __future__ import annotations

import inspect
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Configurable:
    """Mixin for objects whose hyperparameters round-trip through JSON.

    Subclasses store their hyperparameters under the same names as their
    ``__init__`` keywords and list them in ``config_keys``.
    """

    name: str = ""
    config_keys: tuple[str, ...] = ()

    def get_config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {"name": self.name}
        for key in self.config_keys:
            cfg[key] = getattr(self, key)
        return cfg

    @classmethod
    def from_config(cls, config: dict[str, Any]):
        cfg = dict(config)
        cfg.pop("name", None)
        return cls(**cfg)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.config_keys)
        return f"{type(self).__name__}({args})"


class Registry(Generic[T]):
    """A family of named classes, e.g. all activations."""

    def __init__(self, family: str) -> None:
        self.family = family
        self._classes: dict[str, type] = {}

    def register(self, cls: type) -> type:
        name = cls.name
        if not name:
            raise TypeError(f"{cls.__name__} has no `name`")
        if name in self._classes:
            raise ValueError(f"{self.family} {name!r} is registered twice")
        self._classes[name] = cls
        return cls

    def names(self) -> list[str]:
        return sorted(self._classes)

    def __contains__(self, name: object) -> bool:
        return name in self._classes

    def get(self, name: str) -> type:
        try:
            return self._classes[name]
        except (KeyError, TypeError):
            raise ValueError(
                f"unknown {self.family} {name!r}; known: {', '.join(self.names())}"
            ) from None

    def resolve(self, value: Any) -> T:
        """Build an instance from a name, a config dict or an instance."""
        if isinstance(value, str):
            return self.get(value)()
        if isinstance(value, dict):
            if "name" not in value:
                raise ValueError(
                    f"{self.family} config {value!r} has no 'name'; known: {', '.join(self.names())}"
                )
            cls = self.get(value["name"])
            unknown = sorted(set(value) - {"name"} - _init_params(cls))
            if unknown:
                accepted = sorted(_init_params(cls))
                raise ValueError(
                    f"{self.family} {value['name']!r} has no parameter {', '.join(map(repr, unknown))}; "
                    + (f"it accepts: {', '.join(accepted)}" if accepted else "it takes no parameters"))
            try:
                return cls.from_config(value)
            except TypeError as exc:
                raise ValueError(f"{self.family} {value['name']!r}: {_clean_type_error(exc)}") from None
        if any(isinstance(value, cls) for cls in self._classes.values()):
            return value
        raise ValueError(
            f"expected a {self.family} name, a {{'name': ...}} dict or an instance, got {value!r}; "
            f"known: {', '.join(self.names())}"
        )


def _init_params(cls: type) -> set[str]:
    params = inspect.signature(cls.__init__).parameters
    return {n for n, p in params.items() if n != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def _clean_type_error(exc: TypeError) -> str:
    # "__init__() got an unexpected keyword argument 'x'" -> "unexpected parameter 'x'"
    msg = str(exc)
    if "unexpected keyword argument" in msg:
        return "unexpected parameter " + msg.rsplit("argument", 1)[1].strip()
    return msg.split("() ", 1)[-1]


class FieldError(ValueError):
    """A ValueError about one named field (hyperparameter, argument, column...).

    ``field`` names it, so that a caller can report where the problem is without
    reading the message: a spec validator joins it to the path of the object whose
    config was being resolved (``optimizer`` + ``lr`` -> ``optimizer.lr``).
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field

    def __reduce__(self) -> tuple[Any, ...]:
        # args holds only the message; pickle (multiprocessing, task queues) needs both
        return type(self), (self.field, str(self))


def check(condition: bool, message: str, field: str | None = None) -> None:
    """Raise ValueError(message) unless condition; used for validation in __init__.

    With ``field`` the error is a :class:`FieldError` about that field.
    """
    if not condition:
        raise ValueError(message) if field is None else FieldError(field, message)


def check_number(name: str, value: Any, *, low: float | None = None, high: float | None = None,
                 low_open: bool = False, high_open: bool = False, integer: bool = False) -> float:
    """Validate a numeric hyperparameter and return it as float (or int).

    Messages quote what was received: "`decay` must be >= 0, got -1". The error is a
    :class:`FieldError` whose ``field`` is ``name``.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        kind = "an integer" if integer else "a number"
        raise FieldError(name, f"`{name}` must be {kind}, got {value!r}")
    if integer and not float(value).is_integer():
        raise FieldError(name, f"`{name}` must be an integer, got {value!r}")
    if value != value or value in (float("inf"), float("-inf")):
        raise FieldError(name, f"`{name}` must be finite, got {value!r}")
    if low is not None and (value <= low if low_open else value < low):
        raise FieldError(name, f"`{name}` must be {'>' if low_open else '>='} {low:g}, got {value!r}")
    if high is not None and (value >= high if high_open else value > high):
        raise FieldError(name, f"`{name}` must be {'<' if high_open else '<='} {high:g}, got {value!r}")
    return int(value) if integer else float(value)
