"""Checks on the image files themselves, which Great Expectations cannot make.

For each catalog row the file must lie inside the dataset root, exist, decode, be convertible
to RGB by Pillow's ``convert("RGB")``, and show more than a blank frame. Conversion drops alpha,
so transparent pixels show whatever colour they store; converted images are counted by mode. Its SHA-256 must still match the
catalog's ``content_hash``. The checks read each file once. Large catalogs are checked in a
process pool, because for small photos the per-file Python work, not the decoding, dominates.
"""

import hashlib
import io
import logging
import os
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from mclfir.data.catalog import HASH_COLUMN, ID_COLUMN, PATH_COLUMN, ROW_COLUMN
from mclfir.data.problems import Problem

_logger = logging.getLogger(__name__)

# A decoded frame whose grayscale pixels span at most this many levels (of 255) shows no
# product. The faintest real photo of Fashion Product Images (a thin gold chain on white,
# id 56212) spans 17 levels, and no other photo there spans fewer than 41.
BLANK_RANGE_MAX = 8
_EXAMPLES_KEPT = 20
# Below this many images a process pool costs more to start than it saves.
_POOL_MIN_IMAGES = 2000
_POOL_CHUNK = 256


@dataclass
class ImageStatus:
    """Status of one image file, as found by the checks."""

    image_id: str
    path: str
    row: int | None
    exists: bool = False
    inside_root: bool = True
    decodes: bool = False
    mode: str = ""
    size: tuple[int, int] | None = None
    pixel_range: int | None = None
    file_hash: str = ""
    error: str = ""
    convert_error: str = ""


@dataclass
class ImageCheckResult:
    """Per-image statuses, the problems found, and summary counts for the report."""

    statuses: list[ImageStatus]
    problems: list[Problem] = field(default_factory=list)

    def summary(self) -> dict:
        """Return counts of modes and sizes, and examples of images that need conversion or have an odd size."""
        decoded = [status for status in self.statuses if status.decodes]
        modes = Counter(status.mode for status in decoded)
        sizes = Counter(f"{status.size[0]}x{status.size[1]}" for status in decoded)
        common_size = sizes.most_common(1)[0][0] if sizes else ""

        converted = [status for status in decoded if status.mode != "RGB" and not status.convert_error]
        odd_size = [status for status in decoded if f"{status.size[0]}x{status.size[1]}" != common_size]
        return {
            "checked": len(self.statuses),
            "decoded": len(decoded),
            "modes": dict(modes.most_common()),
            "sizes": dict(sizes.most_common()),
            "most_common_size": common_size,
            "converted_to_rgb": {
                "count": len(converted),
                "examples": [{"image_id": s.image_id, "path": s.path, "mode": s.mode} for s in converted[:_EXAMPLES_KEPT]],
            },
            "size_differs_from_most_common": {
                "count": len(odd_size),
                "examples": [{"image_id": s.image_id, "path": s.path, "size": list(s.size)} for s in odd_size[:_EXAMPLES_KEPT]],
            },
        }


def is_inside(path: Path, root: Path) -> bool:
    """Return True when ``path``, with symbolic links and ``..`` resolved, lies under ``root``."""
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True


def inspect_image(root: Path, image_id: str, relative_path: str, row: int | None) -> ImageStatus:
    """Read one image file and return its status; a missing, unreadable or undecodable file is a status, not an exception."""
    status = ImageStatus(image_id=image_id, path=relative_path, row=row)
    path = root / relative_path

    # A path outside the root is never opened: it is a stop problem, not a file to read.
    if not is_inside(path, root):
        status.inside_root = False
        return status
    if not path.is_file():
        return status
    status.exists = True

    try:
        data = path.read_bytes()
    except OSError as error:
        status.error = f"{type(error).__name__}: {error}"
        return status
    status.file_hash = hashlib.sha256(data).hexdigest()

    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            status.mode = image.mode
            status.size = image.size
            rgb = _to_rgb(image, status)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        status.error = f"{type(error).__name__}: {error}"
        return status
    status.decodes = True

    if rgb is not None:
        pixels = np.asarray(rgb.convert("L"))
        status.pixel_range = int(pixels.max()) - int(pixels.min())
    return status


