"""Download step, tested against a local HTTP server in place of Kaggle."""

import http.server
import threading
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from mclfir.cli import main
from mclfir.data.download import DownloadError, download_fashion_products


def _write_archive(archive: Path, prefix: str, ids: list[int]) -> None:
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr(f"{prefix}styles.csv", "id,gender\n" + "".join(f"{i},Men\n" for i in ids))
        for image_id in ids:
            image_path = archive.parent / f"{image_id}.jpg"
            Image.new("RGB", (60, 80), (image_id * 40 % 255, 10, 10)).save(image_path)
            bundle.write(image_path, f"{prefix}images/{image_id}.jpg")


@pytest.fixture()
def hub(tmp_path):
    """Serve tmp_path/served over HTTP on 127.0.0.1; yield the base URL."""
    served = tmp_path / "served"
    served.mkdir()

    def handler(*args, **kwargs):
        return http.server.SimpleHTTPRequestHandler(*args, directory=str(served), **kwargs)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.mark.parametrize("prefix", ["", "myntradataset/"])
def test_download_lays_out_dataset(hub, tmp_path, prefix):
    served, base_url = hub
    _write_archive(served / "dataset.zip", prefix, [1, 2, 3])

    out = download_fashion_products(tmp_path / "raw", url=f"{base_url}/dataset.zip")

    assert (out / "styles.csv").read_text().splitlines()[0] == "id,gender"
    assert sorted(path.name for path in (out / "images").iterdir()) == ["1.jpg", "2.jpg", "3.jpg"]


def test_download_failure_keeps_previous_copy(hub, tmp_path):
    _, base_url = hub
    previous = tmp_path / "raw"
    previous.mkdir()
    (previous / "styles.csv").write_text("id\n7\n")

    with pytest.raises(DownloadError, match="MCLFIR_DATA_ROOT"):
        download_fashion_products(previous, url=f"{base_url}/missing.zip")

    assert (previous / "styles.csv").read_text() == "id\n7\n"


def test_download_offline_message(tmp_path, caplog):
    # Port 9 on loopback has no listener, so the connection is refused at once, as offline.
    status = main(["data", "download", "--out", str(tmp_path / "raw"), "--url", "http://127.0.0.1:9/x.zip", "--timeout", "2"])

    assert status == 1
    assert "Could not download the dataset from http://127.0.0.1:9/x.zip" in caplog.text
    assert "MCLFIR_DATA_ROOT" in caplog.text


def test_download_rejects_archive_without_dataset(hub, tmp_path):
    served, base_url = hub
    with zipfile.ZipFile(served / "other.zip", "w") as bundle:
        bundle.writestr("readme.txt", "not a dataset")

    with pytest.raises(DownloadError, match="no folder with both styles.csv and images/"):
        download_fashion_products(tmp_path / "raw", url=f"{base_url}/other.zip")
