"""Tests of the MLflow tracking layer: parent and child runs across processes, tags and logging helpers.

Each test uses its own project root and SQLite store in tmp_path. The store is a copy of one
created once per module, because creating the tables of an MLflow store takes seconds.
"""

import json
import shutil

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from mclfir import tracking
from mclfir.paths import PROJECT_ROOT_ENV
from registry_store import empty_store  # noqa: F401 (fixture)

DVC_LOCK = """schema: '2.0'
stages:
  validate:
    outs:
    - path: data/validated/catalog.parquet
      md5: aaa
    - path: data/validated/report.json
      md5: bbb
  split@inc0:
    outs:
    - path: data/splits/inc0
      md5: ccc.dir
  train@inc0:
    outs:
    - path: models/inc0
      md5: ddd.dir
"""


@pytest.fixture
def project(tmp_path, monkeypatch, empty_store):
    """A project root in tmp_path with a dvc.lock and its own SQLite tracking store."""
    (tmp_path / "dvc.lock").write_text(DVC_LOCK)
    shutil.copyfile(empty_store, tmp_path / "mlflow.db")
    monkeypatch.setenv(PROJECT_ROOT_ENV, str(tmp_path))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.delenv(tracking.PARENT_RUN_ENV, raising=False)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    monkeypatch.delenv("PREFECT__FLOW_RUN_ID", raising=False)
    yield tmp_path
    while mlflow.active_run() is not None:
        mlflow.end_run()


def test_tracking_uri_defaults_to_project_sqlite(tmp_path, monkeypatch):
    monkeypatch.setenv(PROJECT_ROOT_ENV, str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)

    assert tracking.tracking_uri() == f"sqlite:///{tmp_path / 'mlflow.db'}"


def test_configure_creates_experiment_with_artifacts(project):
    experiment_id = tracking.configure()

    experiment = MlflowClient().get_experiment(experiment_id)
    assert experiment.name == "mclfir"
    assert experiment.artifact_location == (project / "mlartifacts").as_uri()
    assert tracking.configure() == experiment_id


def test_data_hash_uses_catalog_and_splits_only(project):
    first = tracking.data_hash()
    (project / "dvc.lock").write_text(DVC_LOCK.replace("ddd.dir", "eee.dir").replace("bbb", "fff"))
    unchanged = tracking.data_hash()
    (project / "dvc.lock").write_text(DVC_LOCK.replace("ccc.dir", "ggg.dir"))
    changed = tracking.data_hash()

    assert len(first) == 32
    assert unchanged == first
    assert changed != first


def test_data_hash_without_lock_is_unknown(tmp_path, monkeypatch):
    monkeypatch.setenv(PROJECT_ROOT_ENV, str(tmp_path))

    assert tracking.data_hash() == "unknown"


def test_child_run_nests_under_parent_file(project, monkeypatch):
    monkeypatch.setenv("PREFECT__FLOW_RUN_ID", "flow-run-7")
    parent_id = tracking.start_pipeline_run("pipeline")

    assert (project / "metrics" / ".mlflow_parent_run").read_text().strip() == parent_id
    assert mlflow.active_run() is None

    with tracking.child_run("train", "inc1", params={"train": {"lr": 0.001, "epochs": 3}}, tags={"extra": "yes"}) as run:
        child_id = run.info.run_id

    child = MlflowClient().get_run(child_id)
    assert child.data.tags["mlflow.parentRunId"] == parent_id
    assert child.data.tags["mclfir.increment"] == "inc1"
    assert child.data.tags["mclfir.kind"] == "train"
    assert child.data.tags["mclfir.data_hash"] == tracking.data_hash()
    assert child.data.tags["mclfir.git_commit"]
    assert child.data.tags["mclfir.prefect_flow_run_id"] == "flow-run-7"
    assert child.data.tags["extra"] == "yes"
    assert child.data.params == {"train.lr": "0.001", "train.epochs": "3"}
    assert child.info.status == "FINISHED"
    assert mlflow.active_run() is None


def test_parent_env_overrides_file(project, monkeypatch):
    from_file = tracking.start_pipeline_run("first")
    from_env = tracking.start_pipeline_run("second", parent_file=project / "other_parent")
    monkeypatch.setenv(tracking.PARENT_RUN_ENV, from_env)

    with tracking.child_run("evaluate", "inc0") as run:
        child_id = run.info.run_id

    assert from_file != from_env
    assert MlflowClient().get_run(child_id).data.tags["mlflow.parentRunId"] == from_env


