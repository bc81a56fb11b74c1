"""Shared fixtures: the real dataset (when present) and small generated image sets."""

import os
from pathlib import Path

import pytest

from mclfir.paths import DATA_ROOT_ENV

REALDATA_SKIP_REASON = (
    f"real dataset not available: set {DATA_ROOT_ENV} to the Fashion Product Images folder "
    "(the one holding styles.csv and images/) to run this test"
)
ASEN_SPLITS_ENV = "MCLFIR_ASEN_ROOT"


def _real_data_root() -> Path | None:
    value = os.environ.get(DATA_ROOT_ENV, "").strip()
    if not value:
        return None
    root = Path(value).expanduser().resolve()
    if not (root / "styles.csv").is_file() or not (root / "images").is_dir():
        return None
    return root


@pytest.fixture(scope="session")
def real_data_root() -> Path:
    """The real Fashion Product Images folder; skips the test when it is absent."""
    root = _real_data_root()
    if root is None:
        pytest.skip(REALDATA_SKIP_REASON)
    return root


@pytest.fixture(scope="session")
def asen_root() -> Path:
    """The real ASEN split files, found beside the Fashion Product Images folder or by MCLFIR_ASEN_ROOT."""
    explicit = os.environ.get(ASEN_SPLITS_ENV, "").strip()
    candidates = [Path(explicit)] if explicit else []
    data_root = _real_data_root()
    if data_root is not None:
        candidates.append(data_root.parent / "asen-splits")
    for candidate in candidates:
        if (candidate / "asenpp" / "meta.json").is_file():
            return candidate.resolve()
    pytest.skip(f"ASEN split files not available: set {ASEN_SPLITS_ENV} to the folder holding asen/ and asenpp/")
