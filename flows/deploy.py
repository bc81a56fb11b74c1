"""Deployments of the two flows, and the command that serves them.

- ``continual``: the continual flow, run on request (``prefect deployment run``).
- ``new-attributes``: the new-attributes flow, on the cron schedule ``schedule.cron`` of
  params.yaml and on every event ``mclfir.attributes.added``.

Both allow one run at a time and queue the next (Prefect's ENQUEUE collision strategy). Within
a run, the flows also wait for the repository slot, so a run of one deployment waits for a
run of the other.

``python -m flows.deploy --list`` prints one JSON object per deployment without serving.
``python -m flows.deploy`` serves them against ``PREFECT_API_URL``, and ``--start-server``
first starts a Prefect server on 127.0.0.1 and stops it again on exit (``make serve``).
Schedules and event triggers only fire while a server runs.
"""

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


from mclfir.config import load_params
from mclfir.events import ATTRIBUTES_ADDED, server_reachable
from mclfir.paths import project_root

_logger = logging.getLogger(__name__)

CONTINUAL_DEPLOYMENT = "continual"
NEW_ATTRIBUTES_DEPLOYMENT = "new-attributes"
SERVER_HOST = "127.0.0.1"
DEFAULT_PORT = 4200
SERVER_START_TIMEOUT_S = 90
SERVER_STOP_TIMEOUT_S = 20
SERVER_PID_FILE = ".prefect/server.pid"


@dataclass(frozen=True)
class ScheduleConfig:
    """The ``schedule`` section of params.yaml: when the new-attributes deployment runs."""

    cron: str = "0 2 * * *"
    timezone: str = "UTC"

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> "ScheduleConfig":
        section = params.get("schedule") or {}
        if not isinstance(section, dict):
            raise ValueError(f"Invalid schedule {section!r} in params.yaml: expected a mapping with the keys cron and timezone.")
        unknown = sorted(set(section) - {"cron", "timezone"})
        if unknown:
            raise ValueError(f"Unknown keys {', '.join('schedule.' + key for key in unknown)} in params.yaml; schedule takes cron and timezone.")
        config = cls(**{key: str(value) for key, value in section.items() if value is not None})
        _check_schedule(config)
        return config


def _check_schedule(config: ScheduleConfig) -> None:
    from prefect.client.schemas.schedules import CronSchedule
    from pydantic import ValidationError

    # croniter also reads a sixth field as seconds, which would run the flow once per second.
    if len(config.cron.split()) != 5:
        raise ValueError(
            f"Invalid schedule.cron {config.cron!r} in params.yaml: it has {len(config.cron.split())} fields. "
            "Use a five-field cron string (minute hour day month weekday) such as '0 2 * * *'."
        )
    try:
        CronSchedule(cron=config.cron, timezone="UTC")
    except ValidationError as error:
        raise ValueError(f"Invalid schedule.cron {config.cron!r} in params.yaml: {_pydantic_message(error)}. Use a cron string such as '0 2 * * *'.") from None
    try:
        CronSchedule(cron=config.cron, timezone=config.timezone)
    except ValidationError as error:
        raise ValueError(
            f"Invalid schedule.timezone {config.timezone!r} in params.yaml: {_pydantic_message(error)}. Use an IANA time zone such as UTC or Europe/Berlin."
        ) from None


def _pydantic_message(error: Exception) -> str:
    message = error.errors()[0]["msg"]
    return message.removeprefix("Value error, ")


def build_deployments(params: dict[str, Any] | None = None) -> list:
    """Return the two RunnerDeployments, configured from ``params`` (params.yaml by default)."""
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
    from prefect.events import DeploymentEventTrigger

    from flows.continual import continual
    from flows.new_attributes import new_attributes

    schedule = ScheduleConfig.from_params(load_params() if params is None else params)
    one_at_a_time = ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE)

    continual_deployment = continual.to_deployment(
        name=CONTINUAL_DEPLOYMENT,
        description="Train every pending increment with DVC, evaluate, register and gate.",
        tags=["mclfir"],
        concurrency_limit=one_at_a_time,
    )
    new_attributes_deployment = new_attributes.to_deployment(
        name=NEW_ATTRIBUTES_DEPLOYMENT,
        description="Plan and train an increment for attributes the champion does not serve.",
        tags=["mclfir"],
        cron=schedule.cron,
        triggers=[
            DeploymentEventTrigger(
                name="labels added",
                expect={ATTRIBUTES_ADDED},
                match={"prefect.resource.id": "mclfir.*"},
            )
        ],
        concurrency_limit=one_at_a_time,
    )
    # to_deployment takes no timezone, so set it on the cron schedule it built.
    for schedule_entry in new_attributes_deployment.schedules or []:
        schedule_entry.schedule.timezone = schedule.timezone
    return [continual_deployment, new_attributes_deployment]


