"""thresholds.yaml -> frozen ``Thresholds``, ``Scenario`` and ``Budget`` values.

Pure: no pytest, no locust. Every error is a ``ConfigError`` whose message names the
file, the key path and the bad value, e.g.
``thresholds.yaml: scenarios.light.budgets.p95_ms: expected a number of milliseconds, got '1OO'``.
The plugin turns it into ``pytest.UsageError``; the CLI prints it as one line.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from pytest_perfgate.errors import ConfigError

__all__ = [
    "BUDGET_HELP",
    "BUDGET_KEYS",
    "Budget",
    "ConfigError",
    "LoadShape",
    "Scenario",
    "ServiceSpec",
    "Task",
    "Thresholds",
    "budget_from_mapping",
    "load_thresholds",
    "parse_duration",
]

Severity = Literal["block", "warn"]
HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")


# --- durations -----------------------------------------------------------------------

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")


def parse_duration(value: object, where: str) -> float:
    """Seconds from ``90``, ``"90s"``, ``"1m30s"``, ``"1.5h"`` or ``"250ms"``; the one parser."""
    if isinstance(value, bool):
        raise ConfigError(where, f"expected a duration such as '30s' or '5m', got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().replace(" ", "")
        parts = _DURATION_PART.findall(text)
        if not parts or "".join(n + u for n, u in parts) != text:
            try:
                seconds = float(text)
            except ValueError:
                raise ConfigError(
                    where, f"expected a duration such as '30s' or '5m', got {value!r}"
                ) from None
        else:
            scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
            seconds = sum(float(n) * scale[u] for n, u in parts)
    else:
        raise ConfigError(where, f"expected a duration such as '30s' or '5m', got {value!r}")
    if not math.isfinite(seconds) or seconds < 0:
        raise ConfigError(where, f"expected a non-negative duration, got {value!r}")
    return seconds


# --- secrets from the environment -----------------------------------------------------

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand_env(value: str, where: str, environ: Mapping[str, str]) -> str:
    """``"Bearer ${TOKEN}"`` with ``TOKEN`` from ``environ``; a missing variable is an error.

    Secrets stay in the environment: the files of a run hold the ``${NAME}`` form only,
    and the value is read where the request (or the service) is made.
    """

    def lookup(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in environ:
            raise ConfigError(where, f"environment variable {name} is not set")
        return environ[name]

    return _ENV_REF.sub(lookup, value)


# --- budgets -------------------------------------------------------------------------

#: Budget keys and their help text: the one schema behind YAML budgets, the
#: ``perf_budget`` marker, ``result.check(**budget)`` and the marker help in ``--markers``.
BUDGET_HELP: Mapping[str, str] = {
    "p50_ms": "median response time must stay below this many milliseconds",
    "p95_ms": "95th percentile response time must stay below this many milliseconds",
    "p99_ms": "99th percentile response time must stay below this many milliseconds",
    "avg_ms": "mean response time must stay below this many milliseconds",
    "mean_ms": "alias of avg_ms (pytest-benchmark's name)",
    "max_ms": "slowest response must stay below this many milliseconds",
    "error_rate": "share of failed requests must stay below this fraction (0.01 = 1 %)",
    "min_rps": "throughput must reach at least this many requests per second",
    "gpu_mem_mb": "peak GPU memory used during the run must stay below this many MB",
    "gpu_util_min": "mean GPU utilisation during the run must reach this many percent",
    "hard_error_rate": "share of requests failing other than by a 429/503 (5xx, timeouts, "
    "no answer) must stay below this fraction",
    "recovery_s": "after the peak stage of a shape, the P95 must be back within 20 % (+10 ms) "
    "of its level before the spike within this many seconds",
    "rss_growth_mb": "the service's resident memory may grow by at most this many MB over the "
    "run (its /metrics)",
    "severity": "'block' fails the test on a breach, 'warn' only reports it",
}
BUDGET_KEYS = tuple(BUDGET_HELP)
#: budgets on figures of the whole run (not of an endpoint's response times)
RUN_FIGURES = ("gpu_mem_mb", "gpu_util_min", "hard_error_rate", "recovery_s", "rss_growth_mb")
_LATENCY_KEYS = ("p50_ms", "p95_ms", "p99_ms", "avg_ms", "max_ms")


@dataclass(frozen=True)
class Budget:
    """Limits for one endpoint (or the total) of a scenario; ``None`` means not budgeted."""

    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    avg_ms: float | None = None
    max_ms: float | None = None
    error_rate: float | None = None
    min_rps: float | None = None
    gpu_mem_mb: float | None = None
    gpu_util_min: float | None = None
    hard_error_rate: float | None = None
    recovery_s: float | None = None
    rss_growth_mb: float | None = None
    severity: Severity = "block"
    #: allowances relative to a baseline, ``{"p95_regression": 0.10}`` (see ``baseline``);
    #: judged only when a run is compared with a baseline
    regressions: Mapping[str, float] = field(default_factory=dict)

    def limits(self) -> dict[str, float]:
        """The absolute limits and their values, in a stable order (``regressions`` apart)."""
        return {
            f.name: v
            for f in dataclasses.fields(self)
            if f.name not in ("severity", "regressions")
            and (v := getattr(self, f.name)) is not None
        }

    def merged(self, other: Budget) -> Budget:
        """This budget with every limit that ``other`` sets replaced by ``other``'s."""
        changes: dict[str, Any] = dict(other.limits())
        if other.severity != "block":
            changes["severity"] = other.severity
        if other.regressions:
            changes["regressions"] = {**self.regressions, **other.regressions}
        return dataclasses.replace(self, **changes)

    def __bool__(self) -> bool:
        return bool(self.limits() or self.regressions)

    def __repr__(self) -> str:
        limits = {**self.limits(), **self.regressions}
        inner = ", ".join(f"{k}={v:g}" for k, v in limits.items())
        return f"Budget({inner}{', warn' if self.severity == 'warn' else ''})"


