"""Find the model that a search or an index uses: a local checkpoint or an MLflow model URI.

Without a model named, the registry's champion (``models:/<registry.model_name>@champion``) is
used when the tracking store has one. Otherwise the checkpoint of the plan's latest trained
increment is used. A registered model is the pyfunc model that ``mclfir registry
register`` logs, whose ``checkpoint`` artifact is the training checkpoint.
"""

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from mclfir.paths import project_root, resolve
from mclfir.search.index import ModelIdentity

_logger = logging.getLogger(__name__)

CHECKPOINT_ARTIFACT = "checkpoint.pt"
_URI_SCHEMES = ("models:/", "runs:/", "mlflow-artifacts:/", "file://")


@dataclass
class SearchModel:
    """A loaded student model, its checkpoint and its identity."""

    model: Any
    checkpoint: Path
    identity: ModelIdentity

    @property
    def attributes(self) -> list[str]:
        return list(self.model.attributes)


def is_mlflow_uri(reference: str) -> bool:
    """Return whether ``reference`` is an MLflow model URI rather than a local path."""
    return reference.startswith(_URI_SCHEMES)


def default_reference(params: Mapping[str, Any]) -> str:
    """Return the champion's URI when the registry has one, else the latest trained local checkpoint."""
    champion = champion_uri(params)
    if champion is not None:
        return champion
    return str(latest_checkpoint(params))


def champion_uri(params: Mapping[str, Any]) -> str | None:
    """Return ``models:/<name>@champion`` when the tracking store has that alias, else None.

    A missing SQLite store is not created: without it there is no champion.
    """
    from mlflow.tracking import MlflowClient

    from mclfir import tracking
    from mclfir.registry import CHAMPION, RegistryConfig, alias_version

    if not store_exists():
        return None

    name = RegistryConfig.from_params(params).model_name
    tracking.configure()
    if alias_version(MlflowClient(), name, CHAMPION) is None:
        return None
    return f"models:/{name}@{CHAMPION}"


def latest_checkpoint(params: Mapping[str, Any], models_dir: str = "models") -> Path:
    """Return the checkpoint of the last increment of the plan that has one."""
    from mclfir.data.increments import load_plan
    from mclfir.train import CHECKPOINT_FILE

    order = load_plan(dict(params)).order
    for increment in reversed(order):
        path = resolve(models_dir) / increment / CHECKPOINT_FILE
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"No trained checkpoint under {resolve(models_dir)} for the increments {', '.join(order)}. "
        "Train with `dvc repro` or `make run`, or pass --model."
    )


def load_search_model(reference: str) -> SearchModel:
    """Load the student model named by ``reference`` (an MLflow model URI or a checkpoint path)."""
    from mclfir.model.checkpoint import load_model
    from mclfir.registry import file_sha256

    if is_mlflow_uri(reference):
        checkpoint, version = _download_checkpoint(reference)
    else:
        checkpoint, version = resolve(reference), None
        if not checkpoint.is_file():
            raise FileNotFoundError(f"Model checkpoint not found: {checkpoint}. Pass a checkpoint file or an MLflow URI such as models:/mclfir@champion.")

    model = load_model(checkpoint, which="student")
    identity = ModelIdentity(file_sha256(checkpoint), _label(reference), version)
    _logger.info("Loaded %s (attributes %s)", identity.label, ", ".join(model.attributes))
    return SearchModel(model, checkpoint, identity)


def _label(reference: str) -> str:
    if is_mlflow_uri(reference):
        return reference
    path = resolve(reference)
    try:
        return path.relative_to(project_root()).as_posix()
    except ValueError:
        return str(path)


def _download_checkpoint(uri: str) -> tuple[Path, str | None]:
    """Download the registered model's checkpoint artifact and return it with the registry version."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from mclfir import tracking

    tracking.configure()
    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri))
    except MlflowException as error:
        raise FileNotFoundError(
            f"Cannot load model {uri} from {tracking.tracking_uri()}: {error.message} "
            "List the registered versions with `mclfir registry review`, or pass a checkpoint file."
        ) from None

    found = sorted(local.rglob(CHECKPOINT_ARTIFACT))
    if not found:
        raise FileNotFoundError(f"Model {uri} has no {CHECKPOINT_ARTIFACT} artifact; register it with `mclfir registry register`.")
    return found[0], _registry_version(uri)


def _registry_version(uri: str) -> str | None:
    """Return the version number behind ``models:/name/N`` or ``models:/name@alias``, else None."""
    from mlflow.tracking import MlflowClient

    if not uri.startswith("models:/"):
        return None
    name_and_rest = uri.removeprefix("models:/")
    if "@" in name_and_rest:
        name, alias = name_and_rest.split("@", 1)
        return str(MlflowClient().get_model_version_by_alias(name, alias).version)
    name, _, version = name_and_rest.partition("/")
    return version if version.isdigit() else None


def versions_serving(attribute: str, params: Mapping[str, Any]) -> list[str]:
    """Return the registry versions whose ``attributes`` tag lists ``attribute``, newest first."""
    from mlflow.tracking import MlflowClient

    from mclfir import tracking
    from mclfir.registry import RegistryConfig

    if not store_exists():
        return []
    tracking.configure()
    name = RegistryConfig.from_params(params).model_name
    versions = MlflowClient().search_model_versions(f"name = '{name}'")
    serving = [version for version in versions if attribute in version.tags.get("attributes", "").split(",")]
    return [str(version.version) for version in sorted(serving, key=lambda version: int(version.version), reverse=True)]


def store_exists() -> bool:
    """Return whether the tracking store exists; a SQLite file that is missing is not created here."""
    from mclfir import tracking

    uri = tracking.tracking_uri()
    return not uri.startswith("sqlite:///") or Path(uri.removeprefix("sqlite:///")).is_file()
