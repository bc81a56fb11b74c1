"""Tests of increment training on a tiny generated dataset with a tiny timm backbone (see tiny_training)."""

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from mclfir.config import load_model_config, load_train_config
from mclfir.data.image_cache import ImageCache
from mclfir.model.checkpoint import load_checkpoint
from mclfir.train import (
    IncrementTrainer,
    TrainPaths,
    augment_images,
    build_models,
    build_sampler,
    train_increment,
)
from tiny_training import COLOURS, build_tiny_data, draw, tiny_params, tiny_paths

_params = tiny_params
_draw = draw
_paths = tiny_paths


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """Cache and split files of 24 generated images, shared by the tests of this module."""
    return build_tiny_data(tmp_path_factory.mktemp("tiny"))


def _trainer(data_dir: Path, out: Path, increment: str, params: dict) -> IncrementTrainer:
    model_cfg = load_model_config(params)
    cfg = load_train_config(params)
    plan = params["increments"][increment]
    paths = _paths(data_dir, out)
    torch.manual_seed(cfg.seed)
    models = build_models(model_cfg, increment, plan["attributes"], plan["parent"], paths, cfg.ema_decay)
    cache = ImageCache(paths.cache_dir)
    sampler = build_sampler(increment, plan["attributes"], cache, paths, cfg)
    return IncrementTrainer(
        increment, models.student, models.ema, sampler, cache, model_cfg, cfg, paths,
        distill=models.teacher is not None, config_record={}, device=torch.device("cpu"), teacher=models.teacher,
    )


def _assert_states_close(first: dict, second: dict) -> None:
    assert list(first) == list(second)
    for key in first:
        assert torch.allclose(first[key].float(), second[key].float(), rtol=0, atol=1e-6), key


def test_train_writes_checkpoint_and_metrics(data_dir, tmp_path):
    params = _params(pairs_per_epoch=8)
    paths = _paths(data_dir, tmp_path)

    result = train_increment("inc0", params, paths, device=torch.device("cpu"))

    # 8 pairs per epoch in batches of 4: 2 steps per epoch, 2 epochs, 8 images per step.
    assert result.completed
    assert result.cost["steps"] == 4
    assert result.cost["images_seen"] == 32
    metrics = json.loads(result.metrics.read_text())
    assert [entry["epoch"] for entry in metrics["epochs"]] == [0, 1]
    assert metrics["cost"]["steps"] == 4
    assert (tmp_path / "models" / "inc0" / "last.pt").is_file()


def test_checkpoint_loads_with_weights_only(data_dir, tmp_path):
    train_increment("inc0", _params(epochs=1), _paths(data_dir, tmp_path), device=torch.device("cpu"))
    path = tmp_path / "models" / "inc0" / "checkpoint.pt"

    payload = torch.load(path, map_location="cpu", weights_only=True)

    for key in ("model", "ema", "optimizer", "scheduler", "step", "epoch", "rng", "config", "structure", "increment", "cost"):
        assert key in payload, key
    assert payload["structure"]["attributes"] == ["colour"]
    assert payload["rng"]["sampler"]["seed"] == 3


def test_loss_decreases_during_training(data_dir, tmp_path):
    params = _params(epochs=6, pairs_per_epoch=32)

    result = train_increment("inc0", params, _paths(data_dir, tmp_path), device=torch.device("cpu"))

    losses = [entry["nce"] for entry in result.epoch_losses]
    assert losses[-1] < losses[0]


def test_ema_changes_and_differs_from_frozen_copy(data_dir, tmp_path):
    trainer = _trainer(data_dir, tmp_path, "inc0", _params(pairs_per_epoch=8))
    frozen = copy.deepcopy(trainer.ema.module.state_dict())

    trainer.fit()

    teacher_state = trainer.ema.module.state_dict()
    student_state = trainer.model.state_dict()
    weight = "backbone.body.conv1.0.weight"
    assert trainer.ema.step == 4
    assert not torch.equal(teacher_state[weight], frozen[weight])
    assert not torch.equal(teacher_state[weight], student_state[weight])
    assert all(not parameter.requires_grad for parameter in trainer.ema.module.parameters())
    assert not trainer.ema.module.training