def test_stray_mlflow_run_id_ignored(project, monkeypatch):
    parent_id = tracking.start_pipeline_run("pipeline")
    tracking.configure()
    stray = MlflowClient().create_run(tracking.configure(), run_name="stray").info.run_id
    monkeypatch.setenv("MLFLOW_RUN_ID", stray)

    with tracking.child_run("train", "inc0") as run:
        child_id = run.info.run_id

    assert child_id not in (stray, parent_id)
    assert MlflowClient().get_run(child_id).data.tags["mlflow.parentRunId"] == parent_id
    assert "mclfir.kind" not in MlflowClient().get_run(stray).data.tags
    assert tracking.parent_run_id() == parent_id


def test_child_run_without_parent_is_standalone(project):
    with tracking.child_run("register") as run:
        child_id = run.info.run_id

    tags = MlflowClient().get_run(child_id).data.tags
    assert "mlflow.parentRunId" not in tags
    assert "mclfir.increment" not in tags


def test_child_run_with_missing_parent_is_standalone(project, monkeypatch):
    monkeypatch.setenv(tracking.PARENT_RUN_ENV, "0" * 32)

    with tracking.child_run("train", "inc0") as run:
        child_id = run.info.run_id

    assert "mlflow.parentRunId" not in MlflowClient().get_run(child_id).data.tags


def test_child_run_failure_marks_run_failed(project):
    with pytest.raises(RuntimeError):
        with tracking.child_run("train", "inc0") as run:
            child_id = run.info.run_id
            raise RuntimeError("boom")

    assert MlflowClient().get_run(child_id).info.status == "FAILED"


def test_logging_helpers(project):
    report = {
        "R": [{"a": 50.0}, {"a": 48.0, "b": 30.0}],
        "final_map": 39.0,
        "forgetting": 2.0,
        "bwt": -2.0,
        "chance": {"a": 10.0, "b": float("nan")},
        "balanced": {"a": 40.0, "b": 20.0},
        "map_at_k": {"a": 45.0, "b": 25.0},
    }
    plot = project / "plots" / "map.png"
    plot.parent.mkdir()
    plot.write_bytes(b"png")
    split_file = project / "data" / "splits" / "inc0" / "a.parquet"
    split_file.parent.mkdir(parents=True)
    pd.DataFrame({"image_id": ["1", "2", "3"]}).to_parquet(split_file)
    data_hash = tracking.data_hash()

    with tracking.child_run("evaluate") as run:
        tracking.log_epoch_metrics(0, {"loss": 1.5, "lr": np.float32(0.1), "skipped": float("inf")})
        tracking.log_continual(report)
        tracking.log_plots([plot])
        tracking.log_training_input([split_file], data_hash)
        run_id = run.info.run_id

    client = MlflowClient()
    data = client.get_run(run_id).data
    assert data.metrics["final_map"] == 39.0
    assert data.metrics["bwt"] == -2.0
    assert data.metrics["chance/a"] == 10.0
    assert "chance/b" not in data.metrics
    assert "skipped" not in data.metrics
    assert data.metrics["map_at_k/b"] == 25.0
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "map/a")] == [(0, 50.0), (1, 48.0)]
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "map/b")] == [(1, 30.0)]
    assert [artifact.path for artifact in client.list_artifacts(run_id, "plots")] == ["plots/map.png"]

    inputs = client.get_run(run_id).inputs.dataset_inputs
    assert len(inputs) == 1
    dataset = inputs[0].dataset
    assert dataset.digest == data_hash
    assert data_hash[:12] in dataset.name
    assert json.loads(dataset.source)["uri"] == str(project / "data" / "splits")
    assert json.loads(dataset.profile)["num_rows"] == 1
    assert {tag.key: tag.value for tag in inputs[0].tags}["mclfir.data_hash"] == data_hash


def test_log_plots_rejects_missing_file(project):
    with tracking.child_run("evaluate"):
        with pytest.raises(FileNotFoundError, match="missing.png"):
            tracking.log_plots([project / "missing.png"])


def test_flatten_nested_params():
    assert tracking.flatten({"train": {"lr": 1, "opt": {"beta": 2}}, "seed": 0}) == {"train.lr": 1, "train.opt.beta": 2, "seed": 0}
