"""The values a thresholds file becomes: ``Budget``, ``Task``, ``LoadShape``, ``Scenario``,
``ServiceSpec``, ``Thresholds``; ``budget_from_mapping`` and ``scenario_settings``.

Pure: no pytest, no yaml, no I/O. ``config`` reads and validates the YAML into these;
markers and ``result.check(**budget)`` go through ``budget_from_mapping``. A ``Budget``
keeps its limits in a mapping keyed by metric key (``core.metrics``), so a new metric
needs a registry entry, not a new field here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pytest_perfgate.core.metrics import METRICS, SEVERITIES, Metric, lookup, metric
from pytest_perfgate.core.service_metrics import DEFAULT_METRICS, ServiceMetrics
from pytest_perfgate.errors import ConfigError

__all__ = [
    "ARRIVALS",
    "HTTP_METHODS",
    "TASK_KINDS",
    "Arrivals",
    "Budget",
    "CompareSpec",
    "ContainerSpec",
    "LoadShape",
    "Scenario",
    "ServiceSpec",
    "Severity",
    "Task",
    "TaskKind",
    "Thresholds",
    "budget_from_mapping",
    "scenario_settings",
]

Severity = Literal["block", "warn"]
TaskKind = Literal["http", "openai_chat", "openai_completions", "sse"]
TASK_KINDS: tuple[TaskKind, ...] = ("http", "openai_chat", "openai_completions", "sse")
Arrivals = Literal["uniform", "poisson", "gamma"]
ARRIVALS: tuple[Arrivals, ...] = ("uniform", "poisson", "gamma")
HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")


# --- budgets -------------------------------------------------------------------------


def _in_registry_order(limits: Mapping[str, float | None]) -> dict[str, float]:
    """Limits keyed by each metric's own key (aliases resolved), in registry order."""
    found: dict[str, float] = {}
    for key, value in limits.items():
        try:
            canonical = metric(key).key
        except KeyError:
            raise TypeError(f"Budget() got an unexpected keyword argument {key!r}") from None
        if value is not None:
            found[canonical] = value
    return {m.key: found[m.key] for m in METRICS if m.key in found}


@dataclass(frozen=True, init=False, repr=False)
class Budget:
    """Limits for one endpoint (or the total) of a scenario; an absent key is not budgeted.

    ``Budget(p95_ms=100, error_rate=0.01, severity="warn", regressions={...})``; each
    metric's limit reads as an attribute (``budget.p95_ms``, ``None`` when not set).
    """

    by_metric: Mapping[str, float]
    severity: Severity
    #: allowances relative to a baseline, ``{"p95_regression": 0.10}`` (see
    #: ``core.regression``); judged only when a run is compared with a baseline
    regressions: Mapping[str, float]

    def __init__(
        self,
        by_metric: Mapping[str, float | None] | None = None,
        *,
        severity: Severity = "block",
        regressions: Mapping[str, float] | None = None,
        **limits: float | None,
    ) -> None:
        object.__setattr__(self, "by_metric", _in_registry_order({**(by_metric or {}), **limits}))
        object.__setattr__(self, "severity", severity)
        object.__setattr__(self, "regressions", dict(regressions or {}))

    def __getattr__(self, name: str) -> float | None:
        """``budget.p95_ms``: the limit of a metric key (or alias), ``None`` when not set."""
        try:
            key = metric(name).key
        except KeyError:
            raise AttributeError(name) from None
        return self.by_metric.get(key)

    def limits(self) -> dict[str, float]:
        """The absolute limits and their values, in registry order (``regressions`` apart)."""
        return dict(self.by_metric)

    def merged(self, other: Budget) -> Budget:
        """This budget with every limit that ``other`` sets replaced by ``other``'s."""
        severity = other.severity if other.severity != "block" else self.severity
        regressions = {**self.regressions, **other.regressions}
        return Budget({**self.by_metric, **other.by_metric}, severity=severity,
                      regressions=regressions)  # fmt: skip

    def __bool__(self) -> bool:
        return bool(self.by_metric or self.regressions)

    def __repr__(self) -> str:
        limits = {**self.by_metric, **self.regressions}
        inner = ", ".join(f"{k}={v:g}" for k, v in limits.items())
        return f"Budget({inner}{', warn' if self.severity == 'warn' else ''})"


