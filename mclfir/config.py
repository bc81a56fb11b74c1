"""Typed views of ``params.yaml``.

``params.yaml`` is the one source of truth for configuration. DVC stages list the keys they
read, and each component reads its section through the dataclasses here.
"""

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mclfir.paths import resolve

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
                f"+ test {self.test} = {total}; set them so that they sum to 1."
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
        split = SplitConfig(**section.pop("split", {}))
        return cls(split=split, **section)


def load_params(path: str | Path | None = None) -> dict[str, Any]:
    """Read ``params.yaml`` (from the project root unless ``path`` is given) as a dict."""
    params_path = resolve(path or PARAMS_FILE)
    if not params_path.is_file():
        raise FileNotFoundError(
            f"Parameters file not found: {params_path}. Run from the project folder or set MCLFIR_PROJECT_ROOT."
        )
    with params_path.open(encoding="utf-8") as handle:
        params = yaml.safe_load(handle) or {}
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
