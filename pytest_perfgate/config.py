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
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import yaml

from pytest_perfgate.core.metrics import BUDGET_HELP, METRICS, MS, REGRESSIONS, SLO_KEYS
from pytest_perfgate.core.model import (
    HTTP_METHODS,
    TASK_KINDS,
    Budget,
    CompareSpec,
    ContainerSpec,
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
    "arrivals", "burstiness", "seed",
    "tags", "exclude_tags", "slo",
}  # fmt: skip
_DEFAULT_KEYS = _SCENARIO_KEYS - {
    "tasks", "description", "locustfile", "user_classes", "tags", "exclude_tags",
}  # fmt: skip
_TASK_KEYS = {"method", "path", "name", "weight", "json", "json_factory", "headers"}
#: a streaming task's own keys (``kind`` not ``http``; see ``_stream_task``)
_STREAM_TASK_KEYS = {
    "kind", "model", "prompt", "messages", "prompts_file", "max_tokens", "temperature",
    "stream", "extra_body", "tokens_field",
}  # fmt: skip
_SERVICE_KEYS = {
    "command", "env", "ready_path", "startup_timeout", "url", "cwd", "metrics_url", "metrics",
    "container",
}  # fmt: skip
_CONTAINER_KEYS = {
    "image", "build", "dockerfile", "build_args", "args", "options", "compose_file",
    "service", "port", "engine", "stop_timeout", "start", "stop",
}  # fmt: skip
_TOP_KEYS = {"version", "service", "defaults", "scenarios", "compare_to"}
_COMPARE_KEYS = {"ref", "command", "url", "mode", "round"}
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


def _task(data: object, where: str, base: Path | None = None) -> Task:
    raw = _mapping(data, where, _TASK_KEYS | _STREAM_TASK_KEYS)
    if raw.get("kind", "http") != "http":
        return _stream_task(raw, where, base or Path.cwd())
    extra = sorted(set(raw) & _STREAM_TASK_KEYS - {"kind"})
    if extra:
        raise ConfigError(
            f"{where}.{extra[0]}", f"applies to streaming tasks; set kind to one of {_KINDS}"
        )
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
    merged: Mapping[str, Any], where: str, base: Path | None = None
) -> tuple[tuple[Task, ...], str | None, tuple[str, ...]]:
    """What the simulated users do: ``tasks``, or a ``locustfile`` with ``user_classes``."""
    tasks_raw = merged.get("tasks", [])
    if not isinstance(tasks_raw, list):
        raise ConfigError(f"{where}.tasks", f"expected a list of tasks, got {tasks_raw!r}")
    tasks = tuple(_task(t, f"{where}.tasks[{i}]", base) for i, t in enumerate(tasks_raw))
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


def _slo(
    merged: Mapping[str, Any], budget: Budget, endpoint_budgets: Mapping[str, Budget], where: str
) -> dict[str, float] | None:
    """``slo: {ttft_ms: 500, tpot_ms: 50, e2e_ms: 10000}``: the objectives goodput counts by.

    Each value is read with the ``MS`` unit; a ``goodput`` budget needs an ``slo``.
    """
    if "slo" not in merged:
        budgets = {"budgets": budget, **{f"endpoints.{e}": b for e, b in endpoint_budgets.items()}}
        for key, b in budgets.items():
            if b.goodput is not None:
                raise ConfigError(
                    f"{where}.{key}.goodput",
                    f"goodput counts the requests meeting every objective of the scenario's "
                    f"slo; add slo: with any of {', '.join(SLO_KEYS)}",
                )
        return None
    raw = _mapping(merged["slo"], f"{where}.slo", set(SLO_KEYS))
    if not raw:
        raise ConfigError(f"{where}.slo", f"expected any of {', '.join(SLO_KEYS)}, got {{}}")
    return {str(k): MS.parse(v, f"{where}.slo.{k}") for k, v in raw.items()}


