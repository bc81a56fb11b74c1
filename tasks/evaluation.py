"""Prefect task that evaluates one increment through its DVC stage and returns its per-attribute mAP."""

import json

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from mclfir.config import load_eval_config
from mclfir.paths import resolve
from tasks.dvc_stages import run_dvc_repro

INCREMENT_METRICS = "metrics/increments/{increment}.json"


@task(name="evaluate", task_run_name="evaluate {increment}", cache_policy=NO_CACHE)
def evaluate_increment(increment: str, parent_run_id: str | None = None) -> dict[str, float]:
    """Reproduce ``evaluate@<increment>`` and return the reported model's mAP in percent, per attribute."""
    logger = get_run_logger()
    result = run_dvc_repro(f"evaluate@{increment}", parent_run_id, log=logger)

    metrics = json.loads(resolve(INCREMENT_METRICS.format(increment=increment)).read_text(encoding="utf-8"))
    model = load_eval_config().report_model
    attributes = metrics.get(model, {}).get("attributes", {})
    maps = {attribute: float(figures["map"]) for attribute, figures in attributes.items() if "map" in figures}
    state = "evaluated" if result.ran else "up to date"
    logger.info("%s %s: %s", increment, state, ", ".join(f"{name} {value:.2f}" for name, value in maps.items()))
    return maps
