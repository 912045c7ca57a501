"""The baseline side of an A/B run: a git ref in a temporary worktree, a command, or a URL.

``running_baseline`` starts it and, on every way out (return, error, Ctrl-C), stops it
and leaves nothing behind: the service's process group is ended
(``ManagedService.stop``, ``processes.end_process_group``) and the worktree removed
(``git worktree remove --force``, its folder deleted, ``git worktree prune``). A git ref
is checked out with ``git worktree add --detach`` and started with the thresholds'
``service.command`` from there: the command runs in the worktree's copy of pytest's
rootdir, so ``python -m service`` imports the baseline's code, not the working tree's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pytest_perfgate.core.model import CompareSpec, ServiceSpec
from pytest_perfgate.errors import ServiceError
from pytest_perfgate.target.probe import ExternalService, Target
from pytest_perfgate.target.process import ManagedService

__all__ = ["RunningBaseline", "git_worktree", "running_baseline"]

GIT_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class RunningBaseline:
    """The baseline, started: its target, what it is (for messages), its worktree if any."""

    target: Target
    label: str
    worktree: Path | None = None


def _git(args: list[str], cwd: Path) -> str:
    try:
        done = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=GIT_TIMEOUT_S
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ServiceError(f"A/B baseline: git {' '.join(args)} failed: {exc}") from None
    if done.returncode != 0:
        raise ServiceError(
            f"A/B baseline: git {' '.join(args)} (in {cwd}) failed: {done.stderr.strip()}"
        )
    return done.stdout.strip()


@contextlib.contextmanager
def git_worktree(rootdir: Path, ref: str) -> Iterator[tuple[Path, str]]:
    """``ref`` checked out (detached) in a temporary worktree of ``rootdir``'s repository:
    yields the worktree's copy of ``rootdir`` and the commit; removed afterwards."""
    top = Path(_git(["rev-parse", "--show-toplevel"], rootdir)).resolve()
    commit = _git(["rev-parse", "--verify", f"{ref}^{{commit}}"], rootdir)
    holder = Path(tempfile.mkdtemp(prefix="perfgate-baseline-"))
    tree = holder / "worktree"
    try:
        _git(["worktree", "add", "--detach", str(tree), commit], rootdir)
        yield tree / rootdir.resolve().relative_to(top), commit
    finally:
        with contextlib.suppress(ServiceError):
            if tree.exists():
                _git(["worktree", "remove", "--force", str(tree)], rootdir)
        shutil.rmtree(holder, ignore_errors=True)
        with contextlib.suppress(ServiceError):
            _git(["worktree", "prune"], rootdir)


def _log_path(results_dir: Path) -> Path:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    return results_dir / f"{stamp}_baseline_service.log"


def _started(spec: ServiceSpec, cwd: Path, results_dir: Path) -> ManagedService:
    service = ManagedService(spec, _log_path(results_dir), cwd=cwd)
    try:
        service.start()
    except ServiceError as exc:
        raise ServiceError(f"A/B baseline: {exc}") from None
    return service


@contextlib.contextmanager
def running_baseline(
    source: CompareSpec, service: ServiceSpec, *, rootdir: Path, results_dir: Path
) -> Iterator[RunningBaseline]:
    """The baseline of ``source`` ready to take load; stopped (and its worktree removed)
    when the block ends. ``service`` is the thresholds' ``service`` section."""
    if source.url is not None:
        yield RunningBaseline(ExternalService(source.url, service.ready_path), source.url)
        return
    with contextlib.ExitStack() as stack:
        spec = dataclasses.replace(service, url=None)
        worktree: Path | None = None
        if source.command is not None:  # the baseline's own command (in the worktree)
            spec = dataclasses.replace(spec, command=source.command)
        if source.ref is None:
            cwd, label = rootdir, source.label
        else:
            cwd, commit = stack.enter_context(git_worktree(rootdir, source.ref))
            if spec.cwd is not None and not Path(spec.cwd).is_absolute():
                spec = dataclasses.replace(spec, cwd=str(cwd / spec.cwd))
            label, worktree = f"{source.ref} ({commit[:10]}, git worktree)", cwd
        started = _started(spec, cwd, results_dir)
        stack.callback(started.stop)
        yield RunningBaseline(started, label, worktree)