def budget_from_mapping(data: object, where: str) -> Budget:
    """Validate a budget mapping (YAML, marker kwargs or ``check(**kw)``) into a ``Budget``.

    Every key is read through the registry (``core.metrics.lookup``): a metric, an alias
    (``mean_ms``), a regression allowance, or ``severity``.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(where, f"expected a mapping of budget keys, got {data!r}")
    limits: dict[str, float] = {}
    regressions: dict[str, float] = {}
    severity: Severity = "block"
    for key, value in data.items():
        here = f"{where}.{key}"
        if key == "severity":
            severity = _severity(value, here)
            continue
        entry = lookup(key, here)
        if isinstance(entry, Metric):
            _refuse_twice(entry, limits, here)
            limits[entry.key] = entry.parse(value, here)
        else:
            regressions[entry.key] = entry.parse(value, here)
    return Budget(limits, severity=severity, regressions=regressions)


def _severity(value: object, where: str) -> Severity:
    if value == "block":
        return "block"
    if value == "warn":
        return "warn"
    raise ConfigError(where, f"expected {' or '.join(map(repr, SEVERITIES))}, got {value!r}")


def _refuse_twice(entry: Metric, limits: Mapping[str, float], where: str) -> None:
    """An alias and its metric (``mean_ms`` and ``avg_ms``) are one budget."""
    if entry.key in limits:
        names = " and ".join((entry.key, *entry.aliases))
        raise ConfigError(where, f"{names} are the same budget; give one")


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
    #: "http" (the request above), or a streamed one the child times token by token
    #: (``load.sse``): "openai_chat", "openai_completions" or "sse"
    kind: TaskKind = "http"
    model: str | None = None
    #: openai kinds: the prompts drawn from, chat message lists or completion strings
    prompts: tuple[Any, ...] = ()
    #: an int, ``{"min": a, "max": b}`` (uniform ints) or ``{"mean": m, "sd": s}`` (clipped
    #: normal); None: the server's default
    max_tokens: int | Mapping[str, float] | None = None
    temperature: float | None = None
    stream: bool = True
    extra_body: Mapping[str, Any] = field(default_factory=dict)
    tokens_field: str | None = None  # sse: the event's field counting its tokens (else 1)

    @property
    def streamed(self) -> bool:
        """Whether the child reads this task's response as a stream of tokens."""
        return self.kind != "http" and self.stream


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
    #: a locustfile's tasks to run (``locust --tags``) and to leave out (``--exclude-tags``)
    tags: tuple[str, ...] = ()
    exclude_tags: tuple[str, ...] = ()
    shape: LoadShape | None = None
    budget: Budget = Budget()
    endpoint_budgets: Mapping[str, Budget] = field(default_factory=dict)
    min_samples: int = 50
    request_timeout_s: float = 10.0
    processes: int = 1
    #: open workload: requests per second started on schedule (None: Locust's closed model)
    arrival_rate: float | None = None
    #: the open model's gaps: equal (uniform), exponential (poisson) or gamma with shape
    #: ``burstiness`` and mean ``1 / arrival_rate`` (vLLM's ``--burstiness``), drawn from ``seed``
    arrivals: Arrivals = "uniform"
    burstiness: float = 1.0
    seed: int = 0
    #: distributed: wait for this many ``locust --worker`` processes started elsewhere
    external_workers: int = 0
    master_bind: str = "127.0.0.1"
    #: per-request objectives (``core.metrics.SLO_KEYS``, in ms) that ``goodput`` counts a
    #: request as good by; None: no ``slo:`` given, so no goodput
    slo: Mapping[str, float] | None = None
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
        given = {"users": users, "spawn_rate": spawn_rate, "processes": processes}
        changes: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
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


