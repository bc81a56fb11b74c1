"""The data half of the DVC pipeline, run with real DVC on a small generated dataset."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from PIL import Image

pytestmark = pytest.mark.integration

PROJECT = Path(__file__).resolve().parent.parent
COLOURS = {"Red": (200, 30, 30), "Blue": (30, 30, 200), "Green": (30, 160, 60)}
ARTICLES = ["Shirts", "Jeans", "Watches", "Shoes"]


def _make_dataset(root: Path, count: int) -> None:
    (root / "images").mkdir(parents=True)
    header = "id,gender,masterCategory,subCategory,articleType,baseColour,season,year,usage,productDisplayName"
    lines = [header]
    for index in range(count):
        colour = list(COLOURS)[index % len(COLOURS)]
        article = ARTICLES[index % len(ARTICLES)]
        gender = "Men" if index % 2 else "Women"
        lines.append(f"{1000 + index},{gender},Apparel,Topwear,{article},{colour},Summer,2012,Casual,Item {index}")
        image = Image.new("RGB", (60, 80), COLOURS[colour])
        image.paste((255, 255, 255), (5, 5 + index % 20, 30, 40 + index % 20))
        image.save(root / "images" / f"{1000 + index}.jpg")
    (root / "styles.csv").write_text("\n".join(lines) + "\n")


def _make_project(project: Path) -> None:
    project.mkdir()
    for name in ("dvc.yaml", "pyproject.toml"):
        shutil.copy(PROJECT / name, project / name)
    shutil.copytree(PROJECT / "mclfir", project / "mclfir", ignore=shutil.ignore_patterns("__pycache__"))

    params = yaml.safe_load((PROJECT / "params.yaml").read_text())
    params["data"]["min_images"] = 10
    params["data"]["min_images_per_value"] = 2
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def _run(command: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture()
def dvc_project(tmp_path):
    """A git + DVC project holding this repository's pipeline, with a generated dataset."""
    dataset = tmp_path / "dataset"
    _make_dataset(dataset, count=48)
    project = tmp_path / "project"
    _make_project(project)

    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "MCLFIR_DATA_ROOT": str(dataset)}
    env.pop("MCLFIR_PROJECT_ROOT", None)

    _run(["git", "init", "-q"], project, env)
    _run(["dvc", "init", "-q"], project, env)
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
