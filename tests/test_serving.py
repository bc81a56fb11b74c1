"""Serving the champion with ``mlflow models serve`` and querying it over HTTP, as the README describes.

The server runs as a child process bound to 127.0.0.1 with ``--env-manager local`` (the test's own
environment), and is stopped by its process group at the end.
"""

import base64
import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mclfir import registry
from mclfir.model.checkpoint import load_model
from process_groups import stop_process_group
from registry_store import PARAMS, empty_store, jpeg_bytes, project, write_checkpoint, write_report  # noqa: F401 (fixtures)

pytestmark = pytest.mark.integration

HOST = "127.0.0.1"
START_TIMEOUT_S = 180


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def _wait_until_up(url: str, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"mlflow models serve exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/ping", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(1)
    pytest.fail(f"mlflow models serve did not respond to /ping within {START_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")


@pytest.fixture
def served_champion(project):
    """Register a tiny checkpoint as champion, serve it, and yield the server's URL."""
    checkpoint = write_checkpoint(project / "inc0.pt", ["inc0"])
    registry.register(checkpoint, write_report(project / "inc0.json", {"colour": 60.0, "shape": 50.0}), PARAMS)

    port = _free_port()
    log = project / "serve.log"
    command = [
        str(Path(sys.executable).parent / "mlflow"), "models", "serve", "-m", "models:/mclfir@champion",
        "--env-manager", "local", "--host", HOST, "--port", str(port), "--workers", "1",
    ]
    # The server starts uvicorn by name, so the environment's bin folder goes first on PATH, as with an activated venv.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    with log.open("w") as handle:
        server = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        url = f"http://{HOST}:{port}"
        _wait_until_up(url, server, log)
        yield url, checkpoint
    finally:
        stop_process_group(server)


def test_served_embedding_matches_local_model(served_champion):
    url, checkpoint = served_champion
    images = [jpeg_bytes((200, 30, 30)), jpeg_bytes((30, 30, 200))]
    body = {
        "dataframe_split": {
            "columns": ["image", "attribute"],
            "data": [[base64.b64encode(images[0]).decode("ascii"), "colour"], [base64.b64encode(images[1]).decode("ascii"), "shape"]],
        }
    }
    request = urllib.request.Request(
        f"{url}/invocations", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        served = np.asarray(json.loads(response.read())["predictions"], dtype=np.float32)

    local = load_model(checkpoint, which="student")
    pixels = [torch.from_numpy(np.array(Image.open(io.BytesIO(image)).convert("RGB"))).permute(2, 0, 1)[None] for image in images]
    with torch.inference_mode():
        expected = torch.cat([local(pixels[0], ["colour"]), local(pixels[1], ["shape"])]).numpy()
    assert served.shape == (2, 16)
    np.testing.assert_allclose(served, expected, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(served, axis=1), 1.0, atol=1e-5)


def test_served_model_rejects_unknown_attribute(served_champion):
    url, _ = served_champion
    body = {"dataframe_split": {"columns": ["image", "attribute"], "data": [[base64.b64encode(jpeg_bytes((0, 0, 0))).decode(), "season"]]}}
    request = urllib.request.Request(
        f"{url}/invocations", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(request, timeout=60)
    assert error.value.code >= 400
    assert "colour, shape" in error.value.read().decode()
