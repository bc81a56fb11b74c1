"""The project repository as a shared resource: one pipeline run at a time, and git commits of its files.

``dvc repro`` locks the repository, so two flow runs that reproduce stages at the same time
would fail. :func:`repository_slot` takes the one slot of the Prefect global concurrency limit
``mclfir-repository``, so a second run waits for the first instead of failing. The slot is
re-entrant within one flow run, so a flow that has taken it can call another flow that takes it.
"""

import contextlib
import contextvars
import logging
import subprocess
from collections.abc import Iterator, Sequence

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from mclfir.paths import project_root
from tasks.io_retry import IO_RETRY_DELAYS_S, retry_on_io_error

_logger = logging.getLogger(__name__)

REPOSITORY_LIMIT = "mclfir-repository"
# A slot is leased for this long and renewed while it is held, so a crashed run frees it.
LEASE_DURATION_S = 300
# Identity of the pipeline's commits when git has no user.name / user.email configured.
FALLBACK_AUTHOR = ("mclfir pipeline", "mclfir-pipeline@localhost")

_holding_slot = contextvars.ContextVar("mclfir_holding_repository_slot", default=False)


@contextlib.contextmanager
def repository_slot(timeout_s: float | None = None) -> Iterator[None]:
    """Hold the repository's concurrency slot while the block runs; wait for it while another run has it.

    Raises TimeoutError when ``timeout_s`` passes before the slot is free.
    """
    if _holding_slot.get():
        yield
        return

    from prefect.client.orchestration import get_client
    from prefect.concurrency.sync import concurrency

    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(REPOSITORY_LIMIT, 1)

    _logger.info("Waiting for the repository slot (Prefect concurrency limit %r)", REPOSITORY_LIMIT)
    with concurrency(REPOSITORY_LIMIT, occupy=1, timeout_seconds=timeout_s, lease_duration=LEASE_DURATION_S, strict=True):
        _logger.info("Holding the repository slot")
        token = _holding_slot.set(True)
        try:
            yield
        finally:
            _holding_slot.reset(token)
    _logger.info("Released the repository slot")


def git(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``git ARGS`` in the project root and return the completed process."""
    return subprocess.run(["git", *args], cwd=project_root(), capture_output=True, text=True, check=check)


def _author_options() -> list[str]:
    configured = git("config", "user.email", check=False).stdout.strip()
    if configured:
        return []
    name, email = FALLBACK_AUTHOR
    return ["-c", f"user.name={name}", "-c", f"user.email={email}"]


@task(
    name="git-commit",
    retries=len(IO_RETRY_DELAYS_S),
    retry_delay_seconds=IO_RETRY_DELAYS_S,
    retry_condition_fn=retry_on_io_error,
    cache_policy=NO_CACHE,
)
def commit_paths(paths: Sequence[str], message: str) -> str | None:
    """Commit the changes under ``paths`` (and only those) with ``message``; return the commit, or None.

    Paths that do not exist are left out. Nothing is committed when they hold no change.
    """
    logger = get_run_logger()
    root = project_root()
    existing = [path for path in paths if (root / path).exists()]
    if not existing:
        logger.info("Nothing to commit: none of %s exists", ", ".join(paths))
        return None

    git("add", "--", *existing)
    staged = git("diff", "--cached", "--name-only", "--", *existing).stdout.split()
    if not staged:
        logger.info("Nothing to commit: %s unchanged", ", ".join(existing))
        return None

    git(*_author_options(), "commit", "--quiet", "-m", message, "--", *existing)
    commit = git("rev-parse", "HEAD").stdout.strip()
    logger.info("Committed %s as %s: %s", ", ".join(staged), commit[:12], message.splitlines()[0])
    return commit