def _to_rgb(image: Image.Image, status: ImageStatus) -> Image.Image | None:
    # Training converts every image to RGB the same way, so a failed conversion here is a failed image there.
    try:
        return image.convert("RGB")
    except ValueError as error:
        status.convert_error = str(error)
        return None


def check_images(frame: pd.DataFrame, root: Path, workers: int | None = None) -> ImageCheckResult:
    """Inspect every image of the catalog ``frame`` under ``root`` and collect the problems found.

    Rows without a path are skipped (the missing column or value is reported elsewhere).
    """
    root = Path(root)
    workers = workers or os.cpu_count() or 1
    rows = _image_rows(frame)
    inspect = partial(_inspect_row, root)

    if workers > 1 and len(rows) >= _POOL_MIN_IMAGES:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            jobs = pool.map(inspect, rows, chunksize=_POOL_CHUNK)
            statuses = list(tqdm(jobs, total=len(rows), desc="check images", unit="image"))
    else:
        statuses = [inspect(row) for row in tqdm(rows, desc="check images", unit="image")]

    hashes = frame[HASH_COLUMN].tolist() if HASH_COLUMN in frame.columns else [None] * len(frame)
    result = ImageCheckResult(statuses)
    for status, catalog_hash in zip(statuses, hashes):
        result.problems.extend(_problems_of(status, catalog_hash))
    _logger.info("Checked %d image files under %s: %d problems", len(statuses), root, len(result.problems))
    return result


def _inspect_row(root: Path, row: tuple[str, str, int | None]) -> ImageStatus:
    return inspect_image(root, *row)


def _image_rows(frame: pd.DataFrame) -> list[tuple[str, str, int | None]]:
    if PATH_COLUMN not in frame.columns:
        return []
    ids = frame[ID_COLUMN].astype(str).tolist() if ID_COLUMN in frame.columns else [""] * len(frame)
    rows = frame[ROW_COLUMN].tolist() if ROW_COLUMN in frame.columns else [None] * len(frame)
    return [
        (image_id, str(path), None if pd.isna(row) else int(row))
        for image_id, path, row in zip(ids, frame[PATH_COLUMN].tolist(), rows)
        if isinstance(path, str) and path
    ]


def _problems_of(status: ImageStatus, catalog_hash: str | None) -> list[Problem]:
    # The row is left out, because location() would print it as a line of the image file.
    where = {"file": status.path, "image_id": status.image_id}

    if not status.inside_root:
        return [Problem("path_outside_root", "stop", "Image path points outside the dataset root; fix the id or path in the label file.", row=status.row, image_id=status.image_id, column=PATH_COLUMN, value=status.path)]
    if not status.exists:
        return [Problem("missing_image", "set_aside", "Image file not found under the dataset root.", **where)]
    if not status.decodes:
        return [Problem("undecodable_image", "set_aside", f"Image file does not decode ({status.error}); replace the file or drop the row.", **where)]

    problems = []
    if status.convert_error:
        problems.append(Problem("unsupported_mode", "set_aside", f"Image mode {status.mode} cannot be converted to RGB ({status.convert_error}).", column="mode", value=status.mode, **where))
    if status.pixel_range is not None and status.pixel_range <= BLANK_RANGE_MAX:
        problems.append(Problem("blank_image", "set_aside", f"Image is blank: its grayscale pixels span only {status.pixel_range} levels.", **where))
    if isinstance(catalog_hash, str) and catalog_hash and catalog_hash != status.file_hash:
        problems.append(Problem("content_hash_mismatch", "set_aside", "Image file changed since the catalog was prepared (SHA-256 differs); rerun `mclfir data prepare`.", column=HASH_COLUMN, value=catalog_hash, **where))
    return problems
