"""MLflow tracking: one parent run per pipeline run, one child run per stage, and logging helpers.

DVC runs each stage in its own process, so the parent run cannot be the active run of the
stages. :func:`start_pipeline_run` creates the parent run without activating it and writes its
id to ``metrics/.mlflow_parent_run``. :func:`child_run` reads the id from
``MCLFIR_PARENT_RUN_ID`` or that file and opens a nested run under it.

The tracking store is ``MLFLOW_TRACKING_URI`` when set, else a SQLite file ``mlflow.db`` in the
project root, with artifacts under ``mlartifacts/``.
"""

import contextlib
import hashlib
import logging
import math
import os
import subprocess
import sys
import warnings
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import mlflow
import yaml
from mlflow.tracking import MlflowClient

from mclfir.paths import PARENT_RUN_FILE, project_root, resolve

_logger = logging.getLogger(__name__)

EXPERIMENT_NAME = "mclfir"
PARENT_RUN_ENV = "MCLFIR_PARENT_RUN_ID"
# Outputs of dvc.lock whose md5s make up the data hash: the validated catalog and every split folder.
DATA_HASH_OUTS = ("data/validated/catalog.parquet", "data/splits/")

_SQLITE_PREFIX = "sqlite:///"

TAG_GIT_COMMIT = "mclfir.git_commit"
TAG_DATA_HASH = "mclfir.data_hash"
TAG_INCREMENT = "mclfir.increment"
TAG_KIND = "mclfir.kind"
TAG_PREFECT_FLOW_RUN = "mclfir.prefect_flow_run_id"


def tracking_uri() -> str:
    """Return ``MLFLOW_TRACKING_URI`` when set, else ``sqlite:///<project root>/mlflow.db``."""
    explicit = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if explicit:
        return explicit
    return f"{_SQLITE_PREFIX}{project_root() / 'mlflow.db'}"


def require_store() -> None:
    """Raise FileNotFoundError when the tracking store is a SQLite file that does not exist.

    Commands that only read or change registered models call this first, so that they do not
    create an empty store where the user expected their registry.
    """
    uri = tracking_uri()
    if not uri.startswith(_SQLITE_PREFIX):
        return
    path = Path(uri[len(_SQLITE_PREFIX):])
    if not path.is_file():
        raise FileNotFoundError(
            f"No MLflow store at {path}, so no model is registered. Run the pipeline (`dvc repro`) to train and "
            "register one, or set MLFLOW_TRACKING_URI to the store that holds your registry."
        )


def artifact_root() -> Path:
    """Return the folder that holds the artifacts of a new experiment: ``<project root>/mlartifacts``."""
    return project_root() / "mlartifacts"


def configure() -> str:
    """Point MLflow's tracking and registry at :func:`tracking_uri`, and return the id of experiment ``mclfir``.

    The experiment is created when missing, with its artifacts under :func:`artifact_root`.
    """
    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment = client.get_experiment_by_name(EXPERIMENT_NAME)
    if experiment is None:
        experiment_id = client.create_experiment(EXPERIMENT_NAME, artifact_location=artifact_root().as_uri())
        _logger.info("Created MLflow experiment %r (id %s) in %s", EXPERIMENT_NAME, experiment_id, uri)
    else:
        experiment_id = experiment.experiment_id
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


# --- Run context: git commit, data hash, Prefect flow run ----------------------------------------


