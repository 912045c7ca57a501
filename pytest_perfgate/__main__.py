"""``python -m pytest_perfgate``: the ``perfgate`` command."""

from __future__ import annotations

from .cli import main

raise SystemExit(main())
