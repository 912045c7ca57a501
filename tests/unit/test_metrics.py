"""The metric registry: every entry parses, formats with its unit, and is documented."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from pytest_perfgate.config import BUDGET_HELP as CONFIG_BUDGET_HELP
from pytest_perfgate.core.metrics import BUDGET_HELP, METRICS, REGRESSIONS, Metric, Regression
from pytest_perfgate.core.model import budget_from_mapping
from pytest_perfgate.errors import ConfigError

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
#: README's paragraph that lists the budget keys, from "Budget keys (" to the blank line
BUDGET_PARAGRAPH = README.split("Budget keys (", 1)[1].split("\n\n", 1)[0]
WHERE = "thresholds.yaml: scenarios.light.budgets"


def _keys(entry: Metric | Regression) -> tuple[str, ...]:
    return (entry.key, *entry.aliases) if isinstance(entry, Metric) else (entry.key,)


@pytest.mark.parametrize("entry", [*METRICS, *REGRESSIONS], ids=repr)
def test_every_budget_key_parses_a_valid_value_and_refuses_a_bad_one_naming_it(
    entry: Metric | Regression,
) -> None:
    for key in _keys(entry):
        budget = budget_from_mapping({key: 0.5}, WHERE)
        assert {**budget.limits(), **budget.regressions} == {entry.key: 0.5}
        pattern = rf"^{re.escape(f'{WHERE}.{key}')}: expected .*, got 'fast'$"
        with pytest.raises(ConfigError, match=pattern):
            budget_from_mapping({key: "fast"}, WHERE)


@pytest.mark.parametrize("entry", METRICS, ids=repr)
def test_every_metric_parses_and_formats_with_its_unit(entry: Metric) -> None:
    symbol = entry.unit.symbol
    assert entry.parse(0.5, "x") == 0.5
    assert entry.format(12.5).endswith(f" {symbol}")
    assert entry.format_interval(1.0, 2.0).endswith(f" {symbol}")
    assert entry.format(None) == entry.format(math.nan) == "-"
    assert entry.budget_text(12.5).startswith(entry.column)
    assert entry.relation(failed=True) != entry.relation(failed=False)


@pytest.mark.parametrize("entry", REGRESSIONS, ids=repr)
def test_every_regression_formats_its_change_and_the_figures_with_units(
    entry: Regression,
) -> None:
    assert entry.parse("10%", "x") == pytest.approx(0.10)
    assert entry.format_change(0.1).endswith((" %", " pp"))
    assert entry.format_figures(1.0, 2.0).endswith(f" {entry.metric.unit.symbol}")
    assert entry.label


@pytest.mark.parametrize("entry", [*METRICS, *REGRESSIONS], ids=repr)
def test_every_budget_key_has_help_text_in_budget_help(entry: Metric | Regression) -> None:
    assert entry.help.strip()
    for key in _keys(entry):
        assert BUDGET_HELP[key].strip()
        assert CONFIG_BUDGET_HELP[key] == BUDGET_HELP[key]


@pytest.mark.parametrize("entry", [*METRICS, *REGRESSIONS], ids=repr)
def test_every_budget_key_is_in_the_readme_budget_paragraph(entry: Metric | Regression) -> None:
    for key in _keys(entry):
        assert f"`{key}`" in BUDGET_PARAGRAPH, key


def test_budget_help_holds_exactly_the_registry_and_severity() -> None:
    keys = {k for e in (*METRICS, *REGRESSIONS) for k in _keys(e)}
    assert set(BUDGET_HELP) == keys | {"severity"}