def git_commit() -> str:
    """Return the commit of the project root (``git rev-parse HEAD``), or ``unknown`` outside git."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=project_root(), capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    commit = result.stdout.strip()
    return commit if result.returncode == 0 and commit else "unknown"


def data_hash(lock_path: str | os.PathLike | None = None) -> str:
    """Return a hash of the data the models train and evaluate on, read from ``dvc.lock``.

    It is the sha256 (first 32 hex digits) of the sorted ``path md5`` lines of the outputs
    ``data/validated/catalog.parquet`` and ``data/splits/*`` over all stages. Returns ``unknown``
    when the lock file is missing or lists none of them.
    """
    lock_path = resolve(lock_path or "dvc.lock")
    if not lock_path.is_file():
        return "unknown"
    with lock_path.open(encoding="utf-8") as handle:
        try:
            lock = yaml.safe_load(handle) or {}
        except yaml.YAMLError as error:
            raise ValueError(f"Invalid YAML in {lock_path}: {error}. Run `dvc repro` to rewrite it.") from error

    hashes = {}
    for stage in (lock.get("stages") or {}).values():
        for out in stage.get("outs") or []:
            path = str(out.get("path", ""))
            if path == DATA_HASH_OUTS[0] or path.startswith(DATA_HASH_OUTS[1]):
                hashes[path] = str(out.get("md5", ""))
    if not hashes:
        return "unknown"

    lines = "".join(f"{path} {md5}\n" for path, md5 in sorted(hashes.items()))
    return hashlib.sha256(lines.encode("utf-8")).hexdigest()[:32]


def prefect_flow_run_id() -> str | None:
    """Return the id of the Prefect flow run this process runs in, or None outside one.

    Prefect is imported only when it is loaded already, because importing it takes about 2 s.
    A stage started by a flow in a subprocess finds the id in ``PREFECT__FLOW_RUN_ID``, which is
    also Prefect's own fallback in ``prefect.runtime.flow_run.get_id``.
    """
    if "prefect" in sys.modules:
        try:
            from prefect.runtime import flow_run
        except ImportError:
            return None
        return flow_run.get_id()
    return os.environ.get("PREFECT__FLOW_RUN_ID") or None


# --- Parent and child runs -----------------------------------------------------------------------


def start_pipeline_run(name: str, parent_file: str | os.PathLike | None = None) -> str:
    """Create the parent run of one pipeline run, write its id to ``parent_file``, and return the id.

    The run is created through the client, so it is not the active run and ``MLFLOW_RUN_ID``
    plays no part. ``parent_file`` defaults to ``metrics/.mlflow_parent_run`` in the project root.
    """
    experiment_id = configure()
    tags = {TAG_GIT_COMMIT: git_commit(), TAG_DATA_HASH: data_hash(), TAG_KIND: "pipeline"}
    flow_run_id = prefect_flow_run_id()
    if flow_run_id:
        tags[TAG_PREFECT_FLOW_RUN] = flow_run_id
    run = MlflowClient().create_run(experiment_id, run_name=name, tags=tags)
    run_id = run.info.run_id

    path = resolve(parent_file or PARENT_RUN_FILE)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(run_id + "\n", encoding="utf-8")
    _logger.info("Started pipeline run %r (MLflow run %s); its id is in %s", name, run_id, path)
    return run_id


def finish_pipeline_run(status: str = "FINISHED", parent_file: str | os.PathLike | None = None) -> str | None:
    """Mark the parent run as ended with ``status`` (FINISHED, FAILED or KILLED) and return its id, or None."""
    run_id = parent_run_id(parent_file)
    if run_id is None:
        return None
    MlflowClient().set_terminated(run_id, status=status)
    return run_id


def parent_run_id(parent_file: str | os.PathLike | None = None) -> str | None:
    """Return the parent run id from ``MCLFIR_PARENT_RUN_ID``, else from ``parent_file``, else None.

    ``MLFLOW_RUN_ID`` is not read, so a value left in the environment by another tool cannot
    become the parent.
    """
    explicit = os.environ.get(PARENT_RUN_ENV, "").strip()
    if explicit:
        return explicit
    path = resolve(parent_file or PARENT_RUN_FILE)
    if path.is_file():
        return path.read_text(encoding="utf-8").strip() or None
    return None


@contextlib.contextmanager
def child_run(
    kind: str,
    increment: str | None = None,
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, str] | None = None,
    parent_file: str | os.PathLike | None = None,
) -> Iterator[mlflow.ActiveRun]:
    """Open a run of one stage (``kind``: train, evaluate, ...) nested under the pipeline's parent run.

    Without a parent run (or when the stored id is not found in the store) the run is standalone.
    The run gets the tags ``mclfir.git_commit``, ``mclfir.data_hash``, ``mclfir.increment``,
    ``mclfir.kind``, ``mclfir.prefect_flow_run_id`` inside a Prefect flow run, plus ``tags``,
    and logs ``params`` flattened with dots (``train.lr``).
    """
    configure()
    parent_id = _existing_parent(parent_run_id(parent_file))
    run_tags = {TAG_KIND: kind, TAG_GIT_COMMIT: git_commit(), TAG_DATA_HASH: data_hash()}
    if increment is not None:
        run_tags[TAG_INCREMENT] = increment
    flow_run_id = prefect_flow_run_id()
    if flow_run_id:
        run_tags[TAG_PREFECT_FLOW_RUN] = flow_run_id
    run_tags.update(tags or {})
    run_name = f"{kind}-{increment}" if increment else kind

    with _without_mlflow_run_id():
        active = mlflow.start_run(run_name=run_name, parent_run_id=parent_id, nested=parent_id is not None, tags=run_tags)
    with active:
        if params:
            log_params(params)
        yield active


def _existing_parent(run_id: str | None) -> str | None:
    if run_id is None:
        return None
    try:
        MlflowClient().get_run(run_id)
    except mlflow.exceptions.MlflowException:
        _logger.warning(
            "Parent run %s (from %s or %s) is not in the tracking store %s; logging a standalone run. "
            "Start a pipeline run with start_pipeline_run to nest stage runs again.",
            run_id, PARENT_RUN_ENV, PARENT_RUN_FILE, tracking_uri(),
        )
        return None
    return run_id


@contextlib.contextmanager
def _without_mlflow_run_id() -> Iterator[None]:
    # mlflow.start_run resumes the run named by MLFLOW_RUN_ID (and deletes the variable) when it is set.
    stray = os.environ.pop("MLFLOW_RUN_ID", None)
    if stray:
        _logger.warning("Ignoring MLFLOW_RUN_ID=%s; stage runs nest under the pipeline's parent run.", stray)
    try:
        yield
    finally:
        if stray:
            os.environ["MLFLOW_RUN_ID"] = stray


# --- Logging helpers (on the active run) ---------------------------------------------------------


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Return nested ``params`` as one level with dotted keys: ``{"train": {"lr": 1}}`` -> ``{"train.lr": 1}``."""
    flat = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def log_params(params: Mapping[str, Any]) -> None:
    """Log ``params`` flattened with dots on the active run."""
    mlflow.log_params(flatten(params))


def log_epoch_metrics(step: int, metrics: Mapping[str, float]) -> None:
    """Log ``metrics`` at ``step`` (an epoch or optimizer step), skipping values that are not finite."""
    mlflow.log_metrics(_finite(metrics), step=step)


def log_attribute_maps(R_row: Mapping[str, float], increment_index: int) -> None:
    """Log one row of the continual accuracy matrix as ``map/<attribute>`` at step ``increment_index``.

    ``R_row`` maps attribute -> mAP in percent after training increment ``increment_index``.
    """
    mlflow.log_metrics(_finite({f"map/{attribute}": value for attribute, value in R_row.items()}), step=increment_index)


def log_continual(report: Mapping[str, Any]) -> None:
    """Log the continual report (``metrics/continual.json``): summary figures and per-attribute figures.

    Logs ``final_map``, ``forgetting`` and ``bwt``, ``map/<attribute>`` per row of ``R`` (step =
    increment index), and ``chance/<attribute>``, ``balanced/<attribute>`` and ``map_at_k/<attribute>``.
    """
    summary = {name: report[name] for name in ("final_map", "forgetting", "bwt") if report.get(name) is not None}
    mlflow.log_metrics(_finite(summary))

    for index, row in enumerate(report.get("R") or []):
        log_attribute_maps(row, index)

    for group in ("chance", "balanced", "map_at_k"):
        values = report.get(group) or {}
        mlflow.log_metrics(_finite({f"{group}/{attribute}": value for attribute, value in values.items()}))


def log_plots(paths: Iterable[str | os.PathLike], artifact_path: str = "plots") -> None:
    """Log the plot files in ``paths`` as artifacts under ``artifact_path``; missing files raise FileNotFoundError."""
    for path in paths:
        path = resolve(path)
        if not path.is_file():
            raise FileNotFoundError(f"Plot not found: {path}. Run the evaluate stage first, or drop it from the list.")
        mlflow.log_artifact(str(path), artifact_path=artifact_path)


def log_training_input(split_files: Iterable[str | os.PathLike], data_hash_value: str, context: str = "training") -> None:
    """Log the split tables as the run's input dataset, named and digested by the DVC data hash.

    The dataset holds a summary frame (one row per split table: increment, attribute, path, rows),
    not the tables themselves. Its source is the splits folder, and its name and digest carry
    ``data_hash_value`` so that a run can be traced to the DVC version of the data.
    """
    import pandas as pd
    import pyarrow.parquet as pq
    from mlflow.data.dataset_source_registry import resolve_dataset_source

    rows = []
    for path in split_files:
        path = resolve(path)
        if not path.is_file():
            raise FileNotFoundError(f"Split table not found: {path}. Run `mclfir data split` first.")
        rows.append(
            {"increment": path.parent.name, "attribute": path.stem, "path": str(path), "rows": pq.read_metadata(path).num_rows}
        )
    summary = pd.DataFrame(rows, columns=["increment", "attribute", "path", "rows"])

    folders = sorted({str(Path(row["path"]).parent.parent) for row in rows}) or [str(project_root() / "data" / "splits")]
    with warnings.catch_warnings():
        # MLflow 3.17 registers a local source for both "" and "file" and warns that a path matches
        # both. It also warns about the integer row counts, which are never missing.
        warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted in multiple ways")
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer column")
        dataset = mlflow.data.from_pandas(
            summary,
            source=resolve_dataset_source(folders[0]),
            name=f"mclfir-splits-{data_hash_value[:12]}",
            digest=data_hash_value[:32],
        )
    mlflow.log_input(dataset, context=context, tags={TAG_DATA_HASH: data_hash_value})


def _finite(metrics: Mapping[str, Any]) -> dict[str, float]:
    values = {}
    for name, value in metrics.items():
        if value is None:
            continue
        value = float(value)
        if math.isfinite(value):
            values[name] = value
    return values
