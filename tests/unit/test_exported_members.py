"""The public surface of ``pytest_perfgate``: ``__all__`` is what the package exports.

As httpx's tests/test_exported_members.py: a name added to the package without a place
in ``__all__`` (or the reverse) fails here, so the surface changes only on purpose. The
names load on first use (``__getattr__``), so the package is read through ``dir()``.
"""

from __future__ import annotations

import subprocess
import sys
import types

import pytest

import pytest_perfgate


def _exported() -> list[str]:
    return sorted(
        name
        for name in dir(pytest_perfgate)
        if not name.startswith("_")
        and not isinstance(getattr(pytest_perfgate, name), types.ModuleType)  # subpackages
        and name != "annotations"  # from __future__ import annotations
    )


def test_all_lists_every_public_name_of_the_package_in_order() -> None:
    assert pytest_perfgate.__all__ == _exported()


def test_the_public_surface_is_pinned() -> None:
    assert pytest_perfgate.__all__ == [
        "Budget",
        "BudgetExceeded",
        "Check",
        "ConfigError",
        "EndpointStats",
        "MachineBusy",
        "Outcome",
        "PerfgateError",
        "RunStats",
        "Sample",
        "Scenario",
        "ScenarioFailed",
        "Verdict",
    ]


def test_every_exported_member_is_defined_in_the_package() -> None:
    for name in pytest_perfgate.__all__:
        module = getattr(pytest_perfgate, name).__module__
        assert module.startswith("pytest_perfgate."), (name, module)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="has no attribute 'Nope'"):
        _ = pytest_perfgate.Nope  # type: ignore[attr-defined]


def test_importing_the_package_loads_none_of_its_modules() -> None:
    # a subprocess: this pytest process already holds them
    code = (
        "import sys, pytest_perfgate; "
        "print(sorted(m for m in sys.modules if m.startswith('pytest_perfgate.')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_the_version_is_a_dotted_string() -> None:
    parts = pytest_perfgate.__version__.split(".")
    assert len(parts) >= 3 and all(p.isdigit() for p in parts[:3])
