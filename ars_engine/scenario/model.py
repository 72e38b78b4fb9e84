"""The parsed scenario: parameters, steps, limits. Built by the loader, checked by the validator."""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ParameterError
from .secrets import Secret, hash_format_problem

if TYPE_CHECKING:
    from .steps.base import Step

DEFAULT_MAX_STEPS = 200
DEFAULT_MAX_SECONDS = 300.0
MAX_STEPS_CEILING = 10_000
MAX_SECONDS_CEILING = 3_600.0


class ParamType(enum.Enum):
    DIGITS = "digits"
    TEXT = "text"
    AMOUNT = "amount"
    SECRET = "secret"
    HASH = "hash"

    @property
    def is_secret(self) -> bool:
        """Values of this type never leave the engine in clear text."""
        return self in (ParamType.SECRET, ParamType.HASH)


@dataclass(frozen=True, slots=True)
class Loc:
    """Where something was written (1-based)."""

    line: int
    column: int


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    type: ParamType
    required: bool
    default: str | int | None
    pattern: re.Pattern[str] | None
    description: str
    loc: Loc

    def bind(self, raw: object | None) -> str | int | Secret:
        """Check and convert a given value; errors name the parameter, never its value."""
        if raw is None:
            if self.required:
                raise ParameterError(f"parameter '{self.name}' is required ({self.type.value})")
            raw = self.default if self.default is not None else ""
        if isinstance(raw, Secret):
            raw = raw.reveal()
        if self.type is ParamType.AMOUNT:
            text = str(raw).replace(",", "").strip()
            if not (text.isascii() and text.isdigit()):
                raise ParameterError(f"parameter '{self.name}' must be a whole number of won")
            value: str | int = int(text)
        else:
            value = str(raw)
        text = str(value)
        if self.type in (ParamType.DIGITS, ParamType.SECRET) and text and not (
                text.isascii() and text.isdigit()):
            raise ParameterError(f"parameter '{self.name}' must contain only digits 0-9")
        if self.type is ParamType.HASH:
            problem = hash_format_problem(text)
            if problem:
                raise ParameterError(f"parameter '{self.name}' is not a salted hash: {problem}")
        if self.pattern is not None and text and not self.pattern.fullmatch(text):
            shown = "" if self.type.is_secret else f" (pattern {self.pattern.pattern})"
            raise ParameterError(f"parameter '{self.name}' does not match its pattern{shown}")
        return Secret(text) if self.type.is_secret else value


@dataclass(frozen=True, slots=True)
class GatherDefaults:
    first_digit_timeout: float | None = None
    inter_digit_timeout: float | None = None
    total_timeout: float | None = None
    finish_key: str | None = None
    barge_in: bool | None = None


@dataclass(slots=True)
class Scenario:
    """A loaded, validated scenario. ``steps`` keeps file order; ``start`` is the first step."""

    name: str
    path: str
    title: str
    description: str
    params: dict[str, Param]
    steps: dict[str, Step]
    start: str
    on_hangup: str | None
    max_steps: int = DEFAULT_MAX_STEPS
    max_seconds: float = DEFAULT_MAX_SECONDS
    gather_defaults: GatherDefaults = field(default_factory=GatherDefaults)
    base_dir: Path | None = None
    source_sha256: str = ""

    def bind_params(self, given: Mapping[str, object]) -> dict[str, object]:
        """The call's variables from the given parameters; raises ParameterError naming a
        missing, unknown or malformed parameter."""
        unknown = sorted(set(given) - set(self.params))
        if unknown:
            raise ParameterError(
                f"unknown parameter(s) {', '.join(unknown)} for scenario '{self.name}'; declared: "
                + (", ".join(self.params) or "none"))
        return {name: p.bind(given.get(name)) for name, p in self.params.items()}

    @property
    def secret_params(self) -> frozenset[str]:
        return frozenset(n for n, p in self.params.items() if p.type.is_secret)
