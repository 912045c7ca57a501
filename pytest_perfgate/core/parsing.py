"""The one parser of each kind of value a user writes: durations, numbers, fractions, shares.

Pure: no pytest, no I/O. Every function takes ``where`` (``thresholds.yaml:
scenarios.light.budgets.p95_ms``, ``--perfgate-duration``, ``PERFGATE_DURATION``) and
raises ``ConfigError`` naming it and the bad value.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

from pytest_perfgate.errors import ConfigError

__all__ = [
    "check_name",
    "expand_env",
    "is_baseline_name",
    "parse_duration",
    "parse_fraction",
    "parse_number",
    "parse_percent",
    "parse_share",
]

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_SCALE = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION = "a duration such as '30s' or '5m'"


def parse_duration(value: object, where: str) -> float:
    """Seconds from ``90``, ``"90s"``, ``"1m30s"``, ``"1.5h"`` or ``"250ms"``."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ConfigError(where, f"expected {_DURATION}, got {value!r}")
    if isinstance(value, str):
        text = value.strip().replace(" ", "")
        parts = _DURATION_PART.findall(text)
        if parts and "".join(n + u for n, u in parts) == text:
            seconds = sum(float(n) * _SCALE[u] for n, u in parts)
        else:
            seconds = _float(text, where, _DURATION, value)
    else:
        seconds = float(value)
    if not math.isfinite(seconds) or seconds < 0:
        raise ConfigError(where, f"expected a non-negative duration, got {value!r}")
    return seconds


def _float(text: str, where: str, what: str, original: object) -> float:
    try:
        return float(text)
    except ValueError:
        raise ConfigError(where, f"expected {what}, got {original!r}") from None


def parse_number(value: object, where: str, what: str) -> float:
    """A finite number ``>= 0`` (YAML numbers only: ``"12"`` is refused); ``what`` names it."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(where, f"expected {what}, got {value!r}")
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise ConfigError(where, f"expected {what} (finite, >= 0), got {value!r}")
    return number


def parse_percent(value: object, where: str, what: str) -> float | None:
    """``"12.5%"`` -> 0.125; ``None`` when ``value`` is not a percent string."""
    if not (isinstance(value, str) and value.strip().endswith("%")):
        return None
    number = _float(value.strip()[:-1], where, what, value) / 100.0
    if not math.isfinite(number) or number < 0:
        raise ConfigError(where, f"expected {what} (finite, >= 0), got {value!r}")
    return number


def parse_fraction(value: object, where: str) -> float:
    """A share between 0 and 1: ``0.01`` or ``"1%"``."""
    what = "a fraction such as 0.01 or '1%'"
    number = parse_percent(value, where, what)
    if number is None:
        number = parse_number(value, where, what)
    if number > 1:
        raise ConfigError(where, f"expected a fraction between 0 and 1 (0.01 = 1 %), got {value!r}")
    return number


def parse_share(value: object, where: str, *, at_most_one: bool = False) -> float:
    """A relative allowance: ``"10%"`` (any size unless ``at_most_one``) or a fraction ``<= 1``.

    A bare ``10`` is refused rather than read as 1000 %.
    """
    what = "a share such as '10%' or 0.10"
    share = parse_percent(value, where, what)
    if share is None:
        share = parse_number(value, where, what)
        if share > 1:
            raise ConfigError(
                where, f"expected a fraction between 0 and 1 or a percent such as "
                f"'{share:g}%', got {value!r}"
            )  # fmt: skip
    if at_most_one and share > 1:
        raise ConfigError(where, f"expected at most 100 %, got {value!r}")
    return share


_BASELINE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def is_baseline_name(value: str) -> bool:
    """Whether ``value`` is a baseline name (one safe folder name) rather than a path."""
    return bool(_BASELINE_NAME.match(value)) and not value.endswith(".json")


def check_name(name: str, where: str) -> str:
    """A baseline name is one safe folder name (``main``, ``v1.2``, ``pr-481``)."""
    if not is_baseline_name(name):
        raise ConfigError(
            where, f"expected a baseline name of letters, digits, '.', '_' or '-', got {name!r}"
        )
    return name


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand_env(value: str, where: str, environ: Mapping[str, str]) -> str:
    """``"Bearer ${TOKEN}"`` with ``TOKEN`` from ``environ``; a missing variable is an error.

    Secrets stay in the environment: the files of a run hold the ``${NAME}`` form only,
    and the value is read where the request (or the service) is made (the child process
    imports it from here, so it never loads yaml).
    """

    def lookup(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in environ:
            raise ConfigError(where, f"environment variable {name} is not set")
        return environ[name]

    return _ENV_REF.sub(lookup, value)
