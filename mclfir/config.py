"""Typed views of ``params.yaml``.

``params.yaml`` is the one source of truth for configuration. DVC stages list the keys they
read, and each component reads its section through the dataclasses here.
"""

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mclfir.paths import resolve
from mclfir.strategies import DEFAULT_STRATEGY, get_strategy

PARAMS_FILE = "params.yaml"


@dataclass(frozen=True)
class SplitConfig:
    """Split fractions, query share and the salt of the assignment hash."""

    train: float = 0.8
    valid: float = 0.1
    test: float = 0.1
    query_fraction: float = 0.25
    salt: str = "mclfir-split-v1"

    def __post_init__(self) -> None:
        total = self.train + self.valid + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(
                f"Invalid split fractions in data.split: train {self.train} + valid {self.valid} "
                f"+ test {self.test} = {total:.6g}; set them so that they sum to 1."
            )
        if not 0.0 < self.query_fraction < 1.0:
            raise ValueError(
                f"Invalid data.split.query_fraction {self.query_fraction}; use a value between 0 and 1."
            )


@dataclass(frozen=True)
class DataConfig:
    """The ``data`` section: source adapter, raw copy and validation thresholds."""

    source: str = "fashion-products"
    raw_dir: str = "data/raw/fashion-products"
    max_images: int = 0
    min_images: int = 100
    min_images_per_value: int = 10
    split: SplitConfig = field(default_factory=SplitConfig)

    @classmethod
    def from_dict(cls, section: dict[str, Any]) -> "DataConfig":
        section = dict(section)
        split = _build_section(SplitConfig, section.pop("split", {}) or {}, "data.split")
        return _build_section(cls, {**section, "split": split}, "data")


def _build_section(cls: type, section: dict[str, Any], prefix: str) -> Any:
    """Build the dataclass ``cls`` from a params section, converting values to the field types.

    Unknown keys and values of the wrong type raise ``ValueError`` naming the key in params.yaml.
    """
    fields = {name: spec for name, spec in cls.__dataclass_fields__.items()}
    unknown = sorted(set(section) - set(fields))
    if unknown:
        raise ValueError(
            f"Unknown keys {', '.join(f'{prefix}.{key}' for key in unknown)} in params.yaml; "
            f"{prefix} takes: {', '.join(fields)}."
        )

    values = {}
    for name, value in section.items():
        expected = fields[name].type
        if expected in (int, float, str) and not isinstance(value, bool):
            try:
                value = expected(value)
            except (TypeError, ValueError):
                raise ValueError(
                    f"Invalid {prefix}.{name} {value!r} in params.yaml: expected {expected.__name__}."
                ) from None
        values[name] = value
    return cls(**values)


def load_params(path: str | Path | None = None) -> dict[str, Any]:
    """Read ``params.yaml`` (from the project root unless ``path`` is given) as a dict."""
    params_path = resolve(path or PARAMS_FILE)
    if not params_path.is_file():
        raise FileNotFoundError(
            f"Parameters file not found: {params_path}. Run from the project folder or set MCLFIR_PROJECT_ROOT."
        )
    with params_path.open(encoding="utf-8") as handle:
        try:
            params = yaml.safe_load(handle) or {}
        except yaml.YAMLError as error:
            raise ValueError(f"Invalid YAML in parameters file {params_path}: {error}") from error
    if not isinstance(params, dict):
        raise ValueError(f"Invalid parameters file {params_path}: expected a mapping at the top level.")
    return params


def load_data_config(params: dict[str, Any] | None = None) -> DataConfig:
    """Return the ``data`` section as a :class:`DataConfig`."""
    params = load_params() if params is None else params
    return DataConfig.from_dict(params.get("data", {}))


def to_dict(config: Any) -> dict[str, Any]:
    """Return a config dataclass as a plain dict, for saving beside outputs and logging as params."""
    return asdict(config)


@dataclass(frozen=True)
class ModelConfig:
    """The ``model`` section: timm backbone, truncation point, input size and head sizes."""

    backbone: str = "resnet18"
    # timm ``features_only`` out index; for ResNets 3 is the output of stage 3 (stride 16).
    feature_index: int = 3
    # Network input [H, W]; None takes the input size of timm's pretrained config for the backbone.
    image_size: list[int] | None = None
    pretrained: bool = False
    # Local weights file (.pth, .bin or .safetensors) of the full timm model, loaded instead of the hub.
    weights_path: str | None = None
    embed_dim: int = 128
    # Width of the attribute embedding and of the attention projections in each head.
    attention_dim: int = 256

    def __post_init__(self) -> None:
        if self.image_size is not None:
            size = list(self.image_size)
            if len(size) != 2 or not all(isinstance(side, int) and side > 0 for side in size):
                raise ValueError(
                    f"Invalid model.image_size {self.image_size!r}; use [height, width] in pixels, "
                    "or null for the backbone's default input size."
                )
            object.__setattr__(self, "image_size", size)
        if self.feature_index < 0:
            raise ValueError(f"Invalid model.feature_index {self.feature_index}; use a timm features_only index >= 0.")
        for name in ("embed_dim", "attention_dim"):
            if getattr(self, name) <= 0:
                raise ValueError(f"Invalid model.{name} {getattr(self, name)}; use a positive integer.")

    @classmethod
    def from_dict(cls, section: dict[str, Any]) -> "ModelConfig":
        return cls(**section)


