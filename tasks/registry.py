"""Prefect tasks over the MLflow model registry: register a version, run the gate, promote by hand.

These tasks only touch the SQLite store and the artifact folder, so they retry on I/O errors
(a store locked by another writer). Registering the same checkpoint twice returns the existing
version, which makes a retry safe.
"""

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from mclfir import registry, tracking
from mclfir.config import load_params
from tasks.io_retry import IO_RETRY_DELAYS_S, retry_on_io_error

_IO_RETRIES = {
    "retries": len(IO_RETRY_DELAYS_S),
    "retry_delay_seconds": IO_RETRY_DELAYS_S,
    "retry_condition_fn": retry_on_io_error,
    "cache_policy": NO_CACHE,
}
CONTINUAL_REPORT = "metrics/continual.json"


@task(name="register-model", **_IO_RETRIES)
def register_model(checkpoint: str, report: str = CONTINUAL_REPORT) -> str:
    """Log ``checkpoint`` as a pyfunc model, register it as ``challenger`` and return its version."""
    version = registry.register(checkpoint, report, load_params(), run_gate=False)
    get_run_logger().info("Checkpoint %s is version %s", checkpoint, version)
    return version


@task(name="apply-gate", task_run_name="gate version {version}", **_IO_RETRIES)
def apply_gate(version: str) -> dict:
    """Run the promotion gate on ``version`` and return its verdict and reason."""
    config = registry.RegistryConfig.from_params(load_params())
    tracking.configure()
    result = registry.apply_gate(registry.MlflowClient(), config, version)

    logger = get_run_logger()
    if result.passed:
        logger.info("Version %s passed the gate and is the champion: %s", version, result.reason)
    else:
        logger.warning("Version %s failed the gate and stays challenger: %s", version, result.reason)
    return {"version": version, "passed": result.passed, "reason": result.reason, "champion_before": result.champion}


@task(name="promote", task_run_name="promote version {version}", **_IO_RETRIES)
def promote_version(version: str, reason: str) -> str | None:
    """Make ``version`` the champion against the gate, recording ``reason``; return the previous champion."""
    previous = registry.promote(version, reason, load_params())
    get_run_logger().warning("Version %s promoted by override; previous champion: %s", version, previous)
    return previous


@task(name="champion", **_IO_RETRIES)
def champion_summary() -> dict | None:
    """Return the champion's version, attributes and per-attribute mAP, or None without a champion."""
    config = registry.RegistryConfig.from_params(load_params())
    tracking.configure()
    client = registry.MlflowClient()
    champion = registry.alias_version(client, config.model_name, registry.CHAMPION)
    if champion is None:
        return None
    attributes = [name for name in champion.tags.get("attributes", "").split(",") if name]
    return {
        "model": config.model_name,
        "version": str(champion.version),
        "attributes": attributes,
        "maps": registry.version_maps(champion),
    }
