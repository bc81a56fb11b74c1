"""The Prefect flows on a generated project, run with real Prefect (test harness), DVC, MLflow and git.

One project is built and trained once for the module: the continual flow trains both
increments of a two-increment plan and registers a champion. The later tests rerun it, add
an attribute through a labels file and run the new-attributes flow, which must train only the
new increment, and check that the repository slot makes a second run wait.
"""

import subprocess
import threading
import time

import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient
from prefect.testing.utilities import prefect_test_harness

from generated_projects import FIRST_ID, init_repository, make_dataset, make_project, project_env, run
from mclfir.paths import DATA_ROOT_ENV, PROJECT_ROOT_ENV

pytestmark = pytest.mark.integration

IMAGES = 96
TINY_PARAMS = {
    "model": {"backbone": "test_resnet", "feature_index": 2, "image_size": [32, 32], "embed_dim": 16, "attention_dim": 16},
    "train": {"epochs": 1, "batch_size": 4, "pairs_per_epoch": 16, "num_threads": 1, "log_every": 1, "cpu_bf16": False},
    "eval": {"batch_size": 32, "which": "student"},
    "increments": {
        "inc0": {"attributes": ["baseColour"], "parent": "init"},
        "inc1": {"attributes": ["gender"], "parent": "inc0"},
    },
    "gate": {"min_map": 0.0, "max_drop": 100.0},
}
NEW_ATTRIBUTE = "fit"


@pytest.fixture(scope="module")
def harness():
    """A temporary Prefect API for the flows of this module."""
    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="module")
def trained(tmp_path_factory, harness):
    """A committed generated project after one continual flow run, with the environment pointing at it."""
    from flows.continual import continual

    base = tmp_path_factory.mktemp("flows")
    dataset = base / "dataset"
    make_dataset(dataset, IMAGES)
    project = base / "project"
    make_project(project, TINY_PARAMS)
    env = project_env(dataset)
    init_repository(project, env, commit=True)

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PATH", env["PATH"])
        patch.setenv(DATA_ROOT_ENV, str(dataset))
        patch.setenv(PROJECT_ROOT_ENV, str(project))
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        patch.delenv("MCLFIR_PARENT_RUN_ID", raising=False)
        patch.chdir(project)
        outcome = continual()
        yield {"project": project, "env": env, "outcome": outcome}


def _client(project):
    return MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")


def test_continual_trains_every_increment(trained):
    outcome = trained["outcome"]

    assert outcome["trained"] == ["inc0", "inc1"]
    assert outcome["skipped_training"] == []
    assert set(outcome["maps"]["inc1"]) == {"baseColour", "gender"}
    assert (trained["project"] / "models/inc1/checkpoint.pt").is_file()


def test_continual_registers_champion(trained):
    outcome = trained["outcome"]
    client = _client(trained["project"])

    assert outcome["gate"]["passed"] is True
    champion = client.get_model_version_by_alias("mclfir", "champion")
    assert str(champion.version) == outcome["gate"]["version"]
    assert champion.tags["attributes"] == "baseColour,gender"
    assert "map.gender" in champion.tags