def _number(value: object, where: str, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(where, f"expected {what}, got {value!r}")
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise ConfigError(where, f"expected {what} (finite, >= 0), got {value!r}")
    return number


def _fraction(value: object, where: str) -> float:
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            value = float(value.strip()[:-1]) / 100.0
        except ValueError:
            raise ConfigError(
                where, f"expected a fraction such as 0.01 or '1%', got {value!r}"
            ) from None
    number = _number(value, where, "a fraction such as 0.01 or '1%'")
    if number > 1:
        raise ConfigError(where, f"expected a fraction between 0 and 1 (0.01 = 1 %), got {value!r}")
    return number


def budget_from_mapping(data: object, where: str) -> Budget:
    """Validate a budget mapping (YAML, marker kwargs or ``check(**kw)``) into a ``Budget``."""
    from pytest_perfgate.core.regression import (  # imports config
        REGRESSION_HELP,
        REGRESSION_KEYS,
        parse_regressions,
    )

    if not isinstance(data, Mapping):
        raise ConfigError(where, f"expected a mapping of budget keys, got {data!r}")
    values: dict[str, Any] = {
        "regressions": parse_regressions(
            {k: v for k, v in data.items() if k in REGRESSION_HELP}, where
        )
    }
    for key, value in data.items():
        here = f"{where}.{key}"
        if key in REGRESSION_HELP:
            continue
        if key not in BUDGET_HELP:
            known = ", ".join((*BUDGET_KEYS, *REGRESSION_KEYS))
            raise ConfigError(here, f"unknown budget key {key!r}; known keys: {known}")
        if key == "severity":
            if value not in ("block", "warn"):
                raise ConfigError(here, f"expected 'block' or 'warn', got {value!r}")
            values["severity"] = value
        elif key == "error_rate":
            values["error_rate"] = _fraction(value, here)
        elif key == "min_rps":
            values["min_rps"] = _number(value, here, "a number of requests per second")
        elif key == "gpu_mem_mb":
            values["gpu_mem_mb"] = _number(value, here, "a number of megabytes")
        elif key == "gpu_util_min":
            values["gpu_util_min"] = _number(value, here, "a utilisation in percent")
        elif key == "hard_error_rate":
            values["hard_error_rate"] = _fraction(value, here)
        elif key == "recovery_s":
            values["recovery_s"] = parse_duration(value, here)
        elif key == "rss_growth_mb":
            values["rss_growth_mb"] = _number(value, here, "a number of megabytes")
        else:
            name = "avg_ms" if key == "mean_ms" else key
            if name in values:
                raise ConfigError(here, "avg_ms and mean_ms are the same budget; give one")
            values[name] = _number(value, here, "a number of milliseconds")
    return Budget(**values)


# --- scenarios -----------------------------------------------------------------------


@dataclass(frozen=True)
class Task:
    """One weighted request a simulated user makes."""

    method: str
    path: str
    name: str  # endpoint key in statistics and budgets, "POST /predict" by default
    weight: int = 1
    json: Any = None
    json_factory: str | None = None  # "module:function" returning the JSON body
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class LoadShape:
    """An optional load shape; ``stages`` are (end time s, users, spawn rate) triples."""

    kind: Literal["ramp", "steps", "spike"]
    stages: tuple[tuple[float, int, float], ...]


@dataclass(frozen=True)
class Scenario:
    """One load scenario, with every default already applied."""

    name: str
    users: int
    spawn_rate: float
    duration_s: float
    wait_min_s: float = 0.0
    wait_max_s: float = 0.0
    warmup_s: float = 0.0
    tasks: tuple[Task, ...] = ()
    locustfile: str | None = None
    user_classes: tuple[str, ...] = ()
    shape: LoadShape | None = None
    budget: Budget = Budget()
    endpoint_budgets: Mapping[str, Budget] = field(default_factory=dict)
    min_samples: int = 50
    request_timeout_s: float = 10.0
    processes: int = 1
    #: open workload: requests per second started on schedule (None: Locust's closed model)
    arrival_rate: float | None = None
    #: distributed: wait for this many ``locust --worker`` processes started elsewhere
    external_workers: int = 0
    master_bind: str = "127.0.0.1"
    description: str = ""
    source_lines: Mapping[str, int] = field(default_factory=dict, compare=False, repr=False)

    @property
    def marker(self) -> str:
        return f"load_{self.name}"

    def with_overrides(
        self,
        *,
        users: int | None = None,
        spawn_rate: float | None = None,
        duration_s: float | None = None,
        processes: int | None = None,
    ) -> Scenario:
        """A copy with command-line overrides applied; a shorter run keeps its warm-up share."""
        changes: dict[str, Any] = {}
        if users is not None:
            changes["users"] = users
        if spawn_rate is not None:
            changes["spawn_rate"] = spawn_rate
        if processes is not None:
            changes["processes"] = processes
        if duration_s is not None:
            changes["duration_s"] = duration_s
            # warm-up never eats more than a quarter of a shortened run
            changes["warmup_s"] = min(self.warmup_s, duration_s / 4)
        return dataclasses.replace(self, **changes)

    def __repr__(self) -> str:
        return (
            f"Scenario({self.name!r}, users={self.users}, spawn_rate={self.spawn_rate:g}, "
            f"duration={self.duration_s:g}s)"
        )


@dataclass(frozen=True)
class ServiceSpec:
    """How to reach the system under test: a command to start, or a URL already running."""

    command: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    ready_path: str = "/health"
    startup_timeout_s: float = 60.0
    url: str | None = None
    cwd: str | None = None


@dataclass(frozen=True)
class Thresholds:
    path: Path
    service: ServiceSpec
    scenarios: Mapping[str, Scenario]

    def scenario(self, name: str) -> Scenario:
        try:
            return self.scenarios[name]
        except KeyError:
            known = ", ".join(self.scenarios) or "none"
            raise ConfigError(
                str(self.path), f"unknown scenario {name!r}; known scenarios: {known}"
            ) from None


# --- validation ----------------------------------------------------------------------

_SCENARIO_KEYS = {
    "description", "users", "spawn_rate", "duration", "wait_time", "warmup", "tasks",
    "locustfile", "user_classes", "shape", "budgets", "endpoints", "min_samples",
    "request_timeout", "processes", "arrival_rate", "external_workers", "master_bind",
}  # fmt: skip
_DEFAULT_KEYS = _SCENARIO_KEYS - {"tasks", "description", "locustfile", "user_classes"}
_TASK_KEYS = {"method", "path", "name", "weight", "json", "json_factory", "headers"}
_SERVICE_KEYS = {"command", "env", "ready_path", "startup_timeout", "url", "cwd"}
_TOP_KEYS = {"version", "service", "defaults", "scenarios"}
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def _mapping(data: object, where: str, allowed: set[str]) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise ConfigError(where, f"expected a mapping, got {data!r}")
    for key in data:
        if key not in allowed:
            raise ConfigError(
                where + key if where.endswith(": ") else f"{where}.{key}",
                f"unknown key {key!r}; known keys: {', '.join(sorted(allowed))}",
            )
    return data


def _positive_int(value: object, where: str, what: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(where, f"expected {what} (an integer >= {minimum}), got {value!r}")
    return value


def _wait_time(value: object, where: str) -> tuple[float, float]:
    if isinstance(value, list | tuple) and len(value) == 2:
        low = parse_duration(value[0], f"{where}[0]")
        high = parse_duration(value[1], f"{where}[1]")
    elif isinstance(value, int | float | str) and not isinstance(value, bool):
        low = high = parse_duration(value, where)
    else:
        raise ConfigError(where, f"expected [min, max] seconds such as [0.5, 2], got {value!r}")
    if low > high:
        raise ConfigError(where, f"min {low:g}s is above max {high:g}s in {value!r}")
    return low, high


def _task(data: object, where: str) -> Task:
    raw = _mapping(data, where, _TASK_KEYS)
    method = raw.get("method", "GET")
    if not isinstance(method, str) or method.upper() not in HTTP_METHODS:
        raise ConfigError(f"{where}.method", f"expected one of {HTTP_METHODS}, got {method!r}")
    path = raw.get("path")
    if not isinstance(path, str) or not path.startswith("/"):
        raise ConfigError(f"{where}.path", f"expected a URL path starting with '/', got {path!r}")
    name = raw.get("name", path)
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where}.name", f"expected a non-empty string, got {name!r}")
    factory = raw.get("json_factory")
    if factory is not None and (not isinstance(factory, str) or ":" not in factory):
        raise ConfigError(
            f"{where}.json_factory", f"expected 'module:function', got {factory!r}"
        )
    if factory is not None and "json" in raw:
        raise ConfigError(where, "give either json or json_factory, not both")
    headers = raw.get("headers", {})
    if not isinstance(headers, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        raise ConfigError(f"{where}.headers", f"expected a mapping of strings, got {headers!r}")
    return Task(
        method=method.upper(),
        path=path,
        name=f"{method.upper()} {name}",
        weight=_positive_int(raw.get("weight", 1), f"{where}.weight", "a weight"),
        json=raw.get("json"),
        json_factory=factory,
        headers=dict(headers),
    )


def _shape(data: object, where: str) -> LoadShape:
    raw = _mapping(data, where, {"type", "stages"})
    kind = raw.get("type")
    if kind not in ("ramp", "steps", "spike"):
        raise ConfigError(f"{where}.type", f"expected 'ramp', 'steps' or 'spike', got {kind!r}")
    stages_raw = raw.get("stages")
    if not isinstance(stages_raw, list) or not stages_raw:
        raise ConfigError(f"{where}.stages", f"expected a list of stages, got {stages_raw!r}")
    stages = []
    last_end = 0.0
    for i, stage in enumerate(stages_raw):
        here = f"{where}.stages[{i}]"
        st = _mapping(stage, here, {"until", "users", "spawn_rate"})
        end = parse_duration(st.get("until"), f"{here}.until")
        if end <= last_end:
            raise ConfigError(f"{here}.until", f"stages must end in increasing order, got {end:g}s")
        users = _positive_int(st.get("users"), f"{here}.users", "a number of users", minimum=0)
        rate = _number(st.get("spawn_rate", 1), f"{here}.spawn_rate", "users per second")
        stages.append((end, users, rate))
        last_end = end
    return LoadShape(kind=kind, stages=tuple(stages))


def _scenario(
    name: str, data: Mapping[str, Any], defaults: Mapping[str, Any], where: str,
    lines: Mapping[str, int],
) -> Scenario:  # fmt: skip
    merged = {**defaults, **data}
    budget = budget_from_mapping(merged.get("budgets", {}), f"{where}.budgets")
    endpoints_raw = merged.get("endpoints", {})
    if not isinstance(endpoints_raw, Mapping):
        raise ConfigError(f"{where}.endpoints", f"expected a mapping, got {endpoints_raw!r}")
    endpoint_budgets = {
        str(ep): budget_from_mapping(b, f"{where}.endpoints.{ep}")
        for ep, b in endpoints_raw.items()
    }
    for ep, b in endpoint_budgets.items():
        run_level = sorted(set(b.limits()) & set(RUN_FIGURES))
        if run_level:
            raise ConfigError(
                f"{where}.endpoints.{ep}",
                f"{', '.join(run_level)} apply to the whole run: put them in budgets",
            )
    tasks_raw = merged.get("tasks", [])
    if not isinstance(tasks_raw, list):
        raise ConfigError(f"{where}.tasks", f"expected a list of tasks, got {tasks_raw!r}")
    tasks = tuple(_task(t, f"{where}.tasks[{i}]") for i, t in enumerate(tasks_raw))
    locustfile = merged.get("locustfile")
    user_classes = merged.get("user_classes", [])
    if not tasks and not locustfile:
        raise ConfigError(where, "a scenario needs tasks or a locustfile with user_classes")
    if tasks and locustfile:
        raise ConfigError(where, "give either tasks or a locustfile, not both")
    if locustfile is not None and not isinstance(locustfile, str):
        raise ConfigError(f"{where}.locustfile", f"expected a file path, got {locustfile!r}")
    if not isinstance(user_classes, list) or not all(isinstance(u, str) for u in user_classes):
        raise ConfigError(
            f"{where}.user_classes", f"expected a list of class names, got {user_classes!r}"
        )
    for ep in endpoint_budgets:
        if tasks and ep not in {t.name for t in tasks}:
            known = ", ".join(t.name for t in tasks)
            raise ConfigError(
                f"{where}.endpoints.{ep}", f"no task has this name; task names: {known}"
            )
    wait_min, wait_max = _wait_time(merged.get("wait_time", 0), f"{where}.wait_time")
    duration = parse_duration(merged.get("duration", "60s"), f"{where}.duration")
    if duration <= 0:
        raise ConfigError(f"{where}.duration", f"expected a positive duration, got {duration!r}")
    warmup = parse_duration(merged.get("warmup", 0), f"{where}.warmup")
    if warmup >= duration:
        raise ConfigError(
            f"{where}.warmup", f"warm-up {warmup:g}s leaves nothing of duration {duration:g}s"
        )
    shape = _shape(merged["shape"], f"{where}.shape") if "shape" in merged else None
    rate = merged.get("arrival_rate")
    if rate is not None:
        if _number(rate, f"{where}.arrival_rate", "requests per second") <= 0:
            raise ConfigError(f"{where}.arrival_rate", f"expected a rate > 0, got {rate!r}")
        if locustfile or shape:
            raise ConfigError(
                f"{where}.arrival_rate",
                "the open model drives tasks on its own schedule: it takes neither a "
                "locustfile nor a shape",
            )
    users = _positive_int(merged.get("users", 1), f"{where}.users", "a number of users")
    return Scenario(
        name=name,
        users=users,
        spawn_rate=_number(merged.get("spawn_rate", users), f"{where}.spawn_rate", "users/s"),
        duration_s=duration,
        wait_min_s=wait_min,
        wait_max_s=wait_max,
        warmup_s=warmup,
        tasks=tasks,
        locustfile=locustfile,
        user_classes=tuple(user_classes),
        shape=shape,
        budget=budget,
        endpoint_budgets=endpoint_budgets,
        min_samples=_positive_int(
            merged.get("min_samples", 50), f"{where}.min_samples", "a sample count"
        ),
        request_timeout_s=parse_duration(
            merged.get("request_timeout", 10), f"{where}.request_timeout"
        ),
        processes=_positive_int(merged.get("processes", 1), f"{where}.processes", "processes"),
        arrival_rate=(
            None
            if merged.get("arrival_rate") is None
            else _number(merged["arrival_rate"], f"{where}.arrival_rate", "requests per second")
        ),
        external_workers=_positive_int(
            merged.get("external_workers", 0), f"{where}.external_workers", "workers", minimum=0
        ),
        master_bind=str(merged.get("master_bind", "127.0.0.1")),
        description=str(merged.get("description", "")),
        source_lines=lines,
    )


def _service(data: object, where: str) -> ServiceSpec:
    raw = _mapping(data, where, _SERVICE_KEYS)
    command, url = raw.get("command"), raw.get("url")
    if command is not None and (not isinstance(command, str) or "{port}" not in command):
        raise ConfigError(
            f"{where}.command", f"expected a command with a {{port}} placeholder, got {command!r}"
        )
    if url is not None and (not isinstance(url, str) or not re.match(r"^https?://", url)):
        raise ConfigError(f"{where}.url", f"expected an http(s):// URL, got {url!r}")
    env = raw.get("env", {})
    if not isinstance(env, Mapping):
        raise ConfigError(f"{where}.env", f"expected a mapping of strings, got {env!r}")
    ready = raw.get("ready_path", "/health")
    if not isinstance(ready, str) or not ready.startswith("/"):
        raise ConfigError(f"{where}.ready_path", f"expected a path such as /ready, got {ready!r}")
    return ServiceSpec(
        command=command,
        env={str(k): str(v) for k, v in env.items()},
        ready_path=ready,
        startup_timeout_s=parse_duration(
            raw.get("startup_timeout", 60), f"{where}.startup_timeout"
        ),
        url=url,
        cwd=raw.get("cwd"),
    )


class _LineLoader(yaml.SafeLoader):
    """A safe loader that remembers the line of every mapping key (for annotations)."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    result: dict[Any, Any] = {}
    lines: dict[str, int] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in result:
            raise ConfigError(
                f"line {key_node.start_mark.line + 1}", f"duplicate key {key!r}"
            )
        result[key] = loader.construct_object(value_node, deep=True)
        lines[str(key)] = key_node.start_mark.line + 1
    result["__lines__"] = lines
    return result


_LineLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,
)


def _strip_lines(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _strip_lines(v) for k, v in data.items() if k != "__lines__"}
    if isinstance(data, list):
        return [_strip_lines(v) for v in data]
    return data


def _budget_lines(raw: Mapping[str, Any], prefix: str) -> dict[str, int]:
    """``{"budgets.p95_ms": 12, "endpoints.POST /predict.p95_ms": 15}`` for one scenario."""
    found: dict[str, int] = {}
    lines = raw.get("__lines__", {})
    for key in ("budgets", "endpoints"):
        if key in lines:
            found[key] = lines[key]
    budgets = raw.get("budgets")
    if isinstance(budgets, dict):
        for k, line in budgets.get("__lines__", {}).items():
            found[f"budgets.{k}"] = line
    endpoints = raw.get("endpoints")
    if isinstance(endpoints, dict):
        for ep, b in endpoints.items():
            if isinstance(b, dict):
                for k, line in b.get("__lines__", {}).items():
                    found[f"endpoints.{ep}.{k}"] = line
    found[""] = lines.get(prefix, 0)
    return found


def load_thresholds(path: Path | str) -> Thresholds:
    """Read and validate a thresholds file; every error is a ``ConfigError`` naming the file."""
    path = Path(path)
    label = path.name
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(str(path), "thresholds file not found") from None
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read: {exc.strerror}") from None
    try:
        data = yaml.load(text, Loader=_LineLoader)
    except ConfigError as exc:
        raise ConfigError(f"{label}: {exc.where}", str(exc).split(": ", 1)[1]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "?"
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{label}: {at}", f"invalid YAML: {problem}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(label, f"expected a mapping at the top, got {_strip_lines(data)!r}")
    return _from_raw(data, label, path)


def _from_raw(data: dict[str, Any], label: str, path: Path) -> Thresholds:
    clean = _strip_lines(data)
    _mapping(clean, f"{label}: ", _TOP_KEYS)
    service = _service(clean.get("service", {}), f"{label}: service")
    defaults = _mapping(clean.get("defaults", {}), f"{label}: defaults", _DEFAULT_KEYS)
    scenarios_raw = clean.get("scenarios")
    if not isinstance(scenarios_raw, Mapping) or not scenarios_raw:
        raise ConfigError(
            f"{label}: scenarios", f"expected a mapping of scenarios, got {scenarios_raw!r}"
        )
    raw_with_lines = data.get("scenarios", {})
    scenarios: dict[str, Scenario] = {}
    for name, body in scenarios_raw.items():
        where = f"{label}: scenarios.{name}"
        if not isinstance(name, str) or not _NAME.match(name):
            raise ConfigError(where, f"scenario names are lower_snake_case, got {name!r}")
        raw_body = _mapping(body, where, _SCENARIO_KEYS)
        lines = _budget_lines(raw_with_lines.get(name, {}), name)
        lines = {**lines, "": raw_with_lines.get("__lines__", {}).get(name, 0)}
        scenarios[name] = _scenario(name, raw_body, defaults, where, lines)
    return Thresholds(path=path.resolve(), service=service, scenarios=scenarios)
