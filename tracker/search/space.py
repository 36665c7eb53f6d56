"""What a sweep searches: a grid (every combination) or a space of distributions drawn from with a seed.

A sweep's trials are a pure function of what it searches: trial ``n`` of a grid is the ``n``-th combination,
and trial ``n`` of a space is drawn from a random generator seeded with ``(seed, n)`` alone. So the same
arguments give the same trials in every process, whatever crashed, and ``n_trials`` can grow later
without changing the trials already drawn.

Example:
    >>> plan(grid={"units": [4, 8], "lr": [1e-3, 1e-2]}).params[1]
    {'units': 4, 'lr': 0.01}
    >>> p = plan(space={"lr": loguniform(1e-4, 1e-1), "units": randint(4, 65)}, n_trials=3, seed=0)
    >>> p.params == plan(space={"lr": loguniform(1e-4, 1e-1), "units": randint(4, 65)}, n_trials=3, seed=0).params
    True
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np


class Distribution:
    """A distribution of one parameter: `choice`, `uniform`, `loguniform` or `randint`."""

    kind: ClassVar[str]

    def draw(self, rng: np.random.Generator) -> Any:
        raise NotImplementedError

    def to_json(self) -> dict[str, Any]:
        raise NotImplementedError


@dataclass(frozen=True)
class Choice(Distribution):
    kind: ClassVar[str] = "choice"
    values: tuple[Any, ...]

    def draw(self, rng: np.random.Generator) -> Any:
        return self.values[int(rng.integers(len(self.values)))]

    def to_json(self) -> dict[str, Any]:
        return {"distribution": self.kind, "values": list(self.values)}


@dataclass(frozen=True)
class Uniform(Distribution):
    kind: ClassVar[str] = "uniform"
    low: float
    high: float

    def draw(self, rng: np.random.Generator) -> float:
        return float(rng.uniform(self.low, self.high))

    def to_json(self) -> dict[str, Any]:
        return {"distribution": self.kind, "low": self.low, "high": self.high}


@dataclass(frozen=True)
class LogUniform(Uniform):
    kind: ClassVar[str] = "loguniform"

    def draw(self, rng: np.random.Generator) -> float:
        return float(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))


@dataclass(frozen=True)
class RandInt(Distribution):
    kind: ClassVar[str] = "randint"
    low: int
    high: int

    def draw(self, rng: np.random.Generator) -> int:
        return int(rng.integers(self.low, self.high))

    def to_json(self) -> dict[str, Any]:
        return {"distribution": self.kind, "low": self.low, "high": self.high}


def choice(values: Sequence[Any]) -> Choice:
    """One of ``values``, each as likely: ``choice(["relu", "tanh"])``. Values must be JSON-able."""
    values = tuple(values) if isinstance(values, (list, tuple)) else values
    if not isinstance(values, tuple) or not values:
        raise ValueError(f"Invalid value for choice. Received: {values!r}. Expected a non-empty list of values, e.g. choice(['relu', 'tanh']).")
    _require_json(values, "choice")
    return Choice(values)


def uniform(low: float, high: float) -> Uniform:
    """A float drawn evenly from ``[low, high)``: ``uniform(0.0, 0.5)`` for a dropout rate."""
    _require_range("uniform", low, high)
    return Uniform(float(low), float(high))


def loguniform(low: float, high: float) -> LogUniform:
    """A float whose logarithm is drawn evenly, from ``low`` to ``high`` (both > 0): ``loguniform(1e-4, 1e-1)`` for a learning rate."""
    _require_range("loguniform", low, high)
    if low <= 0:
        raise ValueError(f"Invalid value for loguniform. Received: low={low!r}. Expected low > 0 (a logarithm is taken).")
    return LogUniform(float(low), float(high))


def randint(low: int, high: int) -> RandInt:
    """An integer drawn evenly from ``low`` (included) to ``high`` (excluded), as numpy and Ray Tune count: ``randint(4, 65)``."""
    if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in (low, high)) or not low < high:
        raise ValueError(f"Invalid value for randint. Received: low={low!r}, high={high!r}. Expected integers with low < high.")
    return RandInt(int(low), int(high))


_MAKERS = {"choice": lambda d: choice(d["values"]), "uniform": lambda d: uniform(d["low"], d["high"]),
           "loguniform": lambda d: loguniform(d["low"], d["high"]), "randint": lambda d: randint(d["low"], d["high"])}


@dataclass(frozen=True)
class Plan:
    """A sweep's trials, settled before any trains: ``kind`` (``grid`` or ``random``), the JSON ``spec``
    recorded with the sweep, and each trial's parameters in trial-number order."""

    kind: str
    spec: dict[str, Any]
    params: list[dict[str, Any]]


def plan(
    *, grid: Mapping[str, Sequence[Any]] | None = None, space: Mapping[str, Any] | None = None,
    n_trials: int | None = None, seed: int = 0,
) -> Plan:
    """The trials of a grid or a space, or a `ValueError` naming what is wrong with the arguments.

    A grid is the full product of its lists, the first key varying slowest and the last fastest
    (``itertools.product`` order). A space maps each key to a `Distribution`, a list (a `choice`), or
    the JSON form of one (``{"distribution": "loguniform", "low": 1e-4, "high": 0.1}``).
    """
    if grid is not None and space is not None:
        raise ValueError("Pass either grid= (every combination) or space= with n_trials= (random draws), not both.")
    if grid is None and space is None:
        raise ValueError("Nothing to search. Pass grid={'units': [4, 8]} for every combination, or space= with n_trials= for random draws.")
    if grid is not None:
        if n_trials is not None:
            raise ValueError(f"n_trials={n_trials!r} is only for space=: a grid runs every combination of its values.")
        return _grid_plan(grid)
    return _random_plan(space, n_trials, seed)