def load_model_config(params: dict[str, Any] | None = None) -> ModelConfig:
    """Return the ``model`` section as a :class:`ModelConfig`."""
    params = load_params() if params is None else params
    return ModelConfig.from_dict(params.get("model", {}))


@dataclass(frozen=True)
class TrainConfig:
    """The ``train`` section: doublet sampling, optimiser, schedule, loss weights and checkpoints."""

    epochs: int = 3
    # Pairs per batch; a batch contains 2 * batch_size images.
    batch_size: int = 32
    # Pairs per attribute per epoch, rounded up to whole batches.
    pairs_per_epoch: int = 8192
    # False: one attribute per batch (more negatives per anchor); True: attributes mixed in a batch.
    mixed_batches: bool = False
    lr: float = 1e-3
    weight_decay: float = 0.05
    # Share of the steps spent on the linear warm-up before the cosine decay.
    warmup_fraction: float = 0.05
    temperature: float = 0.3
    # Weight of the distillation losses (backbone features and earlier heads' embeddings).
    distill_weight: float = 1.0
    ema_decay: float = 0.998
    seed: int = 0
    # Steps between two writes of last.pt; the end of each epoch writes it too.
    checkpoint_every: int = 200
    log_every: int = 50
    # Smallest side scale of the random crop; 1.0 turns cropping off.
    crop_scale_min: float = 0.9
    hflip: bool = True
    # CPU threads for torch; 0 uses every core.
    num_threads: int = 0
    cpu_bf16: bool = False
    # Training strategy: mclfir, finetune, lwf or joint (see mclfir.strategies).
    strategy: str = DEFAULT_STRATEGY

    def __post_init__(self) -> None:
        get_strategy(self.strategy)
        for name in ("epochs", "batch_size", "pairs_per_epoch", "checkpoint_every", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"Invalid train.{name} {getattr(self, name)}; use a positive integer.")
        if self.batch_size < 2:
            raise ValueError(f"Invalid train.batch_size {self.batch_size}; InfoNCE needs at least 2 pairs per batch.")
        if self.temperature <= 0:
            raise ValueError(f"Invalid train.temperature {self.temperature}; use a positive number such as 0.3.")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"Invalid train.ema_decay {self.ema_decay}; use a value in [0, 1).")
        if not 0.0 <= self.warmup_fraction < 1.0:
            raise ValueError(f"Invalid train.warmup_fraction {self.warmup_fraction}; use a value in [0, 1).")
        if not 0.0 < self.crop_scale_min <= 1.0:
            raise ValueError(f"Invalid train.crop_scale_min {self.crop_scale_min}; use a value in (0, 1].")
        if self.num_threads < 0:
            raise ValueError(f"Invalid train.num_threads {self.num_threads}; use 0 for every core or a positive count.")

    @classmethod
    def from_dict(cls, section: dict[str, Any]) -> "TrainConfig":
        return cls(**section)


def load_train_config(params: dict[str, Any] | None = None) -> TrainConfig:
    """Return the ``train`` section as a :class:`TrainConfig`."""
    params = load_params() if params is None else params
    return TrainConfig.from_dict(params.get("train", {}))


EVAL_WHICH = ("student", "ema", "both")
EVAL_SPLITS = ("test", "valid")


@dataclass(frozen=True)
class EvalConfig:
    """The ``eval`` section: evaluation split, cut-off k, batch size, device and models evaluated."""

    # Split whose query and candidate rows are evaluated: test or valid.
    split: str = "test"
    # Cut-off of mAP@k.
    k: int = 10
    # Images per forward pass.
    batch_size: int = 256
    # Model evaluated: student, ema (the EMA teacher) or both.
    which: str = "both"
    # Model whose figures go into metrics/continual.json: student or ema.
    report_model: str = "student"
    # auto picks CUDA when available, else the CPU; or name a torch device such as cpu or cuda:0.
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.split not in EVAL_SPLITS:
            raise ValueError(f"Invalid eval.split {self.split!r}; use one of {', '.join(EVAL_SPLITS)}.")
        if self.k < 1:
            raise ValueError(f"Invalid eval.k {self.k}; use a positive integer such as 10.")
        if self.batch_size < 1:
            raise ValueError(f"Invalid eval.batch_size {self.batch_size}; use a positive integer.")
        if self.which not in EVAL_WHICH:
            raise ValueError(f"Invalid eval.which {self.which!r}; use one of {', '.join(EVAL_WHICH)}.")
        if self.report_model not in ("student", "ema"):
            raise ValueError(f"Invalid eval.report_model {self.report_model!r}; use student or ema.")

    @classmethod
    def from_dict(cls, section: dict[str, Any]) -> "EvalConfig":
        return cls(**section)


def load_eval_config(params: dict[str, Any] | None = None) -> EvalConfig:
    """Return the ``eval`` section as an :class:`EvalConfig`."""
    params = load_params() if params is None else params
    return EvalConfig.from_dict(params.get("eval", {}))
