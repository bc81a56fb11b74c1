"""Download Fashion Product Images (Small) from Kaggle, for machines with network access.

The dataset is Kaggle's "Fashion Product Images (Small)" by Param Aggarwal
(https://www.kaggle.com/datasets/paramaggarwal/fashion-product-images-small), published under
the MIT license according to its public mirrors. Kaggle serves each public dataset as one zip
archive from its API; this module fetches that archive over HTTPS, extracts it, and lays it out
as ``styles.csv`` plus ``images/<id>.jpg`` in the output folder.

Offline, the download fails after a short timeout with a message that says how to use a local
copy instead (``MCLFIR_DATA_ROOT``). The URL can point at any server that serves the same zip,
which is how the tests use a local stand-in for the hub.
"""

import argparse
import logging
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from tqdm import tqdm

from mclfir.paths import resolve

_logger = logging.getLogger(__name__)

KAGGLE_DATASET = "paramaggarwal/fashion-product-images-small"
DEFAULT_URL = f"https://www.kaggle.com/api/v1/datasets/download/{KAGGLE_DATASET}"
URL_ENV = "MCLFIR_DOWNLOAD_URL"
_TIMEOUT_S = 30
_CHUNK_BYTES = 1 << 20


class DownloadError(RuntimeError):
    """The dataset could not be downloaded or did not have the expected layout."""


def download_fashion_products(out: Path, url: str | None = None, timeout_s: float = _TIMEOUT_S) -> Path:
    """Download and extract the dataset into ``out``; return ``out``.

    ``out`` ends up holding ``styles.csv`` and ``images/``. An existing ``out`` is replaced only
    after the new copy is complete, so a failed download never damages an earlier copy.
    """
    url = url or os.environ.get(URL_ENV) or DEFAULT_URL
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".download-") as scratch:
        archive = Path(scratch) / "dataset.zip"
        _fetch(url, archive, timeout_s)

        extracted = Path(scratch) / "extracted"
        _extract(archive, extracted)

        dataset = find_dataset_folder(extracted)
        staged = Path(scratch) / "staged"
        staged.mkdir()
        shutil.move(str(dataset / "styles.csv"), staged / "styles.csv")
        shutil.move(str(dataset / "images"), staged / "images")

        if out.exists():
            shutil.rmtree(out)
        shutil.move(str(staged), out)

    _logger.info("Downloaded %s into %s", url, out)
    return out


def _fetch(url: str, archive: Path, timeout_s: float) -> None:
    _logger.info("Downloading %s", url)
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response, archive.open("wb") as handle:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc="download") as progress:
                for chunk in iter(lambda: response.read(_CHUNK_BYTES), b""):
                    handle.write(chunk)
                    progress.update(len(chunk))
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        raise DownloadError(
            f"Could not download the dataset from {url}: {error}. Without network access, point "
            f"MCLFIR_DATA_ROOT at a local copy (the folder holding styles.csv and images/) and run "
            f"`mclfir data import` instead."
        ) from error


def _extract(archive: Path, target: Path) -> None:
    try:
        with zipfile.ZipFile(archive) as bundle:
            for member in bundle.namelist():
                member_path = (target / member).resolve()
                if not member_path.is_relative_to(target.resolve()):
                    raise DownloadError(f"Refusing archive member {member!r}: it would extract outside {target}.")
            bundle.extractall(target)
    except zipfile.BadZipFile as error:
        raise DownloadError(f"The downloaded file is not a zip archive ({error}); check the download URL.") from error


def find_dataset_folder(extracted: Path) -> Path:
    """Return the folder under ``extracted`` that holds ``styles.csv`` and ``images/``.

    Kaggle's archive has held the files at its top level and under ``myntradataset/``;
    the shallowest match wins.
    """
    matches = sorted(
        (path.parent for path in extracted.rglob("styles.csv") if (path.parent / "images").is_dir()),
        key=lambda folder: len(folder.parts),
    )
    if not matches:
        raise DownloadError(
            f"The archive has no folder with both styles.csv and images/ (looked under {extracted}); "
            "check that the URL serves Fashion Product Images (Small)."
        )
    return matches[0]


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="folder to write styles.csv and images/ into")
    parser.add_argument("--url", default=None, help=f"archive URL (default: ${URL_ENV} or {DEFAULT_URL})")
    parser.add_argument("--timeout", type=float, default=_TIMEOUT_S, help="network timeout in seconds")


def run(args: argparse.Namespace) -> int:
    try:
        download_fashion_products(resolve(args.out), url=args.url, timeout_s=args.timeout)
    except DownloadError as error:
        _logger.error("%s", error)
        return 1
    return 0
