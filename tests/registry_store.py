"""An MLflow SQLite store in a temporary project root, and tiny checkpoints and reports to register in it.

The checkpoints hold a random `MultiHeadModel` with timm's `test_resnet` at 32x32.
"""

import io
import json
import shutil

import mlflow
import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient
from PIL import Image

from mclfir.config import ModelConfig, to_dict
from mclfir.model.checkpoint import save_checkpoint
from mclfir.model.multihead import MultiHeadModel
from mclfir.paths import PROJECT_ROOT_ENV

MODEL_CONFIG = ModelConfig(backbone="test_resnet", feature_index=2, image_size=[32, 32], embed_dim=16, attention_dim=16)
PLAN = {"inc0": ["colour", "shape"], "inc1": ["size"]}
PARAMS = {"registry": {"model_name": "mclfir"}, "gate": {"min_map": 30.0, "max_drop": 3.0}}


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory):
    """An MLflow SQLite store with its tables created, copied by each test (creating tables takes seconds)."""
    path = tmp_path_factory.mktemp("store") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def project(tmp_path, monkeypatch, empty_store):
    """A project root in tmp_path with its own tracking store and artifact folder."""
    shutil.copyfile(empty_store, tmp_path / "mlflow.db")
    monkeypatch.setenv(PROJECT_ROOT_ENV, str(tmp_path))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.delenv("MCLFIR_PARENT_RUN_ID", raising=False)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    yield tmp_path
    while mlflow.active_run() is not None:
        mlflow.end_run()


def write_checkpoint(path, increments, seed=0):
    torch.manual_seed(seed)
    model = MultiHeadModel(MODEL_CONFIG)
    for name in increments:
        model.add_increment(name, PLAN[name])
    payload = {
        "model": model.state_dict(),
        "ema": None,
        "config": {"model": to_dict(MODEL_CONFIG)},
        "structure": model.structure(),
        "increment": increments[-1],
    }
    save_checkpoint(path, payload)
    return path


def write_report(path, final_row):
    report = {"R": [final_row], "final_map": sum(final_row.values()) / len(final_row), "forgetting": 0.5, "bwt": -0.5}
    path.write_text(json.dumps(report))
    return path


def jpeg_bytes(colour):
    pixels = np.zeros((80, 60, 3), dtype=np.uint8)
    pixels[:] = colour
    pixels[:20, :10] = 255
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()
