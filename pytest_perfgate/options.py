"""Every perfgate setting as a command-line flag, an ini key and an environment variable.

Resolved in one function, ``resolve``: the flag wins over the environment variable,
which wins over the ini key, which wins over the default. A bad value raises
``ConfigError`` naming where it came from (``--perfgate-duration``, ``PERFGATE_DURATION``
or ``ini perfgate_duration``). No pytest import: the CLI shares these definitions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_perfgate.core.parsing import (
    check_name,
    parse_duration,
    parse_fraction,
    parse_percent,
)
from pytest_perfgate.errors import ConfigError

__all__ = ["OPTIONS", "Option", "Settings", "resolve"]


def _positive_int(value: str, where: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(where, f"expected a whole number, got {value!r}") from None
    if number < 1:
        raise ConfigError(where, f"expected a number >= 1, got {value!r}")
    return number


def _positive_float(value: str, where: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(where, f"expected a number, got {value!r}") from None
    if not number > 0:
        raise ConfigError(where, f"expected a number > 0, got {value!r}")
    return number


def _count(value: str, where: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(where, f"expected a whole number, got {value!r}") from None
    if number < 0:
        raise ConfigError(where, f"expected a number >= 0, got {value!r}")
    return number


def _fraction(value: str, where: str) -> float:
    """A share between 0 and 1 from the command line: ``0.05`` or ``5%``."""
    try:
        number: object = float(value)
    except ValueError:
        number = value  # "5%", or a mistake that parse_fraction names
    return parse_fraction(number, where)


def _duration(value: str, where: str) -> float:
    seconds = parse_duration(value, where)
    if seconds <= 0:
        raise ConfigError(where, f"expected a positive duration such as '20s', got {value!r}")
    return seconds


def _bool(value: str, where: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(where, f"expected true or false, got {value!r}")


def _choice(*choices: str) -> Callable[[str, str], str]:
    def parse(value: str, where: str) -> str:
        if value not in choices:
            raise ConfigError(where, f"expected one of {', '.join(choices)}, got {value!r}")
        return value

    return parse


_LEVEL = "a confidence level such as 0.95 or 95%"


def _level(value: str, where: str) -> float:
    number = parse_percent(value, where, _LEVEL)
    if number is None:
        number = _positive_float(value, where)
        number = number / 100 if number >= 1 else number
    if not 0.5 <= number < 1:
        raise ConfigError(where, f"expected {_LEVEL}, got {value!r}")
    return number


def _exit_code(value: str, where: str) -> int:
    try:
        code = int(value)
    except ValueError:
        raise ConfigError(where, f"expected an exit code 3-125, got {value!r}") from None
    if not 3 <= code <= 125 or code in (4, 5):  # keep clear of pytest's own codes
        raise ConfigError(where, f"expected an exit code 3-125 other than 4 and 5, got {value!r}")
    return code


def _text(value: str, where: str) -> str:
    return value


@dataclass(frozen=True)
class Option:
    """One setting: its name (``duration`` -> ``--perfgate-duration``, ini ``perfgate_duration``,
    env ``PERFGATE_DURATION``), help text, parser and default (a string, parsed too)."""

    name: str
    help: str
    parse: Callable[[str, str], Any]
    default: str | None = None
    metavar: str = "VALUE"

    @property
    def cli(self) -> str:
        return "--perfgate-" + self.name.replace("_", "-")

    @property
    def ini(self) -> str:
        return "perfgate_" + self.name

    @property
    def env(self) -> str:
        return "PERFGATE_" + self.name.upper()


OPTIONS: tuple[Option, ...] = (
    Option("thresholds", "thresholds file with the service, scenarios and budgets",
           _text, "thresholds.yaml", "PATH"),
    Option("url", "base URL of a service already running (the gate then starts none)",
           _text, None, "URL"),
    Option("results_dir", "folder for the files of each run", _text, "results/load_tests",
           "DIR"),
    Option("duration", "override every scenario's duration (a short smoke run), e.g. 20s",
           _duration, None, "DURATION"),
    Option("users", "override every scenario's number of users", _positive_int, None, "N"),
    Option("spawn_rate", "override every scenario's spawn rate (users per second)",
           _positive_float, None, "RATE"),
    Option("processes", "Locust worker processes per scenario", _positive_int, None, "N"),
    Option("collect", "collect the scenarios of the thresholds file as test items; load "
           "runs only when asked: they are deselected unless -m names a load_ marker "
           "(-m load_light) or the thresholds file or a scenario is an argument "
           "(pytest thresholds.yaml, pytest thresholds.yaml::light)", _bool, "true", "BOOL"),
    Option("early_stop", "end a run as soon as every blocking budget is decided",
           _bool, "true", "BOOL"),
    Option("min_duration", "measured time an early PASS needs at least (slow drifts, pauses)",
           _duration, "30s", "DURATION"),
    Option("abort_window", "how long a clear breach must hold before it ends the run as FAIL",
           _duration, "10s", "DURATION"),
    Option("confidence", "confidence level of every interval, e.g. 0.95",
           _level, "0.95", "LEVEL"),
    Option("inconclusive", "what an inconclusive budget (the data cannot tell within from "
           "over) does to the test: fail (default), warn (pass with a warning) or pass",
           _choice("fail", "warn", "pass"), "fail", "POLICY"),
    Option("breach_exit_code", "exit with this code when the only failures are budget "
           "breaches (k6 uses 99), so a workflow can tell 'slower' from 'broken'; off by default",
           _exit_code, None, "CODE"),
    Option("baseline", "judge each scenario's *_regression budgets against this stored "
           "baseline: a name saved with --perfgate-save-baseline, or a path to a baseline "
           "file or folder", _text, None, "NAME"),
    Option("save_baseline", "store each scenario's measured run as this baseline; a baseline "
           "of the same name is replaced (that is how a baseline is updated)",
           check_name, None, "NAME"),
    Option("baseline_dir", "folder of stored baselines", _text, ".perfgate/baselines", "DIR"),
    Option("against", "A/B run: judge each scenario's *_regression budgets against this "
           "baseline running beside the service on the same machine at the same time: a git "
           "ref (started with service.command from a temporary worktree) or the URL of a "
           "running baseline; overrides compare_to in the thresholds file", _text, None, "REF"),
    Option("ab_mode", "how an A/B run pairs the two sides: duet (every request sent to both, "
           "back to back) or interleaved (alternating rounds); default compare_to.mode, else "
           "duet", _choice("duet", "interleaved"), None, "MODE"),
    Option("noise_check", "watch the machine during each run and call a breach INVALID "
           "(not the service's) when outside load, steal or a saturated load generator can "
           "explain it", _bool, "true", "BOOL"),
    Option("noise_cores", "CPU of processes outside the run, in cores, above which a moment "
           "of the run counts as busy", _positive_float, "0.5", "CORES"),
    Option("noise_share", "share of the run that must be busy for the run to count as "
           "noisy, as a fraction (the slowest 0.05 of the requests decide a p95)", _fraction,
           "0.05", "SHARE"),
    Option("noise_steal", "mean CPU steal time (virtual machines), as a fraction of the CPU "
           "time, that makes a run noisy", _fraction, "0.1", "SHARE"),
    Option("retry_noisy", "rerun a scenario whose breach the machine's noise explains up to "
           "N times; the last attempt's verdict counts", _count, "0", "N"),
)  # fmt: skip


@dataclass(frozen=True)
class Settings:
    thresholds: Path
    thresholds_explicit: bool  # named by the user: a missing file is then an error
    url: str | None
    results_dir: Path
    duration: float | None
    users: int | None
    spawn_rate: float | None
    processes: int | None
    collect: bool
    early_stop: bool
    min_duration: float
    abort_window: float
    confidence: float
    inconclusive: str
    breach_exit_code: int | None
    baseline: str | None
    save_baseline: str | None
    baseline_dir: Path
    against: str | None
    ab_mode: str | None
    noise_check: bool
    noise_cores: float
    noise_share: float
    noise_steal: float
    retry_noisy: int


def resolve(
    cli: Mapping[str, str | None],
    ini: Mapping[str, str | None],
    env: Mapping[str, str],
    rootdir: Path,
    *,
    cli_prefix: str = "--perfgate-",
) -> Settings:
    """Settings from the three sources; ``cli`` and ``ini`` map option names to raw strings.

    ``cli_prefix`` names the flags in errors: ``--perfgate-`` under pytest, ``--`` for
    ``perfgate run``.
    """
    values: dict[str, Any] = {}
    explicit: set[str] = set()
    for option in OPTIONS:
        for _source, raw, where in (
            ("cli", cli.get(option.name), cli_prefix + option.name.replace("_", "-")),
            ("env", env.get(option.env), option.env),
            ("ini", ini.get(option.name), f"ini {option.ini}"),
        ):
            if raw not in (None, ""):
                values[option.name] = option.parse(str(raw), where)
                explicit.add(option.name)
                break
        else:
            default = option.default
            values[option.name] = None if default is None else option.parse(default, option.name)
    thresholds = Path(values["thresholds"])
    results = Path(values["results_dir"])
    values["thresholds"] = thresholds if thresholds.is_absolute() else rootdir / thresholds
    values["results_dir"] = results if results.is_absolute() else rootdir / results
    store = Path(values["baseline_dir"])
    values["baseline_dir"] = store if store.is_absolute() else rootdir / store
    return Settings(thresholds_explicit="thresholds" in explicit, **values)
