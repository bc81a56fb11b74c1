"""Deployments of the flows: their listing, and an event that starts a run on a real Prefect server.

The server test starts ``prefect server start`` on 127.0.0.1 with its own PREFECT_HOME, serves
the deployments from a project folder without data, emits ``mclfir.attributes.added`` and
waits until the new-attributes deployment has a flow run that started. The run then fails,
because the folder contains no DVC project, which does not matter here.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from mclfir.paths import PROJECT_ROOT_ENV
from process_groups import stop_process_group

PROJECT = Path(__file__).resolve().parent.parent
RUN_START_TIMEOUT_S = 150


def _list_deployments(project: Path) -> list[dict]:
    env = {**os.environ, PROJECT_ROOT_ENV: str(project)}
    result = subprocess.run(
        [sys.executable, "-m", "flows.deploy", "--list"], cwd=PROJECT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def _project_with_cron(folder: Path, cron: str) -> Path:
    folder.mkdir()
    params = yaml.safe_load((PROJECT / "params.yaml").read_text())
    params["schedule"]["cron"] = cron
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (folder / "pyproject.toml").write_text((PROJECT / "pyproject.toml").read_text())
    return folder


def test_list_prints_both_deployments(tmp_path):
    project = _project_with_cron(tmp_path / "project", "15 3 * * 1")

    listed = {entry["name"]: entry for entry in _list_deployments(project)}

    assert set(listed) == {"continual", "new-attributes"}
    assert listed["new-attributes"]["cron"] == "15 3 * * 1"
    assert listed["new-attributes"]["events"] == ["mclfir.attributes.added"]
    assert listed["continual"]["cron"] is None
    assert listed["continual"]["events"] == []
    assert listed["new-attributes"]["concurrency_limit"] == 1


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ({"cron": "every day"}, "schedule.cron 'every day'"),
        ({"cron": "0 2 * * * *"}, "it has 6 fields"),
        ({"cron": "0 25 * * *"}, "schedule.cron '0 25 \\* \\* \\*'"),
        ({"cron": "0 2 * * *", "timezone": "Mars/Olympus"}, "schedule.timezone 'Mars/Olympus'"),
        ({"crn": "0 2 * * *"}, "Unknown keys schedule.crn"),
        ("daily", "expected a mapping"),
    ],
)
def test_invalid_schedule_is_rejected(schedule, message):
    from flows.deploy import ScheduleConfig

    with pytest.raises(ValueError, match=message):
        ScheduleConfig.from_params({"schedule": schedule})


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _deployment_runs(api: str, deployment_name: str) -> list[dict]:
    deployments = httpx.post(f"{api}/deployments/filter", json={"deployments": {"name": {"any_": [deployment_name]}}}, timeout=10).json()
    if not deployments:
        return []
    body = {"flow_runs": {"deployment_id": {"any_": [deployments[0]["id"]]}}}
    return httpx.post(f"{api}/flow_runs/filter", json=body, timeout=10).json()


@pytest.mark.integration
def test_event_starts_new_attributes_run(tmp_path):
    from flows.deploy import server_url, start_server, stop_server

    port = _free_port()
    api = server_url(port)
    project = _project_with_cron(tmp_path / "project", "0 2 * * *")
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_API_URL": api,
        PROJECT_ROOT_ENV: str(project),
        "PYTHONPATH": str(PROJECT),
    }
    server = start_server(port, tmp_path / "server.log", env=env)

    serve_log = (tmp_path / "serve.log").open("w")
    serving = subprocess.Popen(
        [sys.executable, "-m", "flows.deploy"], cwd=project, env=env, stdout=serve_log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not httpx.post(f"{api}/deployments/filter", json={}, timeout=10).json():
            time.sleep(1)

        emitted = subprocess.run(
            [sys.executable, "-c", "from mclfir.events import emit_attributes_added; print(emit_attributes_added(['fit'], ['data/labels/fit.csv']))"],
            cwd=project, env=env, capture_output=True, text=True, timeout=60,
        )
        assert emitted.returncode == 0, emitted.stderr

        started = []
        deadline = time.monotonic() + RUN_START_TIMEOUT_S
        while time.monotonic() < deadline and not started:
            started = [run for run in _deployment_runs(api, "new-attributes") if run.get("start_time")]
            time.sleep(2)
        assert started, f"no started run of new-attributes; serve log:\n{(tmp_path / 'serve.log').read_text()[-3000:]}"
    finally:
        stop_process_group(serving, signal.SIGINT)
        serve_log.close()
        stop_server(server)