def test_augmentation_keeps_colour_and_shape():
    images = torch.from_numpy(np.array(_draw("blue", "left")))[None].repeat(4, 1, 1, 1)
    generator = torch.Generator().manual_seed(0)

    batch = augment_images(images, [48, 40], generator, crop_scale_min=0.9, hflip=True)

    assert batch.shape == (4, 3, 48, 40)
    assert batch.min() >= 0.0
    assert batch.max() <= 1.0
    # The background colour of each image is untouched: only geometry changes.
    expected = torch.tensor(COLOURS["blue"]) / 255.0
    assert torch.allclose(batch[:, :, 0, 0], expected.expand(4, 3), atol=1e-5)


def test_augmentation_deterministic_given_generator():
    images = torch.randint(0, 256, (3, 20, 16, 3), dtype=torch.uint8)

    first = augment_images(images, [24, 24], torch.Generator().manual_seed(5))
    second = augment_images(images, [24, 24], torch.Generator().manual_seed(5))

    assert torch.equal(first, second)


def test_parent_weights_carry_over(data_dir, tmp_path):
    params = _params(epochs=1)
    paths = _paths(data_dir, tmp_path)
    train_increment("inc0", params, paths, device=torch.device("cpu"))
    parent = load_checkpoint(tmp_path / "models" / "inc0" / "checkpoint.pt")

    trainer = _trainer(data_dir, tmp_path, "inc1", params)
    start = trainer.model.state_dict()

    carried = [key for key in parent["model"] if key.startswith(("backbone.", "heads.inc0."))]
    assert carried
    for key in carried:
        assert torch.equal(start[key], parent["model"][key]), key
    assert trainer.model.structure()["attributes"] == ["colour", "side"]
    assert trainer.distill
    assert trainer.old_attributes == ["colour"]


def test_second_increment_trains_with_distillation(data_dir, tmp_path):
    params = _params(epochs=1)
    paths = _paths(data_dir, tmp_path)
    train_increment("inc0", params, paths, device=torch.device("cpu"))

    result = train_increment("inc1", params, paths, device=torch.device("cpu"))

    terms = result.epoch_losses[0]
    assert terms["distill_features"] >= 0.0
    assert terms["distill_heads"] >= 0.0
    assert terms["loss"] > terms["nce"]
    payload = load_checkpoint(result.checkpoint)
    assert list(payload["structure"]["increments"]) == ["inc0", "inc1"]


def test_resume_matches_uninterrupted_run(data_dir, tmp_path):
    # 12 pairs in batches of 4: 3 steps per epoch, so stopping after step 4 interrupts epoch 1.
    params = _params(epochs=2, pairs_per_epoch=12)
    whole = tmp_path / "whole"
    split = tmp_path / "split"

    reference = train_increment("inc0", params, _paths(data_dir, whole), device=torch.device("cpu"))
    stopped = train_increment("inc0", params, _paths(data_dir, split), max_steps=4, device=torch.device("cpu"))
    resumed = train_increment("inc0", params, _paths(data_dir, split), resume=True, device=torch.device("cpu"))

    assert not stopped.completed
    assert stopped.cost["steps"] == 4
    assert stopped.checkpoint.name == "last.pt"
    assert resumed.completed
    assert resumed.cost["steps"] == reference.cost["steps"] == 6
    whole_payload = load_checkpoint(reference.checkpoint)
    split_payload = load_checkpoint(resumed.checkpoint)
    _assert_states_close(whole_payload["model"], split_payload["model"])
    _assert_states_close(whole_payload["ema"]["module"], split_payload["ema"]["module"])
    assert whole_payload["ema"]["step"] == split_payload["ema"]["step"]
    for whole_epoch, split_epoch in zip(reference.epoch_losses, resumed.epoch_losses):
        assert whole_epoch["loss"] == pytest.approx(split_epoch["loss"], abs=1e-6)


