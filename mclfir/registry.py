"""MLflow model registry: log a checkpoint as a pyfunc embedding model, register it and gate promotion.

Every registered version gets the alias ``challenger``. The gate then compares it with the
version behind the alias ``champion``, using the ``map.<attribute>`` tags (mAP in percent
from the continual report):

- each attribute the champion does not serve must reach ``gate.min_map`` percent;
- each attribute the champion serves may drop by at most ``gate.max_drop`` percentage points,
  and none may be missing.

A version that passes takes the ``champion`` alias. One that fails keeps ``challenger`` and a
``gate.reason`` tag with the numbers, until :func:`promote` overrides the gate.
"""

import dataclasses
import getpass
import hashlib
import io
import json
import logging
import os
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from mclfir import tracking
from mclfir.config import load_params
from mclfir.paths import resolve

_logger = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
TAG_CHECKPOINT_SHA256 = "checkpoint_sha256"
IMAGE_COLUMN = "image"
ATTRIBUTE_COLUMN = "attribute"
# Rows per forward pass in the pyfunc model.
PREDICT_BATCH_SIZE = 64
_REQUIREMENT_PACKAGES = ("torch", "timm", "pillow", "pandas", "numpy", "pyyaml")


@dataclasses.dataclass(frozen=True)
class RegistryConfig:
    """The ``registry`` and ``gate`` sections of params.yaml."""

    model_name: str = "mclfir"
    # Minimum mAP in percent for each attribute that the champion does not serve.
    min_map: float = 30.0
    # Maximum drop in percentage points of an attribute the champion serves.
    max_drop: float = 3.0

    def __post_init__(self) -> None:
        if not self.model_name:
            raise ValueError("Invalid registry.model_name ''; name the registered model, for example mclfir.")
        if not 0.0 <= self.min_map <= 100.0:
            raise ValueError(f"Invalid gate.min_map {self.min_map}; use a percentage between 0 and 100.")
        if self.max_drop < 0.0:
            raise ValueError(f"Invalid gate.max_drop {self.max_drop}; use percentage points >= 0.")

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> "RegistryConfig":
        registry = dict(params.get("registry") or {})
        gate = dict(params.get("gate") or {})
        unknown = sorted({f"registry.{key}" for key in registry if key != "model_name"} | {f"gate.{key}" for key in gate if key not in ("min_map", "max_drop")})
        if unknown:
            raise ValueError(f"Unknown keys {', '.join(unknown)} in params.yaml; registry takes model_name, gate takes min_map and max_drop.")
        values = {"model_name": str(registry.get("model_name", cls.model_name))}
        for key in ("min_map", "max_drop"):
            if key in gate:
                try:
                    values[key] = float(gate[key])
                except (TypeError, ValueError):
                    raise ValueError(f"Invalid gate.{key} {gate[key]!r} in params.yaml: expected a number.") from None
        return cls(**values)


# --- Pyfunc model ---------------------------------------------------------------------------------