def _scenario(
    name: str, data: Mapping[str, Any], defaults: Mapping[str, Any], where: str,
    lines: Mapping[str, int], base: Path | None = None,
) -> Scenario:  # fmt: skip
    merged = {**defaults, **data}
    budget = budget_from_mapping(merged.get("budgets", {}), f"{where}.budgets")
    endpoint_budgets = _endpoint_budgets(merged, where)
    tasks, locustfile, user_classes = _users_source(merged, where, base)
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
        **_arrivals(merged, where, rate),
        external_workers=_positive_int(
            merged.get("external_workers", 0), f"{where}.external_workers", "workers", minimum=0
        ),
        master_bind=str(merged.get("master_bind", "127.0.0.1")),
        slo=_slo(merged, budget, endpoint_budgets, where),
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
        container=_container(raw, where),
    )


def _container(service: Mapping[str, Any], where: str) -> ContainerSpec | None:
    """``service.container``: an image to run or a Compose file's service (not both)."""
    if "container" not in service:
        return None
    where = f"{where}.container"
    raw = _mapping(service["container"], where, _CONTAINER_KEYS)
    if service.get("command") is not None:
        raise ConfigError(where, "give service.command or service.container, not both")
    text = {key: _text(raw.get(key), f"{where}.{key}") for key in _CONTAINER_KEYS - {
        "build_args", "port", "stop_timeout"}}  # fmt: skip
    ways = [key for key in ("image", "compose_file", "start") if text[key] is not None]
    if len(ways) != 1:
        raise ConfigError(
            where, f"expected image, compose_file or start (one of them), got {dict(raw)!r}"
        )
    if ways != ["image"]:
        for key in ("build", "dockerfile", "args", "options"):
            if text[key] is not None:
                raise ConfigError(f"{where}.{key}", f"applies to image, not to {ways[0]}")
    if (text["start"] is None) != (text["stop"] is None):
        raise ConfigError(where, "start and stop go together: stop removes what start started")
    if text["start"] is not None and "{port}" not in text["start"]:
        raise ConfigError(
            f"{where}.start",
            f"expected a command with a {{port}} placeholder, got {text['start']!r}",
        )
    if text["engine"] not in (None, "podman", "docker"):
        raise ConfigError(f"{where}.engine", f"expected podman or docker, got {text['engine']!r}")
    build_args = raw.get("build_args", {})
    if not isinstance(build_args, Mapping):
        raise ConfigError(f"{where}.build_args", f"expected a mapping, got {build_args!r}")
    return ContainerSpec(
        image=text["image"], build=text["build"], dockerfile=text["dockerfile"],
        build_args={str(k): str(v) for k, v in build_args.items()},
        args=text["args"], options=text["options"], compose_file=text["compose_file"],
        service=text["service"] or "service", engine=text["engine"],
        port=_positive_int(raw.get("port", 8000), f"{where}.port", "a port"),
        stop_timeout_s=parse_duration(raw.get("stop_timeout", 10), f"{where}.stop_timeout"),
        start=text["start"], stop=text["stop"],
    )  # fmt: skip


