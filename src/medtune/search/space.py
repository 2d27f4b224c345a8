"""A search space written in Hydra's override grammar, turned into Optuna distributions.

    adapter.r=choice(4,8,16)                        searched: categorical
    adapter.alpha=range(8,128,step=8)               searched: integers 8, 16, ..., 120 (the stop is excluded)
    trainer.learning_rate=tag(log, interval(1e-5, 1e-2))   searched: float on a log scale (tag int: integers)
    tuning=lora,qlora                               an outer axis: one study per value (each tuned on its own)
    trainer.max_steps=200                           fixed for every trial

A plain comma list is an outer axis because the question a search answers is per method ("which learning rate
suits QLoRA"), and a method with its own best setting must not be judged at another method's. Write
`tuning=choice(lora,qlora)` to let the sampler choose the method as one more parameter instead.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from medtune.errors import ConfigError

TAGS = ("log", "int")  # the tags a searched expression may carry
PRIMITIVE = (bool, int, float, str)  # what Optuna stores as a categorical value as it is


@dataclass
class Space:
    """The parsed command line: fixed overrides, outer axes (one study per combination), searched distributions."""

    fixed: list[str] = field(default_factory=list)
    axes: dict[str, list[str]] = field(default_factory=dict)
    distributions: dict[str, BaseDistribution] = field(default_factory=dict)
    choice_text: dict[str, dict[Any, str]] = field(default_factory=dict)  # categorical value → its override text

    def combinations(self) -> list[list[str]]:
        """Each outer combination's overrides (one empty combination without axes)."""
        keys = list(self.axes)
        return [
            [f"{k}={v}" for k, v in zip(keys, values, strict=True)] for values in itertools.product(*self.axes.values())
        ]

    def overrides(self, params: dict[str, Any]) -> list[str]:
        """A trial's sampled parameters as overrides, in the grammar the user wrote them in."""
        return [
            f"{key}={self.choice_text.get(key, {}).get(value, _number_text(value))}" for key, value in params.items()
        ]

    def example(self) -> dict[str, Any]:
        """One value of each searched key (the first choice, the lower bound): a trial config to check up front."""
        return {
            key: dist.choices[0] if isinstance(dist, CategoricalDistribution) else dist.low
            for key, dist in self.distributions.items()
        }

    def grid(self) -> dict[str, list[Any]]:
        """Every searched value, for the grid sampler (an interval has no finite grid)."""
        grid = {}
        for key, dist in self.distributions.items():
            if isinstance(dist, CategoricalDistribution):
                grid[key] = list(dist.choices)
            elif getattr(dist, "step", None) is not None:
                grid[key] = _steps(dist)
            else:
                raise ConfigError(
                    f"hydra.sweeper.sampler=grid needs finite values: {key} is an interval; use choice(...) or "
                    "range(...), or another sampler."
                )
        return grid


def parse_space(arguments: list[str]) -> Space:
    """Split the multirun's overrides; an expression that does not parse or cannot be searched fails on one line."""
    from medtune.cli import parse_override

    space = Space()
    for argument in arguments:
        try:
            override = parse_override(argument)
        except ConfigError as err:
            raise ConfigError(f"search space: {err}") from None
        key = override.get_key_element()
        if not override.is_sweep_override():
            space.fixed.append(f"{key}={override.get_value_element_as_str()}")
            continue
        sweep = override.value()
        if getattr(sweep, "simple_form", False):  # a,b,c: an outer axis
            space.axes[key] = list(override.sweep_string_iterator())
            continue
        space.distributions[key] = _distribution(argument, override, sweep, space)
    return space


def _distribution(argument: str, override: Any, sweep: Any, space: Space) -> BaseDistribution:
    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep

    tags = set(sweep.tags)
    if unknown := tags - set(TAGS):
        raise ConfigError(
            f"search space: {argument!r} has tag(s) {', '.join(sorted(unknown))}; known: {', '.join(TAGS)}."
        )
    log = "log" in tags
    if isinstance(sweep, ChoiceSweep):
        if tags:
            raise ConfigError(f"search space: {argument!r}: choice(...) takes no tags (its values are taken as given).")
        texts = list(override.sweep_string_iterator())
        values = [v if isinstance(v, PRIMITIVE) else text for v, text in zip(sweep.list, texts, strict=True)]
        space.choice_text[override.get_key_element()] = dict(zip(values, texts, strict=True))
        return CategoricalDistribution(values)
    if isinstance(sweep, RangeSweep):
        start, stop, step = sweep.start, sweep.stop, sweep.step
        last = start + step * ((stop - start - (1 if isinstance(step, int) else 1e-12)) // step)
        if step <= 0 or last < start:
            raise ConfigError(f"search space: {argument!r} holds no values (range stops before it starts).")
        if log and step != 1:
            raise ConfigError(f"search space: {argument!r}: a log scale takes range(...) with step 1 only.")
        if all(isinstance(v, int) for v in (start, stop, step)):
            return IntDistribution(int(start), int(last), log=log, step=int(step))
        return FloatDistribution(float(start), float(last), step=None if log else float(step), log=log)
    if isinstance(sweep, IntervalSweep):
        low, high = sweep.start, sweep.end
        if not low < high:
            raise ConfigError(f"search space: {argument!r}: interval(low, high) needs low < high.")
        if log and low <= 0:
            raise ConfigError(f"search space: {argument!r}: a log scale needs a positive lower bound.")
        if "int" in tags:
            return IntDistribution(int(low), int(high), log=log)
        return FloatDistribution(float(low), float(high), log=log)
    raise ConfigError(f"search space: {argument!r} is not choice(...), range(...) or interval(...).")


def _steps(dist: Any) -> list[Any]:
    count = round((dist.high - dist.low) / dist.step) + 1
    return [dist.low + i * dist.step for i in range(count)]


def _number_text(value: Any) -> str:
    """A sampled number as Hydra reads it back (repr keeps every digit of a float)."""
    return repr(value) if isinstance(value, float) else str(value)
