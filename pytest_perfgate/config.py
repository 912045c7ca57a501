"""thresholds.yaml -> frozen ``Thresholds``, ``Scenario`` and ``Budget`` values.

Reads and validates the YAML file (the value types live in ``core.model``, the budget
keys in ``core.metrics``; both are re-exported here). No pytest, no locust. Every error
is a ``ConfigError`` whose message names the file, the key path and the bad value, e.g.
``thresholds.yaml: scenarios.light.budgets.p95_ms: expected a number of milliseconds, got '1OO'``.
The plugin turns it into ``pytest.UsageError``; the CLI prints it as one line.

Over 450 lines: the whole thresholds.yaml schema (top level, service and its metrics,
defaults, scenarios, tasks, shapes) in one place, each section a short function.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import yaml

from pytest_perfgate.core.metrics import BUDGET_HELP, METRICS, MS, REGRESSIONS
from pytest_perfgate.core.model import (
    HTTP_METHODS,
    Budget,
    LoadShape,
    Scenario,
    ServiceSpec,
    Severity,
    Task,
    Thresholds,
    budget_from_mapping,
    scenario_settings,
)
from pytest_perfgate.core.parsing import expand_env, parse_duration, parse_number
from pytest_perfgate.core.service_metrics import (
    DEFAULT_METRICS,
    FIGURES,
    SECONDS_PER,
    Gauge,
    ServiceMetrics,
    TimeUnit,
    Timing,
)
from pytest_perfgate.errors import ConfigError

__all__ = [
    "BUDGET_HELP",
    "BUDGET_KEYS",
    "HTTP_METHODS",
    "RUN_FIGURES",
    "Budget",
    "ConfigError",
    "LoadShape",
    "Scenario",
    "ServiceSpec",
    "Severity",
    "Task",
    "Thresholds",
    "budget_from_mapping",
    "expand_env",
    "load_thresholds",
    "parse_duration",
    "scenario_settings",
]

#: the keys a budget mapping takes besides the ``*_regression`` allowances: every metric
#: key and alias, and ``severity`` (``BUDGET_HELP`` has them all, with their help text)
BUDGET_KEYS = tuple(k for k in BUDGET_HELP if k not in {r.key for r in REGRESSIONS})
#: budgets on figures of the whole run (not of an endpoint's response times)
RUN_FIGURES = tuple(m.key for m in METRICS if m.scope == "run")
_LATENCY_KEYS = tuple(m.key for m in METRICS if m.unit is MS and m.scope == "endpoint")


# --- validation ----------------------------------------------------------------------

_SCENARIO_KEYS = {
    "description", "users", "spawn_rate", "duration", "wait_time", "warmup", "tasks",
    "locustfile", "user_classes", "shape", "budgets", "endpoints", "min_samples",
    "request_timeout", "processes", "arrival_rate", "external_workers", "master_bind",
    "tags", "exclude_tags",
}  # fmt: skip
_DEFAULT_KEYS = _SCENARIO_KEYS - {
    "tasks", "description", "locustfile", "user_classes", "tags", "exclude_tags",
}  # fmt: skip
_TASK_KEYS = {"method", "path", "name", "weight", "json", "json_factory", "headers"}
_SERVICE_KEYS = {
    "command", "env", "ready_path", "startup_timeout", "url", "cwd", "metrics_url", "metrics",
}  # fmt: skip
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
        raise ConfigError(f"{where}.json_factory", f"expected 'module:function', got {factory!r}")
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
        rate = parse_number(st.get("spawn_rate", 1), f"{here}.spawn_rate", "users per second")
        stages.append((end, users, rate))
        last_end = end
    return LoadShape(kind=kind, stages=tuple(stages))


def _endpoint_budgets(merged: Mapping[str, Any], where: str) -> dict[str, Budget]:
    """``endpoints``: a budget per endpoint key; run figures belong in ``budgets``."""
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
    return endpoint_budgets


def _users_source(
    merged: Mapping[str, Any], where: str
) -> tuple[tuple[Task, ...], str | None, tuple[str, ...]]:
    """What the simulated users do: ``tasks``, or a ``locustfile`` with ``user_classes``."""
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
    return tasks, locustfile, tuple(user_classes)


def _check_endpoint_names(budgets: Mapping[str, Budget], tasks: Sequence[Task], where: str) -> None:
    names = {t.name for t in tasks}
    for ep in budgets:
        if tasks and ep not in names:
            known = ", ".join(t.name for t in tasks)
            raise ConfigError(
                f"{where}.endpoints.{ep}", f"no task has this name; task names: {known}"
            )


def _window(merged: Mapping[str, Any], where: str) -> tuple[float, float]:
    """``duration`` and ``warmup`` in seconds; the warm-up leaves some of the run."""
    duration = parse_duration(merged.get("duration", "60s"), f"{where}.duration")
    if duration <= 0:
        raise ConfigError(f"{where}.duration", f"expected a positive duration, got {duration!r}")
    warmup = parse_duration(merged.get("warmup", 0), f"{where}.warmup")
    if warmup >= duration:
        raise ConfigError(
            f"{where}.warmup", f"warm-up {warmup:g}s leaves nothing of duration {duration:g}s"
        )
    return duration, warmup


def _arrival_rate(merged: Mapping[str, Any], where: str, *, scheduled: bool) -> float | None:
    """The open model's rate; ``scheduled`` when a locustfile or a shape drives the users."""
    rate = merged.get("arrival_rate")
    if rate is None:
        return None
    if parse_number(rate, f"{where}.arrival_rate", "requests per second") <= 0:
        raise ConfigError(f"{where}.arrival_rate", f"expected a rate > 0, got {rate!r}")
    if scheduled:
        raise ConfigError(
            f"{where}.arrival_rate",
            "the open model drives tasks on its own schedule: it takes neither a "
            "locustfile nor a shape",
        )
    return float(rate)


