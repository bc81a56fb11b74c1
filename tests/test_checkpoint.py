"""Tests of checkpoint saving, safe loading, model rebuilding and RNG state capture."""

import dataclasses
import random

import numpy as np
import pytest
import torch

from mclfir.config import ModelConfig
from mclfir.model import (
    EmaTeacher,
    MultiHeadModel,
    capture_rng_state,
    load_checkpoint,
    load_model,
    restore_rng_state,
    save_checkpoint,
)

TINY = ModelConfig(backbone="resnet10t", feature_index=3, image_size=[32, 32], embed_dim=16, attention_dim=8)
ATTRIBUTES = ["category", "colour", "gender", "colour"]


def trained_state() -> tuple[MultiHeadModel, EmaTeacher, dict]:
    """Return a student and teacher after two optimizer steps, and the full training payload."""
    torch.manual_seed(0)
    model = MultiHeadModel(TINY)
    model.add_increment("inc0", ["category", "gender"])
    model.add_increment("inc1", ["colour"])
    teacher = EmaTeacher(model, decay=0.5)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=10)

    for step in range(1, 3):
        loss = model(torch.rand(4, 3, 32, 32), ATTRIBUTES).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        teacher.update(model, step=step + 5)

    payload = {
        "model": model.state_dict(),
        "ema": teacher.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "step": 2,
        "epoch": 1,
        "rng": capture_rng_state(),
        "config": {"model": dataclasses.asdict(TINY), "train": {"lr": 0.01}},
        "structure": model.structure(),
        "increment": "inc1",
        "cost": {"wall_s": 1.5, "images_seen": 8, "steps": 2},
    }
    return model, teacher, payload


def test_save_and_load_round_trip(tmp_path):
    _, _, payload = trained_state()
    path = tmp_path / "models" / "inc1" / "checkpoint.pt"

    save_checkpoint(path, payload)
    loaded = load_checkpoint(path)

    assert set(loaded) == set(payload)
    assert loaded["structure"] == payload["structure"]
    assert loaded["cost"] == payload["cost"]
    assert loaded["ema"]["step"] == 7
    for key, value in payload["model"].items():
        assert torch.equal(loaded["model"][key], value), key


def test_checkpoint_loads_with_weights_only(tmp_path):
    _, _, payload = trained_state()
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, payload)

    loaded = torch.load(path, weights_only=True)

    assert loaded["increment"] == "inc1"
    assert loaded["optimizer"]["state"]


def test_save_leaves_no_temporary_files(tmp_path):
    save_checkpoint(tmp_path / "last.pt", {"step": 1})
    save_checkpoint(tmp_path / "last.pt", {"step": 2})

    assert [path.name for path in tmp_path.iterdir()] == ["last.pt"]
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 2


@pytest.mark.parametrize(
    "value", [np.zeros(3), np.float64(1.5), object(), {("tuple", "key"): 1}], ids=["array", "scalar", "object", "key"]
)
def test_save_rejects_non_plain_values(tmp_path, value):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"step": 1})

    with pytest.raises(TypeError, match="Invalid checkpoint"):
        save_checkpoint(path, {"step": 2, "extra": {"bad": value}})

    assert load_checkpoint(path)["step"] == 1
    assert [entry.name for entry in tmp_path.iterdir()] == ["last.pt"]


def test_load_checkpoint_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.pt"):
        load_checkpoint(tmp_path / "absent.pt")


def test_load_checkpoint_rejects_pickled_objects(tmp_path):
    path = tmp_path / "unsafe.pt"
    torch.save({"config": TINY}, path)

    with pytest.raises(ValueError, match="Invalid checkpoint"):
        load_checkpoint(path)


@pytest.mark.parametrize("which", ["student", "ema"])
def test_load_model_matches_saved_model(tmp_path, which):
    model, teacher, payload = trained_state()
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, payload)
    images = torch.rand(4, 3, 32, 32)
    reference = model.eval() if which == "student" else teacher.module

    loaded = load_model(path, which=which)

    assert loaded.increments == model.increments
    assert not loaded.training
    with torch.no_grad():
        assert torch.allclose(loaded(images, ATTRIBUTES), reference(images, ATTRIBUTES), atol=1e-6)


def test_load_model_student_and_ema_differ(tmp_path):
    _, _, payload = trained_state()
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, payload)

    student = load_model(path, which="student")
    teacher = load_model(path, which="ema")

    key = "heads.inc0.embed_proj.weight"
    assert not torch.equal(student.state_dict()[key], teacher.state_dict()[key])


def test_load_model_without_ema(tmp_path):
    _, _, payload = trained_state()
    payload["ema"] = None
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, payload)

    with pytest.raises(KeyError, match="no EMA weights"):
        load_model(path, which="ema")


def test_load_model_ignores_pretrained_setting(tmp_path):
    _, _, payload = trained_state()
    payload["config"]["model"]["pretrained"] = True
    payload["config"]["model"]["weights_path"] = str(tmp_path / "absent.safetensors")
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, payload)

    loaded = load_model(path)

    assert torch.equal(loaded.state_dict()["heads.inc1.embed_proj.bias"], payload["model"]["heads.inc1.embed_proj.bias"])


def test_load_model_invalid_which(tmp_path):
    with pytest.raises(ValueError, match="which"):
        load_model(tmp_path / "checkpoint.pt", which="teacher")


def test_rng_state_round_trip(tmp_path):
    state = capture_rng_state()
    expected = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)])

    path = tmp_path / "rng.pt"
    save_checkpoint(path, {"rng": state})
    restore_rng_state(load_checkpoint(path)["rng"])
    replayed = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)])

    assert torch.equal(replayed[0], expected[0])
    assert np.array_equal(replayed[1], expected[1])
    assert replayed[2] == expected[2]