def test_resume_without_last_checkpoint_raises(data_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="last.pt"):
        train_increment("inc0", _params(), _paths(data_dir, tmp_path), resume=True, device=torch.device("cpu"))


def test_unknown_increment_raises(data_dir, tmp_path):
    with pytest.raises(ValueError, match="Unknown increment 'inc9'"):
        train_increment("inc9", _params(), _paths(data_dir, tmp_path), device=torch.device("cpu"))


def test_missing_parent_checkpoint_raises(data_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="mclfir train --increment inc0"):
        train_increment("inc1", _params(), _paths(data_dir, tmp_path), device=torch.device("cpu"))


def test_epoch_capped_at_one_pass(data_dir, tmp_path):
    params = _params(pairs_per_epoch=10_000)
    paths = _paths(data_dir, tmp_path)
    cfg = load_train_config(params)
    cache = ImageCache(paths.cache_dir)

    sampler = build_sampler("inc0", ["colour"], cache, paths, cfg)

    train_images = max(pool.images for pool in sampler.pools)
    assert sampler.pairs_per_attribute < 10_000
    assert sampler.pairs_per_attribute == math.ceil(math.ceil(train_images / 2) / cfg.batch_size) * cfg.batch_size


def test_max_steps_reached_trains_nothing_more(data_dir, tmp_path):
    params = _params(epochs=2, pairs_per_epoch=12)
    paths = _paths(data_dir, tmp_path)
    train_increment("inc0", params, paths, max_steps=4, device=torch.device("cpu"))

    again = train_increment("inc0", params, paths, resume=True, max_steps=4, device=torch.device("cpu"))

    assert again.cost["steps"] == 4
    assert not again.completed


def test_unfinished_parent_rejected(data_dir, tmp_path):
    params = _params(epochs=2, pairs_per_epoch=12)
    paths = _paths(data_dir, tmp_path)
    stopped = train_increment("inc0", params, paths, max_steps=4, device=torch.device("cpu"))
    assert not (tmp_path / "models" / "inc0" / "checkpoint.pt").exists()
    stopped.checkpoint.rename(stopped.checkpoint.with_name("checkpoint.pt"))

    with pytest.raises(ValueError, match="stopped after epoch 1 of 2"):
        train_increment("inc1", params, paths, device=torch.device("cpu"))


def test_self_parent_rejected_by_plan(data_dir, tmp_path):
    params = _params()
    params["increments"]["inc1"]["parent"] = "inc1"

    with pytest.raises(ValueError, match="'inc1' is its own parent"):
        train_increment("inc1", params, _paths(data_dir, tmp_path), device=torch.device("cpu"))


def test_train_command_tracked_in_mlflow(data_dir, tmp_path, monkeypatch):
    import mlflow
    import yaml

    from mclfir.cli import main
    from mclfir.tracking import start_pipeline_run

    project = tmp_path / "project"
    project.mkdir()
    (project / "params.yaml").write_text(yaml.safe_dump(_params(pairs_per_epoch=8)))
    (project / "pyproject.toml").write_text("")
    monkeypatch.setenv("MCLFIR_PROJECT_ROOT", str(project))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("MLFLOW_RUN_ID", "stray-run-id")
    parent_id = start_pipeline_run("test pipeline")

    status = main([
        "train", "--increment", "inc0",
        "--cache", str(data_dir / "cache"), "--splits", str(data_dir / "splits"),
        "--models", str(tmp_path / "models"), "--metrics", str(tmp_path / "metrics"),
    ])

    assert status == 0
    runs = mlflow.search_runs(experiment_names=["mclfir"], filter_string="tags.`mclfir.kind` = 'train'", output_format="list")
    assert len(runs) == 1
    run = runs[0]
    assert run.data.tags["mlflow.parentRunId"] == parent_id
    assert run.data.tags["mclfir.increment"] == "inc0"
    assert run.data.params["train.temperature"] == "0.3"
    assert "loss/nce" in run.data.metrics
    assert run.data.metrics["cost/steps"] == 4
    assert len(run.inputs.dataset_inputs) == 1