def _tags(
    merged: Mapping[str, Any], key: str, where: str, locustfile: str | None
) -> tuple[str, ...]:
    """``tags`` or ``exclude_tags``: names of a locustfile's ``@tag``s (as ``locust --tags``)."""
    value = merged.get(key, [])
    if not isinstance(value, list) or not all(isinstance(t, str) and t for t in value):
        raise ConfigError(f"{where}.{key}", f"expected a list of tag names, got {value!r}")
    if value and locustfile is None:
        raise ConfigError(f"{where}.{key}", "tags select a locustfile's tasks; set locustfile")
    return tuple(value)


def _scenario(
    name: str, data: Mapping[str, Any], defaults: Mapping[str, Any], where: str,
    lines: Mapping[str, int],
) -> Scenario:  # fmt: skip
    merged = {**defaults, **data}
    budget = budget_from_mapping(merged.get("budgets", {}), f"{where}.budgets")
    endpoint_budgets = _endpoint_budgets(merged, where)
    tasks, locustfile, user_classes = _users_source(merged, where)
    _check_endpoint_names(endpoint_budgets, tasks, where)
    wait_min, wait_max = _wait_time(merged.get("wait_time", 0), f"{where}.wait_time")
    duration, warmup = _window(merged, where)
    shape = _shape(merged["shape"], f"{where}.shape") if "shape" in merged else None
    rate = _arrival_rate(merged, where, scheduled=bool(locustfile or shape))
    users = _positive_int(merged.get("users", 1), f"{where}.users", "a number of users")
    return Scenario(
        name=name,
        users=users,
        spawn_rate=parse_number(merged.get("spawn_rate", users), f"{where}.spawn_rate", "users/s"),
        duration_s=duration,
        wait_min_s=wait_min,
        wait_max_s=wait_max,
        warmup_s=warmup,
        tasks=tasks,
        locustfile=locustfile,
        user_classes=user_classes,
        tags=_tags(merged, "tags", where, locustfile),
        exclude_tags=_tags(merged, "exclude_tags", where, locustfile),
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
        arrival_rate=rate,
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
        metrics_url=_metrics_url(raw.get("metrics_url"), f"{where}.metrics_url"),
        metrics=_service_metrics(raw.get("metrics", {}), f"{where}.metrics"),
    )


