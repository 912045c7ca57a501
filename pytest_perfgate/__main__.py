"""``python -m pytest_perfgate``: the ``perfgate`` command."""

from __future__ import annotations

from pytest_perfgate.cli import main

raise SystemExit(main())