class EmbeddingModel(mlflow.pyfunc.PythonModel):
    """Pyfunc model: a DataFrame with columns ``image`` and ``attribute`` -> embeddings ``[N, D]``.

    ``image`` is a file path (str) or the encoded image bytes (JPEG, PNG, ...). The checkpoint
    is the artifact ``checkpoint`` and is loaded with the student weights. Images of different
    sizes are embedded in separate batches, because the model resizes each batch itself.
    """

    def load_context(self, context) -> None:
        from mclfir.model.checkpoint import load_model

        self.model = load_model(context.artifacts["checkpoint"], which="student")

    def predict(self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> np.ndarray:
        return embed_frame(self.model, model_input)


def embed_frame(model, frame: pd.DataFrame, batch_size: int = PREDICT_BATCH_SIZE) -> np.ndarray:
    """Embed each row of ``frame`` (columns ``image``, ``attribute``) with ``model``: ``-> [N, D]`` float32."""
    import torch

    _check_request(model, frame)
    pixels = [decode_image(value, row) for row, value in enumerate(frame[IMAGE_COLUMN])]  # each [H, W, 3] uint8
    attributes = [str(value) for value in frame[ATTRIBUTE_COLUMN]]

    rows_by_size: dict[tuple[int, ...], list[int]] = {}
    for row, image in enumerate(pixels):
        rows_by_size.setdefault(image.shape, []).append(row)

    embeddings = np.zeros((len(pixels), model.cfg.embed_dim), dtype=np.float32)
    with torch.inference_mode():
        for rows in rows_by_size.values():
            for start in range(0, len(rows), batch_size):
                batch_rows = rows[start : start + batch_size]
                images = torch.from_numpy(np.stack([pixels[row] for row in batch_rows])).permute(0, 3, 1, 2)  # [B, 3, H, W]
                batch = model(images, [attributes[row] for row in batch_rows])
                embeddings[batch_rows] = batch.float().numpy()
    return embeddings


def decode_image(value: Any, row: int) -> np.ndarray:
    """Decode one ``image`` cell (a path or encoded bytes) to RGB ``[H, W, 3]`` uint8."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(value, (bytes, bytearray, memoryview)):
        source, label = io.BytesIO(bytes(value)), f"the bytes in row {row}"
    elif isinstance(value, (str, os.PathLike)):
        path = Path(value)
        if not path.is_file():
            raise FileNotFoundError(f"Image not found: {path} (row {row}); pass an existing file path or the image bytes.")
        source, label = path, str(path)
    else:
        raise ValueError(f"Invalid image in row {row}: {type(value).__name__}; pass a file path (str) or the image bytes.")

    try:
        with Image.open(source) as image:
            return np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"Cannot decode {label} as an image: {error}.") from error


def _check_request(model, frame: pd.DataFrame) -> None:
    missing = [column for column in (IMAGE_COLUMN, ATTRIBUTE_COLUMN) if column not in frame.columns]
    if missing:
        raise ValueError(f"Missing columns {missing} in the request; send a DataFrame with columns image and attribute.")
    if frame.empty:
        raise ValueError("Cannot embed an empty request; send at least one row.")
    unknown = sorted({str(value) for value in frame[ATTRIBUTE_COLUMN]} - set(model.attributes))
    if unknown:
        raise ValueError(f"Unknown attributes {unknown} in the request; this model serves: {', '.join(model.attributes)}.")


# --- Registration ---------------------------------------------------------------------------------


def register(
    checkpoint_path: str | os.PathLike,
    report_path: str | os.PathLike,
    params: Mapping[str, Any] | None = None,
    run_gate: bool = True,
) -> str:
    """Log the checkpoint as a pyfunc model, register it, tag it, run the gate, and return the version.

    The version gets the tags ``attributes``, ``increments``, ``map.<attribute>`` (the last row
    of the report's ``R``), ``final_map``, ``forgetting``, ``data_hash`` and ``checkpoint_sha256``.
    A checkpoint registered before (same sha256) returns its existing version unchanged. With
    ``run_gate=False`` the version stays ``challenger`` until :func:`apply_gate` runs on it.
    """
    params = load_params() if params is None else params
    config = RegistryConfig.from_params(params)
    checkpoint_path = resolve(checkpoint_path)
    report = _read_report(resolve(report_path))

    tracking.configure()
    client = MlflowClient()
    checkpoint_sha256 = file_sha256(checkpoint_path)
    existing = find_version_by_checkpoint(client, config.model_name, checkpoint_sha256)
    if existing is not None:
        _logger.info("Checkpoint %s is already version %s of %r; nothing registered.", checkpoint_path, existing.version, config.model_name)
        return str(existing.version)

    from mclfir.model.checkpoint import load_model

    model = load_model(checkpoint_path, which="student")
    maps = _attribute_maps(report, model.attributes, resolve(report_path), checkpoint_path)
    tags = {
        "attributes": ",".join(model.attributes),
        "increments": ",".join(model.increments),
        **{f"map.{attribute}": f"{value:.4f}" for attribute, value in maps.items()},
        "final_map": _tag_number(report.get("final_map")),
        "forgetting": _tag_number(report.get("forgetting")),
        "data_hash": tracking.data_hash(),
        TAG_CHECKPOINT_SHA256: checkpoint_sha256,
    }

    last_increment = list(model.increments)[-1]
    with tracking.child_run("register", last_increment, params={"registry": dataclasses.asdict(config)}):
        model_info = _log_pyfunc(model, checkpoint_path)
        tracking.log_continual(report)
    version = str(mlflow.register_model(model_info.model_uri, config.model_name, tags=tags).version)
    client.set_registered_model_alias(config.model_name, CHALLENGER, version)
    _logger.info("Registered %s as version %s of %r (alias challenger).", checkpoint_path, version, config.model_name)

    if run_gate:
        apply_gate(client, config, version)
    return version


def _log_pyfunc(model, checkpoint_path: Path):
    """Log ``model`` as a pyfunc model with the checkpoint as artifact, on the active run."""
    from mlflow.models import infer_signature

    example = pd.DataFrame({IMAGE_COLUMN: [_example_image_bytes()], ATTRIBUTE_COLUMN: [model.attributes[0]]})
    output = embed_frame(model, example)
    package_dir = Path(__file__).resolve().parent
    return mlflow.pyfunc.log_model(
        name="model",
        python_model=EmbeddingModel(),
        artifacts={"checkpoint": str(checkpoint_path)},
        code_paths=[str(package_dir)],
        signature=infer_signature(example, output),
        input_example=example,
        pip_requirements=pip_requirements(),
    )


def _example_image_bytes() -> bytes:
    """Return a 60x80 grey JPEG, the size of the Fashion Product Images photos."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (60, 80), (128, 128, 128)).save(buffer, format="JPEG")
    return buffer.getvalue()


def pip_requirements() -> list[str]:
    """Return the pinned requirements of the pyfunc model, from the installed versions."""
    requirements = []
    for package in _REQUIREMENT_PACKAGES:
        try:
            requirements.append(f"{package}=={metadata.version(package)}")
        except metadata.PackageNotFoundError:
            requirements.append(package)
    return requirements


def file_sha256(path: Path) -> str:
    """Return the sha256 hex digest of the file at ``path``."""
    if not path.is_file():
        raise FileNotFoundError(f"Checkpoint not found: {path}. Train the increment first, or pass --checkpoint.")
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def find_version_by_checkpoint(client: MlflowClient, model_name: str, checkpoint_sha256: str) -> ModelVersion | None:
    """Return the version of ``model_name`` tagged with ``checkpoint_sha256``, or None."""
    for version in client.search_model_versions(f"name = '{model_name}'"):
        if version.tags.get(TAG_CHECKPOINT_SHA256) == checkpoint_sha256:
            return version
    return None


def _read_report(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"Continual report not found: {path}. Run `mclfir evaluate --aggregate` first, or pass --report.")
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"Invalid JSON in continual report {path}: {error}.") from error
    if not isinstance(report, dict) or not report.get("R"):
        raise ValueError(f"Invalid continual report {path}: expected an object with a non-empty 'R' list.")
    return report


def _attribute_maps(report: Mapping[str, Any], attributes: Sequence[str], report_path: Path, checkpoint_path: Path) -> dict[str, float]:
    final_row = report["R"][-1]
    missing = [attribute for attribute in attributes if final_row.get(attribute) is None]
    if missing:
        raise ValueError(
            f"Continual report {report_path} has no mAP for {missing} in its last row, but checkpoint "
            f"{checkpoint_path} serves them; evaluate that checkpoint and aggregate the report again."
        )
    return {attribute: float(final_row[attribute]) for attribute in attributes}


def _tag_number(value: Any) -> str:
    return "" if value is None else f"{float(value):.4f}"


# --- Gate -----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class AttributeCheck:
    """Gate result of one attribute: mAP of both versions in percent, and the check applied."""

    attribute: str
    champion_map: float | None
    challenger_map: float | None
    # new (champion lacks it), kept (both serve it) or lost (challenger lacks it).
    kind: str
    passed: bool
    reason: str


@dataclasses.dataclass(frozen=True)
class GateResult:
    """Verdict of the gate for one challenger against the champion (None when there is none)."""

    challenger: str
    champion: str | None
    checks: list[AttributeCheck]

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    @property
    def reason(self) -> str:
        failed = [check.reason for check in self.checks if not check.passed]
        if failed:
            return "; ".join(failed)
        return f"all {len(self.checks)} attributes pass against " + (f"champion version {self.champion}" if self.champion else "the minimum, no champion yet")


def version_maps(version: ModelVersion) -> dict[str, float]:
    """Return the ``map.<attribute>`` tags of ``version`` as attribute -> mAP in percent."""
    return {key[len("map.") :]: float(value) for key, value in version.tags.items() if key.startswith("map.") and value != ""}


def check_gate(challenger: ModelVersion, champion: ModelVersion | None, config: RegistryConfig) -> GateResult:
    """Compare ``challenger`` with ``champion`` attribute by attribute (see the module docstring)."""
    new_maps = version_maps(challenger)
    old_maps = version_maps(champion) if champion is not None else {}
    checks = []

    for attribute, value in new_maps.items():
        if attribute not in old_maps:
            passed = value >= config.min_map
            reason = f"new attribute {attribute} mAP {value:.2f}% {'>=' if passed else '<'} gate.min_map {config.min_map:.2f}%"
            checks.append(AttributeCheck(attribute, None, value, "new", passed, reason))
            continue
        drop = old_maps[attribute] - value
        passed = drop <= config.max_drop
        reason = (
            f"{attribute} mAP {value:.2f}% vs champion {old_maps[attribute]:.2f}%: "
            f"drop {drop:.2f} points {'<=' if passed else '>'} gate.max_drop {config.max_drop:.2f}"
        )
        checks.append(AttributeCheck(attribute, old_maps[attribute], value, "kept", passed, reason))

    for attribute, value in old_maps.items():
        if attribute not in new_maps:
            reason = f"{attribute} is served by champion version {champion.version} but not by version {challenger.version}"
            checks.append(AttributeCheck(attribute, value, None, "lost", False, reason))

    return GateResult(str(challenger.version), str(champion.version) if champion is not None else None, checks)


def apply_gate(client: MlflowClient, config: RegistryConfig, version: str) -> GateResult:
    """Run the gate on ``version``: on a pass it takes the champion alias, else it keeps challenger.

    The version gets the tags ``gate.verdict`` (passed or failed) and ``gate.reason`` with the numbers.
    """
    challenger = client.get_model_version(config.model_name, version)
    champion = alias_version(client, config.model_name, CHAMPION)
    result = check_gate(challenger, champion, config)

    client.set_model_version_tag(config.model_name, version, "gate.verdict", "passed" if result.passed else "failed")
    client.set_model_version_tag(config.model_name, version, "gate.reason", result.reason)
    if result.passed:
        _make_champion(client, config.model_name, version)
        _logger.info("Version %s passed the gate and is the champion: %s", version, result.reason)
    else:
        _logger.warning("Version %s failed the gate and stays challenger: %s", version, result.reason)
    return result


def _make_champion(client: MlflowClient, model_name: str, version: str) -> None:
    client.set_registered_model_alias(model_name, CHAMPION, version)
    challenger = alias_version(client, model_name, CHALLENGER)
    if challenger is not None and str(challenger.version) == str(version):
        client.delete_registered_model_alias(model_name, CHALLENGER)


def alias_version(client: MlflowClient, model_name: str, alias: str) -> ModelVersion | None:
    """Return the version of ``model_name`` behind ``alias``, or None when the alias or the model is missing."""
    try:
        return client.get_model_version_by_alias(model_name, alias)
    except MlflowException:
        return None


# --- Review and manual promotion ------------------------------------------------------------------


def review(version: str | int | None = None, params: Mapping[str, Any] | None = None) -> str:
    """Return a table of a version against the champion, per attribute, with the gate's verdict.

    ``version`` defaults to the challenger, else the newest version.
    """
    params = load_params() if params is None else params
    config = RegistryConfig.from_params(params)
    tracking.require_store()
    tracking.configure()
    client = MlflowClient()

    candidate = _review_candidate(client, config.model_name, version)
    champion = alias_version(client, config.model_name, CHAMPION)
    if champion is not None and str(champion.version) == str(candidate.version):
        champion_label = f"version {champion.version} is the champion"
        champion = None
    else:
        champion_label = f"champion: version {champion.version}" if champion else "no champion yet"
    result = check_gate(candidate, champion, config)

    lines = [
        f"Model {config.model_name!r}, version {candidate.version} ({champion_label}); "
        f"gate.min_map {config.min_map:.2f}%, gate.max_drop {config.max_drop:.2f} points",
        f"{'attribute':<20} {'champion':>9} {'version':>9} {'delta':>8}  check",
    ]
    for check in result.checks:
        delta = check.challenger_map - check.champion_map if None not in (check.challenger_map, check.champion_map) else None
        lines.append(
            f"{check.attribute:<20} {_cell(check.champion_map):>9} {_cell(check.challenger_map):>9} {_cell(delta, signed=True):>8}  "
            f"{'pass' if check.passed else 'FAIL'} ({check.kind})"
        )
    lines.append(f"Verdict: {'pass' if result.passed else 'fail'}: {result.reason}")
    override = candidate.tags.get("gate.override")
    if override:
        lines.append(f"Override: promoted by {candidate.tags.get('gate.override_by', 'unknown')}: {candidate.tags.get('gate.override_reason', '')}")
    return "\n".join(lines)


def _review_candidate(client: MlflowClient, model_name: str, version: str | int | None) -> ModelVersion:
    if version is not None:
        try:
            return client.get_model_version(model_name, str(version))
        except MlflowException as error:
            raise ValueError(f"Version {version} of model {model_name!r} not found; list versions with the MLflow UI.") from error
    challenger = alias_version(client, model_name, CHALLENGER)
    if challenger is not None:
        return challenger
    versions = client.search_model_versions(f"name = '{model_name}'")
    if not versions:
        raise ValueError(f"Model {model_name!r} has no registered versions; run `mclfir registry register` first.")
    return max(versions, key=lambda item: int(item.version))


def _cell(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.2f}" if signed else f"{value:.2f}"


def promote(version: str | int, reason: str, params: Mapping[str, Any] | None = None) -> str | None:
    """Move the champion alias to ``version`` whatever the gate says, and return the previous champion's version.

    The version records the override in the tags ``gate.override`` (true), ``gate.override_by``
    (the OS user), ``gate.override_reason`` and ``gate.override_previous_champion``.
    """
    if not reason.strip():
        raise ValueError("Missing reason for the promotion; pass --reason with why the gate is overridden.")
    params = load_params() if params is None else params
    config = RegistryConfig.from_params(params)
    tracking.require_store()
    tracking.configure()
    client = MlflowClient()
    version = str(_review_candidate(client, config.model_name, version).version)

    previous = alias_version(client, config.model_name, CHAMPION)
    previous_version = str(previous.version) if previous is not None else None
    tags = {
        "gate.override": "true",
        "gate.override_by": _user(),
        "gate.override_reason": reason,
        "gate.override_previous_champion": previous_version or "",
    }
    for key, value in tags.items():
        client.set_model_version_tag(config.model_name, version, key, value)
    _make_champion(client, config.model_name, version)
    _logger.warning("Version %s promoted to champion by override (previous champion: %s): %s", version, previous_version, reason)
    return previous_version


def _user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "unknown"
