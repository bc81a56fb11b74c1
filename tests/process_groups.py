"""Stopping a server that a test started in its own process group (``start_new_session=True``)."""

import os
import signal
import subprocess


def stop_process_group(process: subprocess.Popen, first_signal: int = signal.SIGTERM, timeout_s: float = 30) -> None:
    """Send ``first_signal`` to the process group of ``process``, then SIGKILL after ``timeout_s`` if it still runs.

    The whole group receives the signal, so workers that the server started stop too, even when the
    server process itself has already exited.
    """
    try:
        os.killpg(process.pid, first_signal)
    except ProcessLookupError:
        process.wait()
        return

    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
