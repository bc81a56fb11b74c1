"""Generated datasets and projects for the tests that run the real DVC pipeline.

A project is a folder with this repository's ``dvc.yaml``, ``pyproject.toml`` and ``mclfir``
sources (the stages list them as dependencies), a ``params.yaml`` derived from the real one,
and git and DVC initialised. The dataset is a small Fashion Product Images lookalike: flat
colour photos of 60x80 px with a white patch, and a ``styles.csv`` in Kaggle's layout.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from PIL import Image

PROJECT = Path(__file__).resolve().parent.parent
COLOURS = {"Red": (200, 30, 30), "Blue": (30, 30, 200), "Green": (30, 160, 60)}
ARTICLES = ["Shirts", "Jeans", "Watches", "Shoes"]
STYLES_HEADER = "id,gender,masterCategory,subCategory,articleType,baseColour,season,year,usage,productDisplayName"
FIRST_ID = 1000


def make_dataset(root: Path, count: int) -> None:
    """Write ``count`` images and their ``styles.csv`` under ``root``; ids start at FIRST_ID."""
    (root / "images").mkdir(parents=True)
    lines = [STYLES_HEADER]
    for index in range(count):
        colour = list(COLOURS)[index % len(COLOURS)]
        article = ARTICLES[index % len(ARTICLES)]
        gender = "Men" if index % 2 else "Women"
        lines.append(f"{FIRST_ID + index},{gender},Apparel,Topwear,{article},{colour},Summer,2012,Casual,Item {index}")
        image = Image.new("RGB", (60, 80), COLOURS[colour])
        image.paste((255, 255, 255), (5, 5 + index % 20, 30, 40 + index % 20))
        image.save(root / "images" / f"{FIRST_ID + index}.jpg")
    (root / "styles.csv").write_text("\n".join(lines) + "\n")


def make_project(project: Path, params_update: dict[str, Any] | None = None) -> None:
    """Create a project folder with the pipeline's files and params.yaml updated section by section."""
    project.mkdir()
    for name in ("dvc.yaml", "pyproject.toml"):
        shutil.copy(PROJECT / name, project / name)
    shutil.copytree(PROJECT / "mclfir", project / "mclfir", ignore=shutil.ignore_patterns("__pycache__"))
    labels = project / "data" / "labels"
    labels.mkdir(parents=True)
    shutil.copy(PROJECT / "data" / "labels" / "README.md", labels / "README.md")

    params = yaml.safe_load((PROJECT / "params.yaml").read_text())
    params["data"]["min_images"] = 10
    params["data"]["min_images_per_value"] = 2
    for section, values in (params_update or {}).items():
        if isinstance(values, dict) and isinstance(params.get(section), dict) and section != "increments":
            params[section].update(values)
        else:
            params[section] = values
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def project_env(dataset: Path) -> dict[str, str]:
    """Return an environment for commands in a generated project: this venv first on PATH, the dataset set."""
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "MCLFIR_DATA_ROOT": str(dataset)}
    env.pop("MCLFIR_PROJECT_ROOT", None)
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def run(command: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run ``command`` and fail the test with its output when it exits with an error."""
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}"
    return result


def init_repository(project: Path, env: dict[str, str], commit: bool = False) -> None:
    """Run ``git init`` and ``dvc init`` in ``project``; with ``commit``, commit every file."""
    run(["git", "init", "-q"], project, env)
    run(["dvc", "init", "-q"], project, env)
    if commit:
        run(["git", "add", "-A"], project, env)
        identity = ["-c", "user.name=mclfir tests", "-c", "user.email=tests@localhost"]
        run(["git", *identity, "commit", "-q", "-m", "Generated project"], project, env)
