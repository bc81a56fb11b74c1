"""Prefect task that validates the data: the DVC data stages up to the increment plan.

``dvc repro plan`` runs import, prepare, validate and plan as needed. When Great Expectations
or the image checks fail, the validate stage exits 1, the task fails and the flow stops before
any training, leaving the models and the registry as they were.
"""

import json

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from mclfir.paths import resolve
from tasks.dvc_stages import run_dvc_repro

VALIDATION_REPORT = "data/validated/report.json"
PLAN_STAGE = "plan"


@task(name="validate-data", cache_policy=NO_CACHE)
def validate_data(parent_run_id: str | None = None) -> dict:
    """Reproduce the data stages up to the plan and return the validation report's counts."""
    logger = get_run_logger()
    result = run_dvc_repro(PLAN_STAGE, parent_run_id, log=logger)
    logger.info("Data stages: ran %s; skipped %s", ", ".join(result.ran) or "nothing", ", ".join(result.skipped) or "nothing")

    report = json.loads(resolve(VALIDATION_REPORT).read_text(encoding="utf-8"))
    counts = report.get("counts", {})
    logger.info(
        "Validation passed: %s usable images of %s, attributes %s",
        counts.get("usable_images"), counts.get("images"), ", ".join(report.get("attributes", [])),
    )
    return {"attributes": report.get("attributes", []), "counts": counts, "ran": result.ran}
