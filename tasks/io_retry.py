"""Retry policy of the tasks: retry I/O failures (a locked SQLite store, a busy git index), nothing else.

A training or validation failure is deterministic, so running it again only wastes time.
A failure to reach the MLflow store or to take git's index lock is often transient.
"""

import logging
import sqlite3
import subprocess

_logger = logging.getLogger(__name__)

# Retry delays in seconds; the number of delays is the number of retries.
IO_RETRY_DELAYS_S = [2, 10]
# Messages of wrapped errors that mean a transient I/O problem.
_TRANSIENT_MESSAGES = ("database is locked", "index.lock", "connection refused", "timed out")


def is_transient_io_error(error: BaseException | None) -> bool:
    """Return True when ``error`` (or an error it wraps) is an I/O failure worth retrying."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, (OSError, sqlite3.OperationalError, TimeoutError)):
            return True
        message = str(error).lower()
        if isinstance(error, subprocess.CalledProcessError):
            message += " " + str(error.stderr or "").lower()
        if any(text in message for text in _TRANSIENT_MESSAGES):
            return True
        error = error.__cause__ or error.__context__
    return False


def retry_on_io_error(task, task_run, state) -> bool:
    """Prefect ``retry_condition_fn``: retry a failed task run only when it failed on I/O."""
    try:
        error = state.result(raise_on_failure=False)
    except Exception as result_error:  # the result itself could not be read: treat it as I/O
        _logger.warning("Could not read the failure of task run %s: %s", task_run.id, result_error)
        return True
    retry = isinstance(error, BaseException) and is_transient_io_error(error)
    if retry:
        _logger.warning("Task run %s failed on I/O and will be retried: %s", task_run.id, error)
    return retry
