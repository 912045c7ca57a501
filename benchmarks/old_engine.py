"""The verdict engine before issue 13, read from git history to run side by side with today's.

``core/stats.py``, ``core/sequential.py`` and ``core/verdict.py`` as they were at commit
``OLD_COMMIT`` (lag-1 inflation, fixed-sample intervals after an early stop, no
multiplicity correction, the ``auto`` INCONCLUSIVE policy), loaded as the modules
``_old_engine.stats``, ``.sequential`` and ``.verdict``: only their imports of each other
are pointed at the old copies. Read from history rather than copied into the tree, so
there is one text of the old engine; it needs a git checkout holding the commit (any
clone of main). Used by ``verdict_quality.py`` only.
"""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

OLD_COMMIT = "16b06051a5efcc2958d46ab1dd1a9e668abe4a35"
PACKAGE = "_old_engine"
MODULES = ("stats", "sequential", "verdict")  # in import order
_ROOT = Path(__file__).resolve().parents[1]


def _source(name: str) -> str:
    path = f"pytest_perfgate/core/{name}.py"
    text = subprocess.run(
        ["git", "show", f"{OLD_COMMIT}:{path}"],
        cwd=_ROOT, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    for other in MODULES:  # the old modules import each other, not today's
        text = text.replace(f"pytest_perfgate.core.{other} import", f"{PACKAGE}.{other} import")
    return text


def load() -> dict[str, types.ModuleType]:
    """The old ``stats``, ``sequential`` and ``verdict`` modules, by name (loaded once)."""
    if PACKAGE not in sys.modules:
        package = types.ModuleType(PACKAGE)
        package.__path__ = []
        sys.modules[PACKAGE] = package
        for name in MODULES:
            module = types.ModuleType(f"{PACKAGE}.{name}")
            sys.modules[module.__name__] = module  # dataclasses look their module up here
            code = compile(_source(name), f"{OLD_COMMIT[:7]}:core/{name}.py", "exec")
            exec(code, module.__dict__)
            setattr(package, name, module)
    return {name: sys.modules[f"{PACKAGE}.{name}"] for name in MODULES}
