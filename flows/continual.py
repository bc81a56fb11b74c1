"""The continual flow: validate the data, train each pending increment, evaluate, index, register, gate.

DVC drives every step (``dvc repro <stage>``), so increments whose inputs did not change are
skipped and every output is versioned in ``dvc.lock``. The flow takes the repository's Prefect
concurrency slot, so a second run waits for the first. It opens the MLflow parent run that
the stages' runs nest under, then registers the last increment's checkpoint as a challenger
and runs the promotion gate.

Run it from the project root: ``python -m flows.continual`` (this is what ``make run`` does).
"""

import argparse
import logging
import sys

from prefect import flow, get_run_logger

from mclfir import tracking
from mclfir.config import load_params
from mclfir.data.increments import load_plan
from tasks.data import validate_data
from tasks.dvc_stages import reproduce, stale_stages
from tasks.evaluation import evaluate_increment
from tasks.registry import apply_gate, champion_summary, register_model
from tasks.repository import repository_slot

FLOW_NAME = "mclfir-continual"
REPORT_STAGE = "report"
INDEX_STAGE = "index"
CACHE_STAGE = "cache"
SPLIT_STAGE = "split"


@flow(name=FLOW_NAME, log_prints=True)
def continual(register_version: bool = True) -> dict:
    """Bring every increment of the plan up to date with DVC, then register and gate the last one.

    Returns the increments trained in this run, the stages DVC skipped, the per-increment mAP,
    and, with ``register_version``, the registered version and the gate's verdict.
    """
    with repository_slot():
        return _run_pipeline(register_version)


def _run_pipeline(register_version: bool) -> dict:
    logger = get_run_logger()
    increments = load_plan(load_params()).order
    parent_run_id = tracking.start_pipeline_run(FLOW_NAME)
    try:
        outcome = _reproduce_stages(increments, parent_run_id)
    except BaseException:
        tracking.finish_pipeline_run("FAILED")
        raise
    tracking.finish_pipeline_run("FINISHED")
    outcome["mlflow_parent_run"] = parent_run_id

    if register_version:
        version = register_model(f"models/{increments[-1]}/checkpoint.pt")
        outcome["gate"] = apply_gate(version)
        outcome["champion"] = champion_summary()
    logger.info(
        "Trained %s; DVC skipped %s",
        ", ".join(outcome["trained"]) or "no increment", ", ".join(outcome["skipped_training"]) or "none",
    )
    return outcome


def _reproduce_stages(increments: list[str], parent_run_id: str) -> dict:
    logger = get_run_logger()
    validate_data(parent_run_id)
    reproduce(SPLIT_STAGE, parent_run_id)
    reproduce(CACHE_STAGE, parent_run_id)

    stale = stale_stages([f"train@{name}" for name in increments])
    pending = [name for name in increments if f"train@{name}" in stale]
    logger.info("Increments with changed inputs: %s (later ones may follow when a parent retrains)", ", ".join(pending) or "none")

    trained, skipped = [], []
    for name in increments:
        result = reproduce(f"train@{name}", parent_run_id)
        (trained if f"train@{name}" in result["ran"] else skipped).append(name)

    maps = {name: evaluate_increment(name, parent_run_id) for name in increments}
    reproduce(REPORT_STAGE, parent_run_id)
    reproduce(INDEX_STAGE, parent_run_id)
    return {"increments": increments, "trained": trained, "skipped_training": skipped, "maps": maps}


def format_summary(outcome: dict) -> list[str]:
    """Return the lines printed at the end of a run: what ran, the gate, and where to look."""
    lines = [
        f"Trained: {', '.join(outcome['trained']) or 'nothing (every increment was up to date)'}",
        f"MLflow parent run: {outcome['mlflow_parent_run']}",
    ]
    gate = outcome.get("gate")
    if gate:
        verdict = "passed" if gate["passed"] else "failed"
        lines.append(f"Registered version {gate['version']}; gate {verdict}: {gate['reason']}")
    champion = outcome.get("champion")
    if champion:
        lines.append(f"Champion: {champion['model']} version {champion['version']}")
        lines += [f"  map.{name} = {value:.2f}" for name, value in champion["maps"].items()]
    lines += [
        f"MLflow UI:  mlflow ui --backend-store-uri {tracking.tracking_uri()}",
        "DVC:        dvc metrics show; dvc plots show",
        "Registry:   mclfir registry review",
    ]
    return lines


def main(argv: list[str] | None = None) -> int:
    """Run the flow once with Prefect's ephemeral API (or PREFECT_API_URL) and print the summary."""
    parser = argparse.ArgumentParser(prog="python -m flows.continual", description=__doc__.splitlines()[0])
    parser.add_argument("--no-register", action="store_true", help="stop after the report; register nothing")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")

    outcome = continual(register_version=not args.no_register)
    print("\n".join(format_summary(outcome)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
