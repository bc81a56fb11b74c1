"""Prefect tasks over the increment plan: find attributes that no model serves yet, and plan an increment for them."""

import json

import pyarrow.parquet as pq
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from mclfir.config import PARAMS_FILE, load_params
from mclfir.data.catalog import METADATA_KEY
from mclfir.data.increments import append_increment, load_plan
from mclfir.data.labels import LABEL_FILES_KEY
from mclfir.paths import resolve

VALIDATED_CATALOG = "data/validated/catalog.parquet"


def catalog_metadata(path: str = VALIDATED_CATALOG) -> dict:
    """Return the ``mclfir`` entry of a catalog's Parquet metadata, without reading its rows."""
    catalog_path = resolve(path)
    if not catalog_path.is_file():
        raise FileNotFoundError(f"Validated catalog not found: {catalog_path}. Run `dvc repro validate` first.")
    metadata = pq.read_schema(catalog_path).metadata or {}
    if METADATA_KEY not in metadata:
        raise ValueError(f"{catalog_path} is not an mclfir catalog: its Parquet metadata has no 'mclfir' entry.")
    return json.loads(metadata[METADATA_KEY])


@task(name="find-new-attributes", cache_policy=NO_CACHE)
def find_new_attributes(champion_attributes: list[str]) -> list[str]:
    """Return the attributes from label files that neither the plan nor the champion contain, in catalog order.

    Only attributes added as label files (``mclfir data add-attributes``) count as new. The
    dataset's own attributes that the plan leaves out are logged, not planned, because leaving
    them out is the plan's choice. Planned attributes that the champion does not serve yet are
    pending, not new: the continual flow trains them without a change to the plan.
    """
    logger = get_run_logger()
    metadata = catalog_metadata()
    data = list(metadata["attributes"])
    from_labels = {entry["attribute"] for entry in metadata.get(LABEL_FILES_KEY, [])}
    planned = set(load_plan(load_params()).attributes)
    known = planned | set(champion_attributes)
    new = [attribute for attribute in data if attribute in from_labels and attribute not in known]
    left_out = [attribute for attribute in data if attribute not in from_labels and attribute not in known]

    pending = sorted(planned - set(champion_attributes))
    logger.info("Attributes in the data: %s", ", ".join(data))
    logger.info("Served by the champion: %s", ", ".join(champion_attributes) or "none (no champion yet)")
    if pending:
        logger.info("Planned but not yet served: %s", ", ".join(pending))
    if left_out:
        logger.info("Dataset attributes outside the plan (add them under increments to train them): %s", ", ".join(left_out))
    logger.info("New attributes from label files: %s", ", ".join(new) or "none")
    return new


@task(name="plan-increment", cache_policy=NO_CACHE)
def plan_increment(attributes: list[str]) -> str:
    """Append an increment for ``attributes`` to the plan in params.yaml, parented on the last one; return its name."""
    name = append_increment(PARAMS_FILE, attributes)
    get_run_logger().info("Planned increment %s for %s", name, ", ".join(attributes))
    return name
