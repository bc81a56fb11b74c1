"""Bring a dataset into the project as a local copy that DVC tracks.

The ``import`` DVC stage runs this command. It copies the folder named by ``MCLFIR_DATA_ROOT``
(or ``--from``) into ``data/raw/<source>``, where DVC records the copy's content hash in
``dvc.lock``. Later stages depend on that copy, so a change in the data, not in a path, is what
makes them stale. Without a local copy, Fashion Product Images is downloaded instead
(:mod:`mclfir.data.download`), which needs network access.

The copy is built in a staging folder beside the target and swapped in only when complete, so
an interrupted import never damages the previous copy.
"""

import argparse
import logging
import shutil
import tempfile
from pathlib import Path

from tqdm import tqdm

from mclfir.data.download import DownloadError, download_fashion_products
from mclfir.paths import DATA_ROOT_ENV, data_root_from_env, resolve

_logger = logging.getLogger(__name__)

# Files each source must have at its root, checked before anything is copied.
REQUIRED_ENTRIES: dict[str, tuple[str, ...]] = {
    "fashion-products": ("styles.csv", "images"),
    "fashionai": ("Annotations/label.csv",),
    "asen": (),
}


class DatasetImportError(RuntimeError):
    """The source folder is missing or does not have the layout of its dataset."""


def check_layout(source: str, root: Path) -> None:
    """Raise when ``root`` is not a folder with the entries that ``source`` needs."""
    if source not in REQUIRED_ENTRIES:
        raise DatasetImportError(f"Unknown data source {source!r}; use one of: {', '.join(REQUIRED_ENTRIES)}.")
    if not root.is_dir():
        raise DatasetImportError(f"Dataset folder not found: {root}. Set {DATA_ROOT_ENV} to the folder of the dataset.")

    missing = [entry for entry in REQUIRED_ENTRIES[source] if not (root / entry).exists()]
    if missing:
        raise DatasetImportError(
            f"{root} does not look like a {source} dataset: {', '.join(missing)} not found there. "
            f"Set {DATA_ROOT_ENV} to the folder that holds {', '.join(REQUIRED_ENTRIES[source])}."
        )


def copy_dataset(root: Path, out: Path) -> int:
    """Copy every file under ``root`` into ``out``, replacing ``out`` atomically; return the file count."""
    files = sorted(path for path in root.rglob("*") if path.is_file())
    out.parent.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".import-") as scratch:
        staged = Path(scratch) / "copy"
        for path in tqdm(files, desc=f"copy {root.name}", unit="file"):
            target = staged / path.relative_to(root)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)

        if out.exists():
            shutil.rmtree(out)
        shutil.move(str(staged), out)

    _logger.info("Copied %d files from %s to %s", len(files), root, out)
    return len(files)


def import_dataset(source: str, out: Path, root: Path | None = None) -> Path:
    """Copy the dataset at ``root`` (default: ``MCLFIR_DATA_ROOT``) to ``out``, or download it."""
    root = root or data_root_from_env()

    if root is None:
        if source != "fashion-products":
            raise DatasetImportError(
                f"No local copy of the {source} dataset: set {DATA_ROOT_ENV} to its folder "
                "(its images and labels are licensed separately and cannot be downloaded here)."
            )
        _logger.info("%s is not set; downloading Fashion Product Images", DATA_ROOT_ENV)
        return download_fashion_products(out)

    check_layout(source, root)
    copy_dataset(root, out)
    return out


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", default="fashion-products", choices=sorted(REQUIRED_ENTRIES), help="dataset adapter")
    parser.add_argument("--out", required=True, help="project folder to hold the copy, e.g. data/raw/fashion-products")
    parser.add_argument("--from", dest="root", default=None, help=f"dataset folder to copy (default: ${DATA_ROOT_ENV})")


def run(args: argparse.Namespace) -> int:
    root = Path(args.root).expanduser().resolve() if args.root else None
    try:
        import_dataset(args.source, resolve(args.out), root)
    except (DatasetImportError, DownloadError) as error:
        _logger.error("%s", error)
        return 1
    return 0