# --- service.metrics -------------------------------------------------------------------

_METRICS_URL = re.compile(r"^(https?://\S+|/\S*|:\d+(/\S*)?)$")
#: the units a gauge figure may be in, and the factor to its own unit (bytes, percent)
_GAUGE_UNITS: Mapping[str, Mapping[str, float]] = {
    "rss": {"bytes": 1.0},
    "gpu_memory": {"bytes": 1.0},
    "gpu_utilisation": {"percent": 1.0, "fraction": 100.0},
}
_TIMING_KEYS = {"histogram", "total", "count", "unit"}


def _metrics_url(value: object, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _METRICS_URL.match(value):
        raise ConfigError(
            where, f"expected a URL, a /path or a :port/path (such as :8002/metrics), got {value!r}"
        )
    return value


def _service_metrics(data: object, where: str) -> ServiceMetrics:
    """``service.metrics``: each figure named replaces that figure's default names."""
    raw = _mapping(data, where, set(FIGURES))
    chosen: dict[str, Any] = {}  # figure -> tuple of Gauge or of Timing
    for figure, value in raw.items():
        here = f"{where}.{figure}"
        values = value if isinstance(value, list) and value else [value]
        if figure in _GAUGE_UNITS:
            chosen[figure] = tuple(_gauge(v, here, _GAUGE_UNITS[figure]) for v in values)
        else:
            chosen[figure] = tuple(_timing(v, here) for v in values)
    return dataclasses.replace(DEFAULT_METRICS, **chosen)


def _metric_name(value: object, where: str) -> str:
    if not isinstance(value, str) or not re.match(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$", value):
        raise ConfigError(where, f"expected a Prometheus metric name, got {value!r}")
    return value


def _unit(value: object, where: str, units: Mapping[str, float]) -> str:
    if value not in units:
        raise ConfigError(where, f"expected one of {', '.join(units)}, got {value!r}")
    return str(value)


def _gauge(value: object, where: str, units: Mapping[str, float]) -> Gauge:
    """``name`` or ``{name: ..., unit: ...}``; the unit's factor becomes the scale."""
    if not isinstance(value, Mapping):
        return Gauge(_metric_name(value, where))
    raw = _mapping(value, where, {"name", "unit"})
    unit = _unit(raw.get("unit", next(iter(units))), f"{where}.unit", units)
    return Gauge(_metric_name(raw.get("name"), f"{where}.name"), units[unit])


def _timing(value: object, where: str) -> Timing:
    """A histogram's name (seconds), ``{histogram, unit}`` or ``{total, count, unit}``."""
    if not isinstance(value, Mapping):
        return Timing.histogram(_metric_name(value, where))
    raw = _mapping(value, where, _TIMING_KEYS)
    unit = cast(TimeUnit, _unit(raw.get("unit", "seconds"), f"{where}.unit", SECONDS_PER))
    if "histogram" in raw and not {"total", "count"} & set(raw):
        return Timing.histogram(_metric_name(raw["histogram"], f"{where}.histogram"), unit)
    if "histogram" in raw or "total" not in raw or "count" not in raw:
        raise ConfigError(
            where, f"expected either histogram, or total and count, got {dict(raw)!r}"
        )
    total = _metric_name(raw["total"], f"{where}.total")
    return Timing(total, _metric_name(raw["count"], f"{where}.count"), unit)


class _LineLoader(yaml.SafeLoader):
    """A safe loader that remembers the line of every mapping key (for annotations)."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    result: dict[Any, Any] = {}
    lines: dict[str, int] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in result:
            raise ConfigError(f"line {key_node.start_mark.line + 1}", f"duplicate key {key!r}")
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
