"""Prefect tasks that run DVC in the project root: reproduce a stage, list the stale ones.

DVC decides what is stale and versions every output, so the flows never call the training
code directly. Each ``dvc repro`` runs in a subprocess with the MLflow parent run and the
Prefect flow run in its environment, so the stage's own MLflow run nests under the pipeline
run and carries the flow run id. Its output is forwarded to the task's log, and the stages
that ran and those that DVC skipped are returned and logged.
"""

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from mclfir import tracking
from mclfir.paths import project_root

_RAN = re.compile(r"^Running stage '([^']+)'")
_SKIPPED = re.compile(r"^Stage '([^']+)' didn't change, skipping")
# tqdm progress updates ("copy ...:  42%|####  | 18000/43180"), left out of the task log.
_PROGRESS = re.compile(r"\d+%\|")
# Lines of a failed run quoted in the error.
_TAIL_LINES = 20


class StageFailedError(RuntimeError):
    """``dvc repro`` or ``dvc status`` exited with an error."""


@dataclass
class ReproResult:
    """Outcome of one ``dvc repro``: the stages it ran and those it found up to date."""

    target: str
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    wall_s: float = 0.0


def dvc_executable() -> str:
    """Return the ``dvc`` beside this Python interpreter, else ``dvc`` from PATH."""
    candidate = Path(sys.executable).parent / "dvc"
    return str(candidate) if candidate.is_file() else "dvc"


def stage_environment(parent_run_id: str | None = None, flow_run_id: str | None = None) -> dict[str, str]:
    """Return the environment of a DVC subprocess: this interpreter's bin folder first on PATH,
    the MLflow parent run and the Prefect flow run id."""
    env = dict(os.environ)
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    env.pop("MLFLOW_RUN_ID", None)
    if parent_run_id:
        env[tracking.PARENT_RUN_ENV] = parent_run_id
    if flow_run_id:
        env["PREFECT__FLOW_RUN_ID"] = flow_run_id
    return env


def run_dvc_repro(target: str, parent_run_id: str | None = None, force: bool = False, log=None) -> ReproResult:
    """Run ``dvc repro [--force] TARGET`` in the project root and return the stages it ran and skipped.

    Raises StageFailedError with the last lines of output when DVC exits with an error.
    """
    command = [dvc_executable(), "repro", *(["--force"] if force else []), target]
    env = stage_environment(parent_run_id, tracking.prefect_flow_run_id())
    result = ReproResult(target)
    tail: list[str] = []
    started = time.perf_counter()

    with subprocess.Popen(
        command, cwd=project_root(), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    ) as process:
        for line in process.stdout:
            line = line.rstrip()
            tail = (tail + [line])[-_TAIL_LINES:]
            if log is not None and line and not _PROGRESS.search(line):
                log.info("%s", line)
            if match := _RAN.match(line):
                result.ran.append(match.group(1))
            elif match := _SKIPPED.match(line):
                result.skipped.append(match.group(1))
        status = process.wait()

    result.wall_s = round(time.perf_counter() - started, 2)
    if status != 0:
        raise StageFailedError(
            f"`dvc repro {target}` failed with exit status {status} in {project_root()}. Its last lines:\n"
            + "\n".join(tail)
            + "\nFix the cause shown above, then run the flow again; finished stages are not repeated."
        )
    return result


@task(name="dvc-repro", task_run_name="dvc repro {target}", cache_policy=NO_CACHE)
def reproduce(target: str, parent_run_id: str | None = None, force: bool = False) -> dict:
    """Reproduce ``target`` (a stage and what it depends on) and return :class:`ReproResult` as a dict."""
    logger = get_run_logger()
    result = run_dvc_repro(target, parent_run_id, force, log=logger)
    logger.info(
        "dvc repro %s: ran %s; skipped (up to date) %s; %.1f s",
        target, ", ".join(result.ran) or "nothing", ", ".join(result.skipped) or "nothing", result.wall_s,
    )
    return asdict(result)


@task(name="dvc-status", cache_policy=NO_CACHE)
def stale_stages(targets: list[str] | None = None) -> list[str]:
    """Return the stages that ``dvc status`` reports as changed (their deps, outs or command)."""
    command = [dvc_executable(), "status", "--json", *(targets or [])]
    completed = subprocess.run(command, cwd=project_root(), env=stage_environment(), capture_output=True, text=True)
    if completed.returncode != 0:
        raise StageFailedError(f"`{' '.join(command[1:])}` failed in {project_root()}: {completed.stderr.strip()}")
    status = json.loads(completed.stdout or "{}")
    return sorted(name for name in status if not name.endswith(".dvc"))