def _text(value: object, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(where, f"expected a non-empty string, got {value!r}")
    return value


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
        scenarios[name] = _scenario(name, raw_body, defaults, where, lines, path.parent)
    compare = _compare_to(clean.get("compare_to"), f"{label}: compare_to")
    return Thresholds(path=path.resolve(), service=service, scenarios=scenarios, compare_to=compare)


# --- compare_to ------------------------------------------------------------------------


def _compare_to(data: object, where: str) -> CompareSpec | None:
    """``compare_to:``, the baseline of A/B runs: one of ``ref``, ``command``, ``url``
    (``ref`` with a ``command``: that command, run in the ref's worktree)."""
    if data is None:
        return None
    raw = _mapping(data, where, _COMPARE_KEYS)
    given = [k for k in ("ref", "command", "url") if raw.get(k) is not None]
    if len(given) != 1 and given != ["ref", "command"]:
        raise ConfigError(
            where,
            "expected exactly one of ref, command, url (or ref with a command), got "
            + (", ".join(given) or "none"),
        )
    for key in given:
        if not isinstance(raw[key], str) or not raw[key].strip():
            raise ConfigError(f"{where}.{key}", f"expected a non-empty string, got {raw[key]!r}")
    command, url = raw.get("command"), raw.get("url")
    if command is not None and "{port}" not in command:
        raise ConfigError(
            f"{where}.command", f"expected a command with a {{port}} placeholder, got {command!r}"
        )
    if url is not None and not re.match(r"^https?://", url):
        raise ConfigError(f"{where}.url", f"expected an http(s):// URL, got {url!r}")
    mode = raw.get("mode", "duet")
    if mode not in ("duet", "interleaved"):
        raise ConfigError(f"{where}.mode", f"expected duet or interleaved, got {mode!r}")
    round_s = parse_duration(raw.get("round", 5), f"{where}.round")
    if not round_s > 0:
        raise ConfigError(f"{where}.round", f"expected a positive duration, got {raw['round']!r}")
    return CompareSpec(
        ref=raw.get("ref"), command=command, url=url and url.rstrip("/"), mode=mode,
        round_s=round_s,
    )  # fmt: skip


# --- streaming tasks and arrivals --------------------------------------------------------

_KINDS = ", ".join(TASK_KINDS)
_DEFAULT_PATHS = {"openai_chat": "/v1/chat/completions", "openai_completions": "/v1/completions"}


def _stream_task(raw: Mapping[str, Any], where: str, base: Path) -> Task:
    """A task whose response the child reads as a stream of tokens (``load.sse``)."""
    kind = raw["kind"]
    if kind not in TASK_KINDS:
        raise ConfigError(f"{where}.kind", f"expected one of {_KINDS}, got {kind!r}")
    openai = kind in _DEFAULT_PATHS
    if openai and ("json" in raw or "json_factory" in raw):
        raise ConfigError(where, f"{kind} builds its body: put extra fields in extra_body")
    if not openai:
        _refuse(raw, where, kind)
    plain = {k: v for k, v in raw.items() if k not in _STREAM_TASK_KEYS}
    plain["method"] = raw.get("method", "POST")
    plain["path"] = raw.get("path", _DEFAULT_PATHS.get(kind))
    return dataclasses.replace(
        _task(plain, where),
        kind=kind,
        model=_optional_str(raw.get("model"), f"{where}.model"),
        prompts=_prompts(raw, where, kind, base) if openai else (),
        max_tokens=_max_tokens(raw.get("max_tokens"), f"{where}.max_tokens"),
        temperature=_temperature(raw.get("temperature"), f"{where}.temperature"),
        stream=_flag(raw.get("stream", True), f"{where}.stream"),
        extra_body=_extra_body(raw.get("extra_body", {}), f"{where}.extra_body"),
        tokens_field=_optional_str(raw.get("tokens_field"), f"{where}.tokens_field"),
    )


_OPENAI_ONLY = ("model", "prompt", "messages", "prompts_file", "max_tokens", "temperature")


def _refuse(raw: Mapping[str, Any], where: str, kind: str) -> None:
    for key in (*_OPENAI_ONLY, "extra_body"):
        if key in raw:
            raise ConfigError(f"{where}.{key}", f"applies to openai kinds, not to kind {kind}")


def _optional_str(value: object, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError(where, f"expected a non-empty string, got {value!r}")
    return value


def _flag(value: object, where: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(where, f"expected true or false, got {value!r}")
    return value


def _temperature(value: object, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 2:
        raise ConfigError(where, f"expected a number from 0 to 2, got {value!r}")
    return float(value)


def _extra_body(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise ConfigError(where, f"expected a mapping of request fields, got {value!r}")
    return dict(value)


def _max_tokens(value: object, where: str) -> int | dict[str, float] | None:
    """An int, ``{min, max}`` (uniform ints) or ``{mean, sd}`` (a normal clipped at 1)."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return _positive_int(value, where, "a number of tokens")
    if isinstance(value, Mapping) and set(value) == {"min", "max"}:
        low = _positive_int(value["min"], f"{where}.min", "a number of tokens")
        high = _positive_int(value["max"], f"{where}.max", "a number of tokens")
        if low > high:
            raise ConfigError(where, f"min {low} is above max {high}")
        return {"min": low, "max": high}
    if isinstance(value, Mapping) and set(value) == {"mean", "sd"}:
        mean = parse_number(value["mean"], f"{where}.mean", "tokens")
        sd = parse_number(value["sd"], f"{where}.sd", "tokens")
        if mean < 1 or sd < 0:
            raise ConfigError(where, f"expected mean >= 1 and sd >= 0, got {dict(value)!r}")
        return {"mean": mean, "sd": sd}
    raise ConfigError(
        where, f"expected tokens (64), {{min: 16, max: 128}} or {{mean: 64, sd: 16}}, got {value!r}"
    )


def _prompts(raw: Mapping[str, Any], where: str, kind: str, base: Path) -> tuple[Any, ...]:
    """The prompts drawn from: ``prompt``, ``messages`` (chat) or ``prompts_file`` lines."""
    given = [k for k in ("prompt", "messages", "prompts_file") if k in raw]
    if len(given) != 1:
        raise ConfigError(where, f"give one of prompt, messages or prompts_file, got {given}")
    key = given[0]
    if key == "prompts_file":
        return _prompts_file(raw[key], f"{where}.prompts_file", kind, base)
    return (_prompt({key: raw[key]}, f"{where}.{key}", kind),)


def _prompt(item: object, where: str, kind: str) -> Any:
    """One prompt: a string, or (chat) a list of ``{role, content}`` messages."""
    if isinstance(item, Mapping) and len(item) == 1 and isinstance(item.get("prompt"), str):
        return item["prompt"]
    messages = item.get("messages") if isinstance(item, Mapping) and len(item) == 1 else None
    if kind == "openai_chat" and messages is not None and _is_messages(messages):
        return [dict(m) for m in messages]
    shown = item.get("prompt", item.get("messages")) if isinstance(item, Mapping) else item
    chat = " or a list of {role, content} messages" if kind == "openai_chat" else ""
    raise ConfigError(where, f"expected a string{chat}, got {shown!r}")


def _is_messages(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(m, Mapping) and isinstance(m.get("role"), str) for m in value)
        and all("content" in m for m in value)
    )


def _prompts_file(value: object, where: str, kind: str, base: Path) -> tuple[Any, ...]:
    """A JSONL file beside the thresholds file: ``{"prompt": ...}`` or ``{"messages": ...}``."""
    if not isinstance(value, str) or not value:
        raise ConfigError(where, f"expected a file path, got {value!r}")
    path = base / value
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(where, f"cannot read {path}: {exc.strerror or exc}") from None
    prompts = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        here = f"{where}: {value} line {number}"
        try:
            item = json.loads(line)
        except ValueError as exc:
            raise ConfigError(here, f"not JSON ({exc}): {line[:80]!r}") from None
        prompts.append(_prompt(item, here, kind))
    if not prompts:
        raise ConfigError(where, f"{path} holds no prompt")
    return tuple(prompts)


def _arrivals(merged: Mapping[str, Any], where: str, rate: float | None) -> dict[str, Any]:
    """The open model's gaps: ``arrivals`` (uniform, poisson), ``burstiness`` (gamma), ``seed``."""
    given = [k for k in ("arrivals", "burstiness") if k in merged]
    if given and rate is None:
        raise ConfigError(f"{where}.{given[0]}", "applies to the open model: set arrival_rate")
    arrivals = merged.get("arrivals", "uniform")
    if arrivals not in ("uniform", "poisson"):
        raise ConfigError(f"{where}.arrivals", f"expected uniform or poisson, got {arrivals!r}")
    burstiness = 1.0
    if "burstiness" in merged:
        value = merged["burstiness"]
        burstiness = parse_number(value, f"{where}.burstiness", "a gamma shape")
        if not burstiness > 0 or ("arrivals" in merged and arrivals == "uniform"):
            raise ConfigError(
                f"{where}.burstiness",
                f"expected a gamma shape > 0 with poisson arrivals (or none), got {value!r}",
            )
        arrivals = "gamma"
    seed = merged.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"{where}.seed", f"expected an integer, got {seed!r}")
    return {"arrivals": arrivals, "burstiness": burstiness, "seed": seed}
