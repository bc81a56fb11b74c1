"""MLflow runs of the pipeline's steps: what each of ``train``, ``evaluate`` and the report logs.

The command-line entry points of training and evaluation open their MLflow run through these
functions, so a step launched by ``dvc repro`` or by hand is tracked the same way. Each step is
a child run of the pipeline's parent run (see :mod:`mclfir.tracking`), with the resolved config
as params, the metrics of the step, and its plots as artifacts.
"""

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mclfir.config import load_eval_config, load_model_config, load_train_config, to_dict
from mclfir.paths import resolve

TAG_STRATEGY = "mclfir.strategy"


@contextlib.contextmanager
def train_run(
    increment: str,
    attributes: list[str],
    parent: str,
    params: dict[str, Any],
    splits_dir: str,
    parent_file: str | Path | None = None,
) -> Iterator[None]:
    """Open the MLflow run of training ``increment``, tagged with its strategy, and log its config and training data."""
    from mclfir import tracking

    train_config = load_train_config(params)
    run_params = {
        "model": to_dict(load_model_config(params)),
        "train": to_dict(train_config),
        "increment": {"name": increment, "attributes": ",".join(attributes), "parent": parent},
    }
    tags = {TAG_STRATEGY: train_config.strategy}
    with tracking.child_run("train", increment, params=run_params, tags=tags, parent_file=parent_file):
        split_files = sorted((resolve(splits_dir) / increment).glob("*.parquet"))
        tracking.log_training_input(split_files, tracking.data_hash())
        yield


def log_training_result(epoch_losses: list[dict[str, float]], cost: dict[str, float | int]) -> None:
    """Log the per-epoch losses (step = epoch) and the cost of the increment to the active run."""
    from mclfir import tracking

    for entry in epoch_losses:
        losses = {f"loss/{name}": value for name, value in entry.items() if name != "epoch"}
        tracking.log_epoch_metrics(int(entry["epoch"]), losses)
    tracking.log_epoch_metrics(0, {f"cost/{name}": value for name, value in cost.items()})


@contextlib.contextmanager
def evaluate_run(
    increment: str | None,
    params: dict[str, Any],
    kind: str = "evaluate",
    strategy: str | None = None,
    parent_file: str | Path | None = None,
) -> Iterator[None]:
    """Open the MLflow run of evaluating ``increment`` (or of the report, ``kind="report"``).

    The run is tagged with ``strategy``, by default the ``train.strategy`` of ``params``.
    """
    from mclfir import tracking

    tags = {TAG_STRATEGY: strategy or load_train_config(params).strategy}
    with tracking.child_run(kind, increment, params={"eval": to_dict(load_eval_config(params))}, tags=tags, parent_file=parent_file):
        yield


def log_evaluation(result: dict[str, Any], increment_index: int) -> None:
    """Log every evaluated model's per-attribute figures, named ``<model>/<figure>/<attribute>``."""
    from mclfir import tracking

    for model in ("student", "ema"):
        if model not in result:
            continue
        metrics = {}
        for attribute, figures in result[model]["attributes"].items():
            for figure in ("map", "chance", "balanced", "map_at_k"):
                if figure in figures:
                    metrics[f"{model}/{figure}/{attribute}"] = figures[figure]
        tracking.log_epoch_metrics(increment_index, metrics)


def log_report(report: dict[str, Any], plots_dir: str | Path = "plots") -> None:
    """Log the continual-learning figures and the plot images of the report to the active run."""
    from mclfir import tracking

    tracking.log_continual(report)
    tracking.log_plots(sorted(resolve(plots_dir).glob("*.png")))
