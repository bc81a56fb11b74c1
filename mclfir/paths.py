"""Project paths, resolved against the project root rather than the working directory.

The root is, in order: ``MCLFIR_PROJECT_ROOT``; the nearest folder at or above the working
directory that holds both ``params.yaml`` and ``pyproject.toml`` (so a DVC stage run from a
sub-folder or inside a DVC experiment copy finds its own copy); or the folder above this package.
"""

import os
from pathlib import Path

DATA_ROOT_ENV = "MCLFIR_DATA_ROOT"
PROJECT_ROOT_ENV = "MCLFIR_PROJECT_ROOT"
_ROOT_MARKERS = ("params.yaml", "pyproject.toml")
# File that contains the id of the MLflow parent run that the pipeline's stage runs nest under.
PARENT_RUN_FILE = "metrics/.mlflow_parent_run"


def project_root() -> Path:
    """Return the absolute project root."""
    explicit = os.environ.get(PROJECT_ROOT_ENV)
    if explicit:
        return Path(explicit).resolve()

    cwd = Path.cwd().resolve()
    for folder in (cwd, *cwd.parents):
        if all((folder / marker).is_file() for marker in _ROOT_MARKERS):
            return folder

    return Path(__file__).resolve().parent.parent


def resolve(path: str | os.PathLike) -> Path:
    """Return ``path`` as an absolute path; a relative path is taken from the project root."""
    path = Path(path).expanduser()
    if path.is_absolute():
        return path
    return project_root() / path


def data_root_from_env() -> Path | None:
    """Return the dataset folder named by ``MCLFIR_DATA_ROOT``, or None when it is unset or empty."""
    value = os.environ.get(DATA_ROOT_ENV, "").strip()
    if not value:
        return None
    return Path(value).expanduser().resolve()
