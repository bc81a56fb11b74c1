"""Tests of the training strategies (mclfir, finetune, lwf, joint) on the tiny generated dataset.

They check what sets the strategies apart and nothing more. Finetune is mclfir without
distillation and without an EMA. LwF distils the earlier heads from a frozen parent. Joint starts
every increment from the initial model and trains every attribute seen so far. The last test
checks the MLflow run of `mclfir train --strategy`, as the comparison pipeline calls it.
"""

import copy
import json
from pathlib import Path

import mlflow
import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient

from mclfir.cli import main
from mclfir.config import load_model_config, load_train_config
from mclfir.data.image_cache import ImageCache
from mclfir.model.checkpoint import load_checkpoint
from mclfir.strategies import STRATEGIES
from mclfir.train import IncrementTrainer, build_models, build_sampler, train_increment
from registry_store import empty_store, project  # noqa: F401 (fixtures)
from tiny_training import build_tiny_data, tiny_params, tiny_paths

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return build_tiny_data(tmp_path_factory.mktemp("tiny"))


def _params(strategy: str, **train) -> dict:
    params = tiny_params(epochs=1, pairs_per_epoch=8)
    params["train"].update(strategy=strategy, **train)
    return params


def _train(data_dir: Path, out: Path, increment: str, params: dict) -> dict:
    """Train ``increment`` into ``out`` and return its checkpoint payload."""
    result = train_increment(increment, params, tiny_paths(data_dir, out), device=CPU)
    assert result.completed
    return load_checkpoint(result.checkpoint)


def _same_weights(first: dict, second: dict) -> bool:
    return list(first) == list(second) and all(torch.equal(first[key], second[key]) for key in first)


def _train_chain(data_dir: Path, out: Path, params: dict) -> tuple[dict, dict]:
    return _train(data_dir, out, "inc0", params), _train(data_dir, out, "inc1", params)


def test_unknown_strategy_lists_choices():
    with pytest.raises(ValueError, match=r"'replay'.*mclfir, finetune, lwf, joint"):
        load_train_config({"train": {"strategy": "replay"}})


def test_finetune_equals_mclfir_without_distillation(data_dir, tmp_path):
    mclfir_first, mclfir_second = _train_chain(data_dir, tmp_path / "mclfir", _params("mclfir"))
    finetune_first, finetune_second = _train_chain(data_dir, tmp_path / "finetune", _params("finetune"))
    # The distillation weighted 0 leaves the EMA as the only difference. Weight decay is off as
    # well, because AdamW decays the earlier heads when they get a gradient, even a zero one.
    silent_second = _train_chain(data_dir, tmp_path / "silent", _params("mclfir", distill_weight=0.0, weight_decay=0.0))[1]
    plain_second = _train_chain(data_dir, tmp_path / "plain", _params("finetune", weight_decay=0.0))[1]

    # The first increment distils nothing, and the EMA never touches the student.
    assert _same_weights(mclfir_first["model"], finetune_first["model"])
    assert mclfir_first["ema"] is not None and finetune_first["ema"] is None
    assert finetune_second["ema"] is None

    # From the second increment on, distillation is the only thing that moves the students apart.
    assert _same_weights(silent_second["model"], plain_second["model"])
    assert not _same_weights(mclfir_second["model"], finetune_second["model"])
    assert set(mclfir_second["history"]["epoch_losses"][0]) >= {"distill_features", "distill_heads"}
    assert not any(name.startswith("distill_") for name in finetune_second["history"]["epoch_losses"][0])


def test_lwf_distils_frozen_parent_heads(data_dir, tmp_path):
    params = _params("lwf")
    first = _train(data_dir, tmp_path, "inc0", params)
    parent_weights = copy.deepcopy(first["model"])
    second = _train(data_dir, tmp_path, "inc1", params)

    losses = second["history"]["epoch_losses"][0]
    assert "distill_heads" in losses
    assert "distill_features" not in losses
    assert second["ema"] is None
    # The parent's checkpoint, the teacher's source, is left as it was.
    assert _same_weights(load_checkpoint(tmp_path / "models" / "inc0" / "checkpoint.pt")["model"], parent_weights)

    finetune_second = _train_chain(data_dir, tmp_path / "finetune", _params("finetune"))[1]
    assert not _same_weights(second["model"], finetune_second["model"])


def test_lwf_teacher_is_frozen_parent(data_dir, tmp_path):
    params = _params("lwf")
    paths = tiny_paths(data_dir, tmp_path)
    parent = _train(data_dir, tmp_path, "inc0", params)
    model_cfg, cfg = load_model_config(params), load_train_config(params)
    models = build_models(model_cfg, "inc1", ["side"], "inc0", paths, cfg.ema_decay, STRATEGIES["lwf"])

    teacher = models.teacher
    assert models.ema is None
    assert teacher is not models.student
    assert list(teacher.increments) == ["inc0"]
    assert not teacher.training
    assert not any(parameter.requires_grad for parameter in teacher.parameters())
    assert _same_weights(teacher.state_dict(), parent["model"])

    cache = ImageCache(paths.cache_dir)
    trainer = IncrementTrainer(
        "inc1", models.student, None, build_sampler("inc1", ["side"], cache, paths, cfg), cache, model_cfg, cfg, paths,
        distill=True, config_record={}, device=CPU, teacher=teacher, strategy=STRATEGIES["lwf"],
    )
    trainer.fit()
    assert _same_weights(teacher.state_dict(), parent["model"])
    student = models.student.state_dict()
    assert not all(torch.equal(student[key], parent["model"][key]) for key in parent["model"])


