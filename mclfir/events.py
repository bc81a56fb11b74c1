"""The Prefect events that this project emits, so that deployments triggered by them can start.

``mclfir data add-attributes`` emits :data:`ATTRIBUTES_ADDED` after it writes new label files.
The event goes only to a running Prefect server: with ``PREFECT_API_URL`` unset, Prefect would
start a temporary (ephemeral) API for this process alone, in which no deployment runs.
Prefect is imported inside the functions, because importing it takes about 2 s.
"""

import logging
from collections.abc import Sequence

from mclfir import paths

_logger = logging.getLogger(__name__)

ATTRIBUTES_ADDED = "mclfir.attributes.added"
HEALTH_TIMEOUT_S = 3.0
# Maximum wait, in seconds, for Prefect's events worker to send the queued event.
DELIVERY_TIMEOUT_S = 30.0
_RUN_BY_HAND = (
    "Run the flow by hand from the project root with `python -m flows.new_attributes`, "
    "or start the Prefect server and the deployments with `make serve`."
)
_SET_URL_HINT = (
    "A server started with `make serve` listens on http://127.0.0.1:4200/api unless PREFECT_PORT is changed. "
    "Set PREFECT_API_URL to that address so that adding attributes triggers the deployment."
)


def server_url() -> str | None:
    """Return the configured Prefect API URL (``PREFECT_API_URL``), or None when it is unset."""
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value() or None


def server_reachable(url: str, timeout: float = HEALTH_TIMEOUT_S) -> bool:
    """Return True when ``GET <url>/health`` succeeds within ``timeout`` seconds."""
    import httpx

    health_url = f"{url.rstrip('/')}/health"
    try:
        response = httpx.get(health_url, timeout=timeout)
    except (httpx.HTTPError, httpx.InvalidURL) as error:
        _logger.debug("Prefect server health check %s failed: %s", health_url, error)
        return False

    if not response.is_success:
        _logger.debug("Prefect server health check %s returned HTTP %d", health_url, response.status_code)
    return response.is_success


def _api_path_hint(url: str) -> str:
    """Return a hint to add ``/api`` when ``url`` does not end with it, else an empty string."""
    from urllib.parse import urlsplit

    if urlsplit(url).path.rstrip("/").endswith("/api"):
        return ""
    return f"A Prefect server serves its API under /api, so PREFECT_API_URL is usually {url.rstrip('/')}/api: check its value. "


def emit_attributes_added(attributes: Sequence[str], files: Sequence[str]) -> str:
    """Emit :data:`ATTRIBUTES_ADDED` to the running Prefect server, wait until it is sent, and return a message for the user.

    Emits nothing when no server is configured or its health check fails, and the message
    then explains how to run the flow by hand.
    """
    url = server_url()
    if url is None:
        return (
            "No Prefect server is configured (PREFECT_API_URL is not set), so no deployment will react to the new attributes. "
            f"{_RUN_BY_HAND} {_SET_URL_HINT}"
        )
    if not server_reachable(url):
        return (
            f"No Prefect server is running at {url}, so no deployment will react to the new attributes. "
            f"{_api_path_hint(url)}{_RUN_BY_HAND}"
        )

    from prefect.events import emit_event
    from prefect.events.worker import EventsWorker

    project = paths.project_root().name
    event = emit_event(
        event=ATTRIBUTES_ADDED,
        resource={"prefect.resource.id": f"mclfir.labels.{project}", "prefect.resource.name": f"label files of {project}"},
        payload={"attributes": list(attributes), "files": list(files)},
    )
    if event is None:
        return f"Prefect did not emit the event {ATTRIBUTES_ADDED}, because its events are turned off in this environment. {_RUN_BY_HAND}"

    # emit_event only queues the event for Prefect's background events worker. Draining the
    # worker sends what is queued and stops it, so the event leaves before this process exits.
    # NOTE: the worker logs a failed send (for example a refused websocket) instead of raising,
    # so the message below also follows a send that Prefect logged as failed.
    _, pending = EventsWorker.drain_all(timeout=DELIVERY_TIMEOUT_S, at_exit=False)
    if pending:
        return (
            f"The event {ATTRIBUTES_ADDED} (id {event.id}) was not sent to {url} within {DELIVERY_TIMEOUT_S:.0f} s. "
            f"Check the server and its log. {_RUN_BY_HAND}"
        )
    _logger.info("Emitted %s (id %s) to %s", ATTRIBUTES_ADDED, event.id, url)
    return f"Emitted the event {ATTRIBUTES_ADDED} (id {event.id}) to the Prefect server at {url}. Deployments that trigger on it start there."