def test_continual_runs_nest_with_flow_run_tag(trained):
    client = _client(trained["project"])
    parent = client.get_run(trained["outcome"]["mlflow_parent_run"])
    experiment = parent.info.experiment_id
    children = client.search_runs([experiment], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    names = {run.info.run_name for run in children}

    flow_run_id = parent.data.tags.get("mclfir.prefect_flow_run_id")
    assert flow_run_id
    assert {"train-inc0", "train-inc1", "evaluate-inc0", "evaluate-inc1"} <= names
    for run_ in children:
        assert run_.data.tags.get("mclfir.prefect_flow_run_id") == flow_run_id, run_.info.run_name
        assert run_.data.tags.get("mclfir.git_commit")


def test_continual_rerun_skips_everything(trained):
    from flows.continual import continual

    outcome = continual()

    assert outcome["trained"] == []
    assert outcome["skipped_training"] == ["inc0", "inc1"]
    assert outcome["gate"]["version"] == trained["outcome"]["gate"]["version"]


def test_repository_slot_makes_second_run_wait(harness):
    from tasks.repository import repository_slot

    events = []

    def hold(name, seconds):
        with repository_slot(timeout_s=60):
            events.append((name, "start", time.monotonic()))
            time.sleep(seconds)
            events.append((name, "end", time.monotonic()))

    first = threading.Thread(target=hold, args=("first", 2.0))
    first.start()
    time.sleep(0.5)
    second = threading.Thread(target=hold, args=("second", 0.0))
    second.start()
    first.join(30)
    second.join(30)

    order = [(name, kind) for name, kind, _ in sorted(events, key=lambda event: event[2])]
    assert order == [("first", "start"), ("first", "end"), ("second", "start"), ("second", "end")]


def _write_labels(path, count):
    rows = [{"id": FIRST_ID + index, NEW_ATTRIBUTE: "slim" if (index // 3) % 2 else "loose"} for index in range(count)]
    pd.DataFrame(rows).to_csv(path, index=False)


def test_new_attributes_trains_only_new_increment(trained, tmp_path):
    from flows.new_attributes import new_attributes

    project, env = trained["project"], trained["env"]
    # A gate no new attribute can pass: the new version must stay challenger.
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["gate"]["min_map"] = 100.0
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    labels = tmp_path / "labels.csv"
    _write_labels(labels, IMAGES)
    run(["mclfir", "data", "add-attributes", str(labels), "--no-event"], project, {**env, PROJECT_ROOT_ENV: str(project)})
    champion_before = trained["outcome"]["gate"]["version"]

    result = new_attributes()

    assert result["increment"] == "inc2"
    assert result["attributes"] == [NEW_ATTRIBUTE]
    outcome = result["continual"]
    assert outcome["trained"] == ["inc2"]
    assert outcome["skipped_training"] == ["inc0", "inc1"]
    plan = yaml.safe_load((project / "params.yaml").read_text())["increments"]
    assert plan["inc2"] == {"attributes": [NEW_ATTRIBUTE], "parent": "inc1"}

    gate = outcome["gate"]
    client = _client(project)
    assert gate["passed"] is False
    assert str(client.get_model_version_by_alias("mclfir", "challenger").version) == gate["version"]
    assert str(client.get_model_version_by_alias("mclfir", "champion").version) == champion_before
    assert "fit" in client.get_model_version("mclfir", gate["version"]).tags["gate.reason"]

    subjects = subprocess.run(["git", "log", "--format=%s", "-3"], cwd=project, capture_output=True, text=True).stdout.splitlines()
    assert subjects[:2] == ["Train increment inc2", f"Plan increment inc2 for {NEW_ATTRIBUTE}"]
    status = subprocess.run(["git", "status", "--porcelain", "params.yaml", "dvc.lock"], cwd=project, capture_output=True, text=True)
    assert status.stdout == ""


def test_new_attributes_without_new_does_nothing(trained):
    from flows.new_attributes import new_attributes

    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=trained["project"], capture_output=True, text=True).stdout

    result = new_attributes()

    assert result["increment"] is None
    assert subprocess.run(["git", "rev-parse", "HEAD"], cwd=trained["project"], capture_output=True, text=True).stdout == head


def test_failed_validation_stops_before_training(trained):
    from flows.continual import continual
    from tasks.dvc_stages import StageFailedError

    project = trained["project"]
    checkpoint = project / "models/inc1/checkpoint.pt"
    checkpoint_bytes = checkpoint.read_bytes()
    versions_before = len(_client(project).search_model_versions("name = 'mclfir'"))
    params_text = (project / "params.yaml").read_text()
    params = yaml.safe_load(params_text)
    # More usable images than the dataset has: validation must stop the pipeline.
    params["data"]["min_images"] = IMAGES * 10
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    try:
        with pytest.raises(StageFailedError, match="dvc repro plan"):
            continual()
    finally:
        (project / "params.yaml").write_text(params_text)

    assert checkpoint.read_bytes() == checkpoint_bytes
    assert len(_client(project).search_model_versions("name = 'mclfir'")) == versions_before
