"""The metric registry: every budget metric and every figure the gate reports, defined once.

Pure: no pytest, no I/O. Each ``Metric`` carries its budget key (and aliases), the label
it has in a sentence and in a table column, its unit (how it is parsed from YAML and
markers, and how a value is written), whether it is a ceiling or a floor, whether it
belongs to an endpoint or to the whole run, how it is judged, and its help text. Config
parsing, verdicts, breach lines, the terminal/HTML/Markdown tables, the JSON, ``perfgate
compare``, baselines and the stopping rule all read it; none of them keeps a table of its
own. Adding a metric is one entry here plus its measurement (``tests/unit/test_metrics.py``
walks the registry: every entry parses, formats and is in README's budget table).

Regression allowances (``p95_regression: "10%"``) are ``Regression`` entries over a
``Metric``: how much the figure may move against a baseline.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from pytest_perfgate.core.numbers import format_count, format_ms, format_number, format_percent
from pytest_perfgate.core.parsing import parse_duration, parse_fraction, parse_number, parse_share
from pytest_perfgate.errors import ConfigError

__all__ = [
    "BUDGET_HELP",
    "METRICS",
    "REGRESSIONS",
    "SEVERITIES",
    "SLO_KEYS",
    "TOKENS_PER_S",
    "Metric",
    "Regression",
    "Series",
    "Unit",
    "lookup",
    "metric",
    "regression",
]

Direction = Literal["ceiling", "floor"]
Scope = Literal["endpoint", "run"]
#: how a metric is judged (see ``core.verdict``): an interval on a quantile, on the mean,
#: on a proportion; or a fact compared as it is (the maximum, a throughput, a run figure)
Judge = Literal["quantile", "mean", "proportion", "fact"]
#: the values a metric is computed over: every request's response time ("latency", which
#: is also the series of the request-level figures: error rate, throughput), the time to
#: first token of each streamed response ("ttft"), every gap between generated tokens
#: ("itl", per token), each streamed response's time per output token ("tpot"), or the
#: streamed responses as a whole ("stream": tokens per second, goodput)
Series = Literal["latency", "ttft", "itl", "tpot", "stream"]


# --- units -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Unit:
    """How values of one kind are parsed and written: ``412 ms``, ``1.23 %``, ``9.8 req/s``."""

    symbol: str  # "ms", "%", "req/s", "MB", "s"
    what: str  # what a parser expects, for error messages: "a number of milliseconds"
    parser: Callable[[object, str, str], float]
    number: Callable[[float], str]  # the value without the unit
    floor_at_zero: bool = False  # an interval's unbounded lower side reads as 0
    never: str = ""  # how +inf reads, unit and all (recovery: "never"); "" for "inf <unit>"

    def parse(self, value: object, where: str) -> float:
        return self.parser(value, where, self.what)

    def format(self, value: float | None) -> str:
        """``412 ms``; ``-`` when unknown (``None`` or NaN)."""
        if value is None or math.isnan(value):
            return "-"
        if self.never and value == math.inf:
            return self.never
        return f"{self.number(value)} {self.symbol}"

    def bare(self, value: float | None) -> str:
        """``412``: the number alone, for a column headed by the unit; ``-`` when unknown."""
        if value is None or math.isnan(value):
            return "-"
        return self.number(value)

    def format_interval(self, low: float, high: float) -> str:
        """``238-265 ms``: one unit for both sides."""
        if self.floor_at_zero:
            low = max(low, 0.0)
        return f"{self.number(low)}-{self.number(high)} {self.symbol}"


def _number_parser(value: object, where: str, what: str) -> float:
    return parse_number(value, where, what)


def _fraction_parser(value: object, where: str, what: str) -> float:
    return parse_fraction(value, where)


def _duration_parser(value: object, where: str, what: str) -> float:
    return parse_duration(value, where)


def _seconds(value: float) -> str:
    return "never" if math.isinf(value) and value > 0 else f"{value:.0f}"


MS = Unit("ms", "a number of milliseconds", _number_parser, format_ms, floor_at_zero=True)
SHARE = Unit("%", "a fraction such as 0.01 or '1%'", _fraction_parser, format_percent)
RPS = Unit("req/s", "a number of requests per second", _number_parser, format_number)
MB = Unit("MB", "a number of megabytes", _number_parser, format_count)
SECONDS = Unit("s", "a duration such as '10s'", _duration_parser, _seconds, never="never")
UTILISATION = Unit("%", "a utilisation in percent", _number_parser, lambda v: f"{v:.0f}")
TOKENS_PER_S = Unit("tok/s", "a number of generated tokens per second", _number_parser,
                    format_number)  # fmt: skip


# --- metrics ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Metric:
    """One budgeted (or reported) figure; ``key`` is its budget key in YAML and markers."""

    key: str
    label: str  # in a sentence: "light: Total p95 412 ms > budget 300 ms"; "" when the unit says it
    column: str  # a table column or a short label: "p95", "errors", "req/s"
    unit: Unit
    direction: Direction
    scope: Scope
    judge: Judge
    help: str
    aliases: tuple[str, ...] = ()
    q: float | None = None  # the quantile of a "quantile" metric
    stat: str | None = None  # the EndpointStats field it reads ("p95", "error_rate", "rps")
    absent: str = "no request was made"  # why a run figure can be missing (its budget INVALID)
    series: Series = "latency"  # the values it is computed over (``Series``)

    def __repr__(self) -> str:
        return f"Metric({self.key!r})"

    def parse(self, value: object, where: str) -> float:
        return self.unit.parse(value, where)

    def format(self, value: float | None) -> str:
        return self.unit.format(value)

    def bare(self, value: float | None) -> str:
        return self.unit.bare(value)

    def format_interval(self, low: float, high: float) -> str:
        return self.unit.format_interval(low, high)

    @property
    def floor(self) -> bool:
        return self.direction == "floor"

    @property
    def streamed(self) -> bool:
        """Whether it is a figure of streamed responses (absent from rows without any)."""
        return self.series != "latency"

    def breached(self, observed: float, limit: float) -> bool:
        """Whether ``observed`` is on the wrong side of ``limit``."""
        return observed < limit if self.floor else observed > limit

    def relation(self, *, failed: bool) -> str:
        """The comparison a breach (or a pass) line reads: ``>``, ``<=``, ``<``, ``>=``."""
        if self.floor:
            return "<" if failed else ">="
        return ">" if failed else "<="

    def budget_text(self, limit: float) -> str:
        """The budget as a table reads it: ``p95 < 100 ms``, ``req/s >= 10 req/s``."""
        return f"{self.column} {'>=' if self.floor else '<'} {self.format(limit)}"


def _quantile(q: float, name: str, word: str) -> Metric:
    return Metric(
        f"{name}_ms", name, name, MS, "ceiling", "endpoint", "quantile",
        f"{word} response time must stay below this many milliseconds", q=q, stat=name,
    )  # fmt: skip


_GPU_ABSENT = "no GPU telemetry: no NVIDIA GPU, and the service's metrics have none"
_STREAM_ABSENT = (
    "no streamed response: the endpoint's responses carried no tokens (only a streaming "
    "task measures TTFT, inter-token latency and tokens)"
)
_SERIES_WORDS = {
    "ttft": ("TTFT", "time to first token (to the first chunk with generated content)"),
    "itl": ("ITL", "inter-token latency (each gap between generated tokens, per token)"),
    "tpot": ("TPOT", "time per output token of each streamed response"),
}


def _stream_quantile(series: Series, q: float, name: str, word: str) -> Metric:
    short, what = _SERIES_WORDS[series]
    label = f"{short} {name}"
    return Metric(
        f"{series}_{name}_ms", label, label, MS, "ceiling", "endpoint", "quantile",
        f"{word} {what} must stay below this many milliseconds", q=q,
        stat=f"{series}_{name}", absent=_STREAM_ABSENT, series=series,
    )  # fmt: skip


METRICS: tuple[Metric, ...] = (
    _quantile(0.50, "p50", "median"),
    _quantile(0.95, "p95", "95th percentile"),
    _quantile(0.99, "p99", "99th percentile"),
    Metric("avg_ms", "mean", "mean", MS, "ceiling", "endpoint", "mean",
           "mean response time must stay below this many milliseconds",
           aliases=("mean_ms",), stat="mean"),
    Metric("max_ms", "max", "max", MS, "ceiling", "endpoint", "fact",
           "slowest response must stay below this many milliseconds", stat="max"),
    Metric("error_rate", "error rate", "errors", SHARE, "ceiling", "endpoint", "proportion",
           "share of failed requests must stay below this fraction (0.01 = 1 %)",
           stat="error_rate"),
    Metric("min_rps", "", "req/s", RPS, "floor", "endpoint", "fact",
           "throughput must reach at least this many requests per second", stat="rps"),
    Metric("gpu_mem_mb", "GPU memory", "GPU memory", MB, "ceiling", "run", "fact",
           "peak GPU memory used during the run must stay below this many MB",
           absent=_GPU_ABSENT),
    Metric("gpu_util_min", "GPU utilisation", "GPU util", UTILISATION, "floor", "run", "fact",
           "mean GPU utilisation during the run must reach this many percent",
           absent=_GPU_ABSENT),
    Metric("hard_error_rate", "hard error rate", "hard errors", SHARE, "ceiling", "run", "fact",
           "share of requests failing other than by a 429/503 (5xx, timeouts, no answer) "
           "must stay below this fraction"),
    Metric("recovery_s", "recovery after the spike", "recovery", SECONDS, "ceiling", "run", "fact",
           "after the peak stage of a shape, the P95 must be back within 20 % (+10 ms) of its "
           "level before the spike within this many seconds",
           absent="no recovery to measure: it needs a shape with stages before and after its "
           "peak, and requests before the peak"),
    Metric("rss_growth_mb", "service memory growth", "RSS growth", MB, "ceiling", "run", "fact",
           "the service's resident memory may grow by at most this many MB over the run "
           "(its metrics)",
           absent="the service's metrics have no resident memory (see service.metrics.rss)"),
    _stream_quantile("ttft", 0.50, "p50", "median"),
    _stream_quantile("ttft", 0.95, "p95", "95th percentile"),
    _stream_quantile("ttft", 0.99, "p99", "99th percentile"),
    _stream_quantile("itl", 0.95, "p95", "95th percentile"),
    _stream_quantile("itl", 0.99, "p99", "99th percentile"),
    _stream_quantile("tpot", 0.95, "p95", "95th percentile"),
    Metric("output_tokens_per_s", "output tokens/s", "tok/s", TOKENS_PER_S, "floor",
           "endpoint", "fact",
           "generated tokens per second over the measured window, all streams together, "
           "must reach at least this many", stat="output_tokens_per_s",
           absent=_STREAM_ABSENT, series="stream"),
    Metric("goodput", "goodput", "goodput", SHARE, "floor", "endpoint", "proportion",
           "share of the streaming endpoints' requests meeting every per-request slo: of the "
           "scenario (errors and malformed streams are misses) must reach this fraction",
           stat="goodput", series="stream",
           absent="no goodput: it needs streamed responses and a per-request slo: "
           "(ttft_ms, tpot_ms, e2e_ms) in the scenario"),
)  # fmt: skip


# --- regressions -----------------------------------------------------------------------

#: how an allowance against a baseline is read: a relative growth (latency), a drop
#: (throughput, a share of it) or percentage points (a rate)
Change = Literal["growth", "drop", "points"]


@dataclass(frozen=True)
class Regression:
    """An allowance against a baseline: ``p95_regression: "10%"`` lets the p95 grow by 10 %."""

    key: str
    metric: Metric
    change: Change
    help: str

    def __repr__(self) -> str:
        return f"Regression({self.key!r})"

    @property
    def label(self) -> str:
        return self.metric.label or "throughput"

    @property
    def column(self) -> str:
        return f"{self.metric.column} vs baseline"

    def parse(self, value: object, where: str) -> float:
        return parse_share(value, where, at_most_one=self.change != "growth")

    def format_change(self, change: float) -> str:
        """``+31 %``, ``+4.2 %``, ``+0.50 pp``; a throughput drop reads as a negative change."""
        if self.change == "points":
            return f"{100 * change:+.2f} pp"
        if self.change == "drop":
            change = -change
        if math.isinf(change):
            return "+inf %" if change > 0 else "-inf %"
        percent = 100 * change
        return f"{percent:+.1f} %" if abs(percent) < 9.95 else f"{percent:+.0f} %"

    def format(self, change: float | None) -> str:
        """A change as a table cell reads it (``format_change``); ``-`` when unknown."""
        if change is None or math.isnan(change):
            return "-"
        return self.format_change(change)

    def format_interval(self, low: float, high: float) -> str:
        """``+18 % to +45 %``: an interval of the change (a drop's, read as a change)."""
        if self.change == "drop":
            low, high = high, low
        return f"{self.format_change(low)} to {self.format_change(high)}"

    def budget_text(self, allowance: float) -> str:
        """The allowance as a table reads it: ``p95 vs baseline < +10 %``, a drop
        ``req/s vs baseline >= -10 %``."""
        op = ">=" if self.change == "drop" else "<"
        return f"{self.column} {op} {self.format_change(allowance)}"

    def format_figures(self, base: float, new: float) -> str:
        """``100 -> 131 ms``: the figure on both sides, one unit."""
        unit = self.metric.unit
        return f"{unit.number(base)} -> {unit.number(new)} {unit.symbol}"


def _latency_regression(name: str, word: str) -> Regression:
    return Regression(
        f"{name}_regression", metric(f"{name}_ms"), "growth",
        f"{word} may grow by at most this share over the baseline ('10%')",
    )  # fmt: skip


_BY_KEY: dict[str, Metric] = {}
for _m in METRICS:
    for _k in (_m.key, *_m.aliases):
        _BY_KEY[_k] = _m


def metric(key: str) -> Metric:
    """The metric of a budget key or alias; ``KeyError`` for an unknown key."""
    return _BY_KEY[key]


REGRESSIONS: tuple[Regression, ...] = (
    _latency_regression("p50", "median"),
    _latency_regression("p95", "95th percentile"),
    _latency_regression("p99", "99th percentile"),
    _latency_regression("avg", "mean response time"),
    Regression("error_rate_regression", metric("error_rate"), "points",
               "error rate may rise by at most this many percentage points over the baseline "
               "('0.5%' = 0.005)"),
    Regression("rps_regression", metric("min_rps"), "drop",
               "throughput may drop by at most this share below the baseline ('10%')"),
    _latency_regression("ttft_p95", "95th percentile time to first token"),
    _latency_regression("tpot_p95", "95th percentile time per output token"),
    Regression("output_tokens_regression", metric("output_tokens_per_s"), "drop",
               "output tokens per second may drop by at most this share below the baseline "
               "('10%')"),
)  # fmt: skip
_REGRESSION_BY_KEY = {r.key: r for r in REGRESSIONS}


def regression(key: str) -> Regression:
    """The regression allowance of ``key``; ``KeyError`` for an unknown key."""
    return _REGRESSION_BY_KEY[key]


def lookup(key: str, where: str) -> Metric | Regression:
    """The metric or regression of a budget key; ``ConfigError`` naming ``where`` otherwise."""
    if key in _BY_KEY:
        return _BY_KEY[key]
    if key in _REGRESSION_BY_KEY:
        return _REGRESSION_BY_KEY[key]
    known = ", ".join(BUDGET_HELP)
    raise ConfigError(where, f"unknown budget key {key!r}; known keys: {known}")


SEVERITIES = ("block", "warn")

#: the per-request service-level objectives a scenario's ``slo:`` may set (milliseconds,
#: read with the ``MS`` unit): what ``goodput`` counts a request as good by
SLO_KEYS: Mapping[str, str] = {
    "ttft_ms": "time to first token at most this many milliseconds",
    "tpot_ms": "time per output token at most this many milliseconds",
    "e2e_ms": "whole response at most this many milliseconds",
}

#: every budget key and its help text, in registry order: the one schema behind YAML
#: budgets, ``@pytest.mark.perf_budget``, ``result.check(**budget)`` and ``--markers``
BUDGET_HELP: Mapping[str, str] = {
    **{
        k: (m.help if k == m.key else f"alias of {m.key}")
        for m in METRICS
        for k in (m.key, *m.aliases)
    },
    "severity": "'block' fails the test on a breach, 'warn' only reports it",
    **{r.key: r.help for r in REGRESSIONS},
}