def test_joint_restarts_from_scratch(data_dir, tmp_path):
    params = _params("joint")
    pairs = params["train"]["pairs_per_epoch"]
    # No inc0 checkpoint exists: the second increment must not need one.
    second = _train(data_dir, tmp_path / "alone", "inc1", params)

    assert second["structure"]["increments"] == {"inc0": ["colour"], "inc1": ["side"]}
    assert second["cost"]["images_seen"] == 2 * pairs * 2
    assert second["ema"] is None
    record = json.loads((tmp_path / "alone" / "metrics" / "inc1.json").read_text())
    assert record["parent"] == "init"
    assert record["trained_attributes"] == ["colour", "side"]

    # With a trained inc0 beside it, the result is the same: nothing is carried over.
    _train(data_dir, tmp_path / "chained", "inc0", params)
    chained_second = _train(data_dir, tmp_path / "chained", "inc1", params)
    assert _same_weights(chained_second["model"], second["model"])

    # The sequential strategies train on the new attribute only.
    finetune = _train_chain(data_dir, tmp_path / "finetune", _params("finetune"))[1]
    assert finetune["cost"]["images_seen"] == 2 * pairs


def test_auto_resume_matching_run_only(data_dir, tmp_path):
    params = _params("finetune", checkpoint_every=1)
    params["train"]["epochs"] = 2
    paths = tiny_paths(data_dir, tmp_path)
    stopped = train_increment("inc0", params, paths, max_steps=2, device=CPU)
    assert not stopped.completed

    resumed = train_increment("inc0", params, paths, auto_resume=True, device=CPU)
    assert resumed.completed and resumed.cost["steps"] == 4
    assert resumed.cost["images_seen"] == 4 * 2 * params["train"]["batch_size"]

    # A last.pt written with another configuration is not resumed.
    train_increment("inc0", params, paths, max_steps=2, device=CPU)
    other = copy.deepcopy(params)
    other["train"]["lr"] = 0.01
    fresh = train_increment("inc0", other, paths, max_steps=1, auto_resume=True, device=CPU)
    assert fresh.cost["steps"] == 1


def test_auto_resume_restarts_after_parent_change(data_dir, tmp_path):
    params = _params("finetune", checkpoint_every=1)
    paths = tiny_paths(data_dir, tmp_path)
    train_increment("inc0", params, paths, device=CPU)
    train_increment("inc1", params, paths, max_steps=1, device=CPU)

    # The parent is retrained with another seed, as when DVC reruns an upstream stage.
    retrained = copy.deepcopy(params)
    retrained["train"]["seed"] = 11
    train_increment("inc0", retrained, paths, device=CPU)

    resumed = train_increment("inc1", params, paths, max_steps=2, auto_resume=True, device=CPU)

    # The same two steps from the retrained parent, with no last.pt around.
    reference_paths = tiny_paths(data_dir, tmp_path / "reference")
    train_increment("inc0", retrained, reference_paths, device=CPU)
    reference = train_increment("inc1", params, reference_paths, max_steps=2, device=CPU)
    assert _same_weights(load_checkpoint(resumed.checkpoint)["model"], load_checkpoint(reference.checkpoint)["model"])


def test_resume_rejects_other_strategy(data_dir, tmp_path):
    paths = tiny_paths(data_dir, tmp_path)
    train_increment("inc0", _params("finetune", checkpoint_every=1), paths, max_steps=1, device=CPU)

    with pytest.raises(ValueError, match=r"Cannot resume .*train\.strategy"):
        train_increment("inc0", _params("mclfir", checkpoint_every=1), paths, resume=True, device=CPU)


def test_every_strategy_trains_both_increments(data_dir, tmp_path):
    for name in STRATEGIES:
        second = _train_chain(data_dir, tmp_path / name, _params(name))[1]
        assert second["config"]["train"]["strategy"] == name
        assert second["structure"]["increments"] == {"inc0": ["colour"], "inc1": ["side"]}


def test_train_run_tagged_with_strategy(data_dir, project):
    (project / "params.yaml").write_text(yaml.safe_dump(_params("mclfir")))
    (project / "pyproject.toml").write_text("")
    parent_file = "compare/.mlflow_parent_run"
    assert main(["tracking", "start", "--name", "compare", "--parent-file", parent_file]) == 0

    code = main([
        "train", "--strategy", "lwf", "--increment", "inc0", "--auto-resume",
        "--cache", str(data_dir / "cache"), "--splits", str(data_dir / "splits"),
        "--models", "compare/models/lwf", "--metrics", "compare/metrics/lwf/train", "--parent-run-file", parent_file,
    ])
    assert code == 0

    parent_id = (project / parent_file).read_text().strip()
    runs = MlflowClient().search_runs([mlflow.get_experiment_by_name("mclfir").experiment_id], "tags.`mclfir.kind` = 'train'")
    assert len(runs) == 1
    assert runs[0].data.tags["mclfir.strategy"] == "lwf"
    assert runs[0].data.tags["mlflow.parentRunId"] == parent_id
    assert runs[0].data.params["train.strategy"] == "lwf"
    assert (project / "compare" / "models" / "lwf" / "inc0" / "checkpoint.pt").is_file()