def _grid_plan(grid: Mapping[str, Sequence[Any]]) -> Plan:
    if not isinstance(grid, Mapping) or not grid:
        raise ValueError(f"Invalid value for argument `grid`. Received: grid={grid!r}. Expected a non-empty dict of lists, e.g. {{'units': [4, 8, 16]}}.")
    axes = []
    for key, values in grid.items():
        _require_key(key, "grid")
        if not isinstance(values, (list, tuple)) or not values:
            raise ValueError(f"Invalid value for grid[{key!r}]. Received: {values!r}. Expected a non-empty list of values, e.g. [4, 8, 16].")
        _require_json(values, f"grid[{key!r}]")
        axes.append((key, list(values)))
    params = [dict(zip([k for k, _ in axes], combo)) for combo in itertools.product(*[v for _, v in axes])]
    return Plan("grid", {"grid": [[k, v] for k, v in axes]}, params)


def _random_plan(space: Mapping[str, Any], n_trials: int | None, seed: int) -> Plan:
    if not isinstance(space, Mapping) or not space:
        raise ValueError(
            f"Invalid value for argument `space`. Received: space={space!r}. "
            "Expected a non-empty dict, e.g. {'lr': tracker.loguniform(1e-4, 1e-1)}."
        )
    if n_trials is None:
        raise ValueError("space= needs n_trials=: how many trials to draw from it (e.g. n_trials=20).")
    if not isinstance(n_trials, int) or isinstance(n_trials, bool) or n_trials < 1:
        raise ValueError(f"Invalid value for argument `n_trials`. Received: n_trials={n_trials!r}. Expected an integer >= 1.")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"Invalid value for argument `seed`. Received: seed={seed!r}. Expected an integer >= 0.")
    dists = [(key, _distribution(key, value)) for key, value in space.items()]
    params = [_draw(dists, seed, n) for n in range(n_trials)]
    return Plan("random", {"space": [[k, d.to_json()] for k, d in dists], "seed": seed, "n_trials": n_trials}, params)


def _draw(dists: list[tuple[str, Distribution]], seed: int, number: int) -> dict[str, Any]:
    rng = np.random.default_rng([seed, number])
    return {key: d.draw(rng) for key, d in dists}


def _distribution(key: str, value: Any) -> Distribution:
    _require_key(key, "space")
    if isinstance(value, Distribution):
        return value
    if isinstance(value, (list, tuple)):
        return choice(value)
    if isinstance(value, Mapping) and "distribution" in value:
        kind = value["distribution"]
        if kind not in _MAKERS:
            raise ValueError(f"Unknown distribution {kind!r} for space[{key!r}]. Expected one of: {', '.join(_MAKERS)}.")
        try:
            return _MAKERS[kind](value)
        except KeyError as e:
            raise ValueError(f"space[{key!r}]: a {kind} distribution needs {e.args[0]!r}. Received: {dict(value)!r}.") from None
    raise ValueError(
        f"Invalid value for space[{key!r}]. Received: {value!r}. Expected a distribution: tracker.choice([...]), "
        "tracker.uniform(low, high), tracker.loguniform(low, high) or tracker.randint(low, high), or a list of values."
    )


def changes(old_kind: str, old: Mapping[str, Any], asked: Plan) -> str | None:
    """What differs between a sweep as recorded (its kind and spec) and what is asked of it now; None if nothing does.

    Raising ``n_trials`` under the same space and seed is no change: it draws more of the same trials.
    """
    new = asked.spec
    if old_kind != asked.kind:
        return f"it was a {old_kind} search and is now asked to be a {asked.kind} search"
    key = "grid" if asked.kind == "grid" else "space"
    was, now_ = dict(old[key]), dict(_jsonable(new[key]))
    found = [f"{k!r} was removed" for k in was if k not in now_]
    found += [f"{k!r} was added" for k in now_ if k not in was]
    found += [f"{k!r} was {json.dumps(was[k])} and is now {json.dumps(now_[k])}" for k in was if k in now_ and was[k] != now_[k]]
    if not found and list(was) != list(now_):
        found.append(f"the order of the keys was {list(was)} and is now {list(now_)}")
    if asked.kind == "random":
        if old["seed"] != new["seed"]:
            found.append(f"seed was {old['seed']} and is now {new['seed']}")
        if new["n_trials"] < old["n_trials"]:
            found.append(f"n_trials was {old['n_trials']} and is now {new['n_trials']} (it can only grow)")
    return "; ".join(found) or None


def _jsonable(value: Any) -> Any:
    # As the database gives it back: tuples become lists.
    return json.loads(json.dumps(value))


def _require_key(key: object, where: str) -> None:
    if not isinstance(key, str) or not key:
        raise ValueError(f"Invalid key in {where}. Received: {key!r}. Expected a non-empty string (it becomes a config key).")


def _require_range(name: str, low: float, high: float) -> None:
    numbers = all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) for v in (low, high))
    if not numbers or not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ValueError(f"Invalid value for {name}. Received: low={low!r}, high={high!r}. Expected finite numbers with low < high.")


def _require_json(values: Sequence[Any], where: str) -> None:
    try:
        back = json.loads(json.dumps(list(values), allow_nan=False))
    except (TypeError, ValueError) as e:
        raise ValueError(
            f"Invalid value for {where}. Received: {list(values)!r}. Expected JSON-able values (numbers, strings, booleans, lists): {e}."
        ) from None
    if back != [_jsonable(v) for v in values]:
        raise ValueError(f"Invalid value for {where}. Received: {list(values)!r}. Expected values that JSON keeps as they are.")