def describe(deployment) -> dict[str, Any]:
    """Return a deployment's name, flow, cron schedules, trigger events and concurrency limit."""
    crons = [entry.schedule.cron for entry in deployment.schedules or [] if hasattr(entry.schedule, "cron")]
    events = sorted({event for trigger in deployment.triggers for event in getattr(trigger, "expect", set())})
    return {
        "name": deployment.name,
        "flow": deployment.flow_name,
        "cron": crons[0] if len(crons) == 1 else (crons or None),
        "events": events,
        "concurrency_limit": deployment.concurrency_limit,
    }


# --- A local Prefect server ----------------------------------------------------------------------


def server_url(port: int) -> str:
    """Return the API URL of a server on 127.0.0.1:``port``."""
    return f"http://{SERVER_HOST}:{port}/api"


def start_server(port: int, log_path: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start ``prefect server start`` on 127.0.0.1:``port`` in its own process group, logging to ``log_path``.

    ``env`` is the server's environment (default: this process's); its PREFECT_HOME contains the database.
    Waits until ``/api/health`` responds. Raises RuntimeError, after stopping the process, when the
    server exits or does not respond within SERVER_START_TIMEOUT_S.
    """
    if server_reachable(server_url(port)):
        raise RuntimeError(
            f"A Prefect server already responds on {server_url(port)}. Stop it (`make stop-server` for one that "
            "`make serve` started) or choose another port with PREFECT_PORT."
        )
    log_path.parent.mkdir(parents=True, exist_ok=True)
    prefect = Path(sys.executable).parent / "prefect"
    command = [str(prefect) if prefect.is_file() else "prefect", "server", "start", "--host", SERVER_HOST, "--port", str(port)]
    with log_path.open("ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    _logger.info("Started Prefect server (PID %d) on %s; its log is %s", process.pid, server_url(port), log_path)

    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"Prefect server exited with status {process.returncode} while starting; see {log_path}.")
        if server_reachable(server_url(port)):
            return process
        time.sleep(1)
    stop_server(process)
    raise RuntimeError(f"Prefect server on port {port} did not respond within {SERVER_START_TIMEOUT_S} s; see {log_path}.")


def stop_server(process: subprocess.Popen) -> None:
    """Stop a server from :func:`start_server`: SIGTERM to its process group, SIGKILL after a timeout."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=SERVER_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        _logger.warning("Prefect server (PID %d) did not stop within %d s; killing it", process.pid, SERVER_STOP_TIMEOUT_S)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    _logger.info("Stopped Prefect server (PID %d)", process.pid)


# --- Command line ---------------------------------------------------------------------------------


def serve_deployments(deployments: list) -> None:
    """Serve ``deployments`` until interrupted; schedules are paused on shutdown."""
    from prefect import serve

    serve(*deployments)


def main(argv: list[str] | None = None) -> int:
    """List or serve the deployments."""
    parser = argparse.ArgumentParser(prog="python -m flows.deploy", description=__doc__.splitlines()[0])
    parser.add_argument("--list", action="store_true", help="print one JSON object per deployment and exit")
    parser.add_argument("--start-server", action="store_true", help="start a Prefect server on 127.0.0.1 first, and stop it on exit")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port of the server that --start-server starts (default: %(default)s)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")

    try:
        deployments = build_deployments()
    except ValueError as error:
        _logger.error("%s", error)
        return 1
    if args.list:
        for deployment in deployments:
            print(json.dumps(describe(deployment)))
        return 0

    if not args.start_server:
        serve_deployments(deployments)
        return 0

    from prefect.settings import PREFECT_API_URL, temporary_settings

    pid_file = project_root() / SERVER_PID_FILE
    try:
        server = start_server(args.port, project_root() / ".prefect" / "server.log")
    except RuntimeError as error:
        _logger.error("%s", error)
        return 1
    pid_file.write_text(f"{server.pid}\n", encoding="utf-8")
    try:
        with temporary_settings(updates={PREFECT_API_URL: server_url(args.port)}):
            print(f"Prefect UI: http://{SERVER_HOST}:{args.port}  (stop with Ctrl-C)", flush=True)
            serve_deployments(deployments)
    finally:
        stop_server(server)
        pid_file.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
