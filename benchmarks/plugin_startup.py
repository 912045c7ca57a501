"""What the plugin costs a project that does not use it: import time and pytest start-up.

    .venv/bin/python benchmarks/plugin_startup.py [--repeat 20] [--source DIR]

In a temporary project with one trivial test and NO thresholds file, side by side in one
run, the commands of each pair alternating so that a busy machine slows both alike:

- import: ``python -c "import pytest_perfgate.plugin"`` against ``python -c "import pytest"``;
- start-up: ``python -m pytest --collect-only -q`` with the plugin against the same with
  ``-p no:perfgate``, with every plugin installed in the environment loaded as usual;
- bare start-up: the same with ``PYTEST_DISABLE_PLUGIN_AUTOLOAD=1``, ``-p
  pytest_perfgate.plugin`` against nothing: the plugin beside pytest alone, where its
  share is largest.

Bytecode is written (``PYTHONDONTWRITEBYTECODE`` is dropped from the environment), as on
a developer's machine or in CI: without it pytest rewrites the asserts of every plugin
module again in every run, and that, not the plugins, is then what the figures measure.

It prints the median wall time of each command over ``--repeat`` runs (after one warm-up
run each, so that bytecode is compiled) and the ratio of the pair; the target for the
start-up ratio is at most 1.05. ``--source DIR`` measures the ``pytest_perfgate`` package
in DIR instead (put first on PYTHONPATH, ahead of the installed one): a checkout of an
earlier commit gives the "before" figure.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

TARGET_RATIO = 1.05
PYTHON = sys.executable


def run_once(argv: Sequence[str], cwd: Path, env: Mapping[str, str]) -> float:
    """Seconds of wall time of one run of ``argv``; a failing command stops the benchmark."""
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    took = time.perf_counter() - started
    if done.returncode != 0:
        output = done.stdout + done.stderr
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}):\n{output}")
    return took


def compare(
    pair: Sequence[Sequence[str]], cwd: Path, env: Mapping[str, str], repeat: int
) -> tuple[float, float]:
    """Median seconds of the two commands of ``pair``, run alternately ``repeat`` times."""
    for argv in pair:  # warm-up: compile bytecode, fill the OS's file cache
        run_once(argv, cwd, env)
    times: tuple[list[float], list[float]] = ([], [])
    for i in range(repeat):
        order = (0, 1) if i % 2 == 0 else (1, 0)  # neither always goes first
        for k in order:
            times[k].append(run_once(pair[k], cwd, env))
    return statistics.median(times[0]), statistics.median(times[1])


def make_project(root: Path) -> None:
    """A project without a thresholds file: one test, an ini file that makes it the rootdir."""
    (root / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    (root / "test_plain.py").write_text("def test_plain():\n    assert True\n", encoding="utf-8")


def environment(source: Path | None) -> dict[str, str]:
    dropped = ("PYTEST_", "PERFGATE_", "PYTHONDONTWRITEBYTECODE")
    env = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
    if source is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(source), env.get("PYTHONPATH")]))
    return env


def plugin_origin(cwd: Path, env: Mapping[str, str]) -> str:
    code = "import pytest_perfgate.plugin as p; print(p.__file__)"
    done = subprocess.run(
        [PYTHON, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def heavy_modules(cwd: Path, env: Mapping[str, str]) -> str:
    code = (
        "import sys, pytest_perfgate.plugin; print([m for m in "
        "('httpx', 'locust', 'torch', 'gevent', 'fastapi', 'yaml') if m in sys.modules])"
    )
    done = subprocess.run(
        [PYTHON, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def report(name: str, labels: tuple[str, str], medians: tuple[float, float]) -> float:
    ratio = medians[0] / medians[1]
    print(f"{name}:")
    for label, seconds in zip(labels, medians, strict=True):
        print(f"  {label:<52} {1000 * seconds:8.1f} ms")
    print(f"  {'ratio':<52} {ratio:8.3f}x  (+{1000 * (medians[0] - medians[1]):.1f} ms)")
    return ratio


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=20, help="runs of each command")
    parser.add_argument("--source", type=Path, help="folder holding the pytest_perfgate to use")
    args = parser.parse_args(argv)
    source = args.source.resolve() if args.source else None
    with tempfile.TemporaryDirectory(prefix="perfgate-startup-") as tmp:
        project = Path(tmp)
        make_project(project)
        env = environment(source)
        print(f"plugin: {plugin_origin(project, env)}")
        print(f"heavy modules after importing it: {heavy_modules(project, env)}")
        print(f"python {sys.version.split()[0]}, {args.repeat} runs each, medians\n")
        imports = compare(
            ([PYTHON, "-c", "import pytest_perfgate.plugin"], [PYTHON, "-c", "import pytest"]),
            project, env, args.repeat,
        )  # fmt: skip
        report("import", ("import pytest_perfgate.plugin", "import pytest"), imports)
        collect = [PYTHON, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"]
        startup = compare((collect, [*collect, "-p", "no:perfgate"]), project, env, args.repeat)
        ratio = report(
            "pytest start-up (no thresholds file, the environment's plugins)",
            ("pytest --collect-only -q", "pytest --collect-only -q -p no:perfgate"),
            startup,
        )
        bare_env = {**env, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
        bare = compare(
            ([*collect, "-p", "pytest_perfgate.plugin"], collect), project, bare_env, args.repeat
        )
        report(
            "bare pytest start-up (PYTEST_DISABLE_PLUGIN_AUTOLOAD=1)",
            ("pytest --collect-only -q -p pytest_perfgate.plugin", "pytest --collect-only -q"),
            bare,
        )
    verdict = "within" if ratio <= TARGET_RATIO else "ABOVE"
    print(f"\nstart-up ratio {ratio:.3f}x: {verdict} the target of {TARGET_RATIO}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
