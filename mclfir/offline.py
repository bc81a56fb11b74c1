"""Offline defaults for the libraries the pipeline uses.

Without ``HF_HUB_OFFLINE``, timm's ``pretrained=True`` retries the hub for about 46 s
before it fails on a machine with no network. The other switches turn off analytics and
telemetry calls of Prefect, MLflow and DVC.
"""

import os

OFFLINE_DEFAULTS: dict[str, str] = {
    "HF_HUB_OFFLINE": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "true",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DVC_NO_ANALYTICS": "1",
}


def apply_offline_defaults() -> dict[str, str]:
    """Set each offline switch that the environment does not set already; return the ones set."""
    applied = {}
    for name, value in OFFLINE_DEFAULTS.items():
        if name not in os.environ:
            os.environ[name] = value
            applied[name] = value
    return applied
