"""The data half of the DVC pipeline, run with real DVC on a small generated dataset."""

import shutil

import pytest
import yaml

from generated_projects import PROJECT, init_repository, make_dataset, make_project, project_env
from generated_projects import run as _run

pytestmark = pytest.mark.integration


@pytest.fixture()
def dvc_project(tmp_path):
    """A git + DVC project holding this repository's pipeline, with a generated dataset."""
    dataset = tmp_path / "dataset"
    make_dataset(dataset, count=48)
    project = tmp_path / "project"
    make_project(project)
    env = project_env(dataset)
    init_repository(project, env)
    return project, env


def test_data_stages_reproduce_and_stay_up_to_date(dvc_project):
    project, env = dvc_project
    targets = ["import", "prepare", "validate", "split", "plan"]

    _run(["dvc", "repro", *targets], project, env)

    lock = yaml.safe_load((project / "dvc.lock").read_text())
    raw_out = lock["stages"]["import"]["outs"][0]
    assert raw_out["path"] == "data/raw/fashion-products"
    assert raw_out["md5"].endswith(".dir")
    prepare_deps = {dep["path"]: dep for dep in lock["stages"]["prepare"]["deps"]}
    assert prepare_deps["data/raw/fashion-products"]["md5"] == raw_out["md5"]

    for increment in ("inc0", "inc1", "inc2", "inc3"):
        assert f"split@{increment}" in lock["stages"]
    assert (project / "data/splits/inc1/articleType.parquet").is_file()
    assert (project / "data/increments/plan.json").is_file()

    second = _run(["dvc", "repro", *targets], project, env)
    assert "Running stage" not in second.stdout
    status = _run(["dvc", "status", *targets], project, env)
    assert "up to date" in status.stdout


def test_plan_change_reruns_only_its_increment(dvc_project):
    project, env = dvc_project
    _run(["dvc", "repro", "split", "plan"], project, env)
    before = (project / "data/splits/inc0/gender.parquet").read_bytes()

    params = yaml.safe_load((project / "params.yaml").read_text())
    params["increments"]["inc3"]["attributes"] = ["season"]
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    rerun = _run(["dvc", "repro", "split", "plan"], project, env)

    assert "Running stage 'split@inc3'" in rerun.stdout
    assert "Running stage 'split@inc0'" not in rerun.stdout
    assert (project / "data/splits/inc0/gender.parquet").read_bytes() == before
    assert sorted(path.name for path in (project / "data/splits/inc3").glob("*.parquet")) == ["season.parquet"]


def test_compare_lineage_changes_only_its_increment(dvc_project):
    project, env = dvc_project
    (project / "compare").mkdir()
    shutil.copy(PROJECT / "compare" / "dvc.yaml", project / "compare" / "dvc.yaml")
    increments = ("inc0", "inc1", "inc2", "inc3")

    _run(["dvc", "repro", "compare/dvc.yaml:lineage"], project, env)
    before = {name: (project / "compare" / "lineage" / f"{name}.json").read_bytes() for name in increments}

    params = yaml.safe_load((project / "params.yaml").read_text())
    params["increments"]["inc3"]["attributes"] = ["season"]
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _run(["dvc", "repro", "compare/dvc.yaml:lineage"], project, env)
    after = {name: (project / "compare" / "lineage" / f"{name}.json").read_bytes() for name in increments}

    # Joint training and the evaluations of inc0 to inc2 depend on these files, so they stay cached.
    for name in ("inc0", "inc1", "inc2"):
        assert after[name] == before[name], name
    assert after["inc3"] != before["inc3"]
    status = _run(["dvc", "status", "compare/dvc.yaml:lineage"], project, env)
    assert "up to date" in status.stdout


def test_push_and_pull_through_local_remote(dvc_project, tmp_path):
    project, env = dvc_project
    _run(["dvc", "repro", "prepare"], project, env)
    _run(["dvc", "remote", "add", "-d", "store", str(tmp_path / "remote")], project, env)
    catalog = project / "data/catalog/catalog.parquet"
    pushed = catalog.read_bytes()

    _run(["dvc", "push"], project, env)
    shutil.rmtree(project / "data/catalog")
    shutil.rmtree(project / "data/raw")
    shutil.rmtree(project / ".dvc/cache")
    _run(["dvc", "pull", "import", "prepare"], project, env)

    assert catalog.read_bytes() == pushed
    assert len(list((project / "data/raw/fashion-products/images").glob("*.jpg"))) == 48