def scenario_settings(scenario: Scenario) -> dict[str, Any]:
    """The load a scenario applies, as JSON-ready values: the one ``Scenario`` -> dict.

    A baseline stores it (``meta["settings"]``; ``compare`` checks that the load matches),
    the JSON result writes it, and the child's spec takes the keys it shares. ``shape``
    is the shape's kind, ``stages`` its ``[until_s, users, spawn_rate]`` triples.
    """
    shape = scenario.shape
    return {
        "users": scenario.users,
        "spawn_rate": scenario.spawn_rate,
        "duration_s": scenario.duration_s,
        "wait_s": [scenario.wait_min_s, scenario.wait_max_s],
        "warmup_s": scenario.warmup_s,
        "processes": scenario.processes,
        "request_timeout_s": scenario.request_timeout_s,
        "min_samples": scenario.min_samples,
        "arrival_rate": scenario.arrival_rate,
        "arrivals": scenario.arrivals,
        "burstiness": scenario.burstiness,
        "seed": scenario.seed,
        "shape": shape.kind if shape else None,
        "stages": [list(stage) for stage in shape.stages] if shape else None,
    }


# --- the service and the file --------------------------------------------------------


@dataclass(frozen=True)
class ContainerSpec:
    """The service in a container (``service.container``), started and removed by the gate.

    Either ``image`` (built first from the ``build`` folder when given) that the gate runs
    with ``port`` published on a free 127.0.0.1 port, or the ``service`` of a Compose file
    (``compose_file``) that the gate brings up as a project of its own, with the free port
    in ``PERFGATE_PORT`` for the file to publish, or a ``start`` command (run in the
    foreground; ``{port}`` the free port, ``{name}`` a name for the run) and the ``stop``
    command that removes what it started. ``engine``: podman or docker (``None``: the first
    on PATH).
    """

    image: str | None = None
    build: str | None = None
    dockerfile: str | None = None
    build_args: Mapping[str, str] = field(default_factory=dict)
    #: replaces the image's command; ``{port}`` is ``port``
    args: str | None = None
    #: more options of ``run``, e.g. ``--device nvidia.com/gpu=all``
    options: str | None = None
    compose_file: str | None = None
    service: str = "service"
    #: the port the service listens on inside the container
    port: int = 8000
    engine: str | None = None
    stop_timeout_s: float = 10.0
    start: str | None = None
    stop: str | None = None


@dataclass(frozen=True)
class ServiceSpec:
    """How to reach the system under test: a command to start, a container, or a URL."""

    command: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    ready_path: str = "/health"
    startup_timeout_s: float = 60.0
    url: str | None = None
    cwd: str | None = None
    #: where its Prometheus metrics are (``core.service_metrics.metrics_url``): a URL, a
    #: path or ``:port/path``; ``None``: ``<url>/metrics``
    metrics_url: str | None = None
    #: which of its metrics hold the figures the gate reads (``service.metrics``)
    metrics: ServiceMetrics = DEFAULT_METRICS
    #: the service in a container instead of ``command`` (``service.container``)
    container: ContainerSpec | None = None


@dataclass(frozen=True)
class CompareSpec:
    """``compare_to:``: the baseline of A/B runs (``core.duet``), exactly one of a git
    ``ref`` (started with ``service.command`` from a temporary worktree, or with
    ``command`` when it is given too), a ``command`` or a ``url``; and how the load pairs
    the two sides."""

    ref: str | None = None
    command: str | None = None
    url: str | None = None
    mode: Literal["duet", "interleaved"] = "duet"
    round_s: float = 5.0  # interleaved: seconds per round

    @property
    def label(self) -> str:
        """What the baseline is, for messages: ``HEAD (git worktree)``, a URL, a command."""
        if self.ref is not None:
            return f"{self.ref} (git worktree)"
        return self.url or f"command {self.command}"


@dataclass(frozen=True)
class Thresholds:
    """A whole thresholds file: where it is, the service, the scenarios by name."""

    path: Path
    service: ServiceSpec
    scenarios: Mapping[str, Scenario]
    compare_to: CompareSpec | None = None  # the baseline of A/B runs, if the file names one

    def scenario(self, name: str) -> Scenario:
        try:
            return self.scenarios[name]
        except KeyError:
            known = ", ".join(self.scenarios) or "none"
            raise ConfigError(
                str(self.path), f"unknown scenario {name!r}; known scenarios: {known}"
            ) from None
