"""Allowed values of numeric config keys, declared once beside each schema field (`ranged(default, POSITIVE)`),
and the one walk that checks a typed config against them before any model loads."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from medtune.errors import ConfigError

RANGE = "range"  # dataclass field metadata key: the values a numeric key may take


@dataclass(frozen=True)
class Range:
    """Allowed values of a numeric key, declared beside its field and checked by `check_ranges` at composition."""

    low: float
    high: float | None = None
    high_open: bool = False
    low_open: bool = False

    def __contains__(self, value: float) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        if self.high is None:
            return above
        return above and (value < self.high if self.high_open else value <= self.high)

    def __str__(self) -> str:
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        return f"{'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"


def ranged(default: Any, allowed: Range) -> Any:
    """A dataclass field whose value must lie in `allowed` (None, where the type allows it, always passes)."""
    return field(default=default, metadata={RANGE: allowed})


POSITIVE = Range(0, low_open=True)
AT_LEAST_1 = Range(1)
NON_NEGATIVE = Range(0)
FRACTION = Range(0, 1, high_open=True)
UNIT = Range(0, 1)


def check_ranges(cfg: Any, prefix: str = "") -> None:
    """Every field declared with `ranged` holds a value in its range: one walk over the schema, before any model
    loads (`adapter.r=0` would otherwise fail deep inside peft)."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            check_ranges(value, f"{key}.")
        elif RANGE in f.metadata and value is not None and value not in f.metadata[RANGE]:
            raise ConfigError(f"{key}={value} is out of range: allowed {f.metadata[RANGE]}.")
