"""Decoded-image cache: every catalog image decoded once into one uint8 array on disk.

Training and evaluation read thousands of small JPEGs many times over. Decoding them once into
``images.npy`` (uint8 ``[N, H0, W0, 3]``, written through ``np.lib.format.open_memmap``) and
memory-mapping that file makes a batch one array slice instead of B file opens and decodes.
``index.parquet`` maps ``image_id`` to its row. Every image is stored at the dataset's most
common size (80x60 pixels, height x width, for Fashion Product Images). Images of another size
are resized to it and counted. ``MultiHeadModel.features`` takes the uint8 images (permuted to
``[B, 3, H0, W0]``) and resizes and normalises them itself.

CLI: ``mclfir data cache --catalog data/validated/catalog.parquet --out data/cache``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image
from tqdm import tqdm

from mclfir.data.catalog import ID_COLUMN, PATH_COLUMN, read_catalog
from mclfir.paths import resolve

if TYPE_CHECKING:
    import torch

_logger = logging.getLogger(__name__)

IMAGES_FILE = "images.npy"
INDEX_FILE = "index.parquet"
SUMMARY_FILE = "summary.json"
ROW_COLUMN = "row"
_CHUNK_IMAGES = 512
# Fields of CacheSummary written to summary.json; the timing and the folder are only logged.
_CONTENT_FIELDS = ("images", "height", "width", "resized")


@dataclass(frozen=True)
class CacheSummary:
    """Summary of a cache build: image count, stored size, resized count and timing."""

    images: int
    height: int
    width: int
    resized: int
    workers: int
    wall_s: float
    folder: str


def read_image_sizes(paths: Sequence[Path]) -> list[tuple[int, int]]:
    """Return ``(width, height)`` of each image from its header, without decoding the pixels."""
    sizes = []
    for path in tqdm(paths, desc="read image sizes", unit="img", leave=False):
        with Image.open(path) as image:
            sizes.append(image.size)
    return sizes


def decode_image(path: Path, width: int, height: int) -> tuple[np.ndarray, bool]:
    """Decode one image to RGB uint8 ``[height, width, 3]``; return it and whether it was resized."""
    with Image.open(path) as image:
        rgb = image.convert("RGB")
    resized = rgb.size != (width, height)
    if resized:
        rgb = rgb.resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(rgb, dtype=np.uint8), resized


def _decode_chunk(task: tuple[list[str], int, int]) -> tuple[np.ndarray, int]:
    """Decode a list of paths into ``[n, height, width, 3]``; return it with the resized count."""
    paths, width, height = task
    array = np.empty((len(paths), height, width, 3), dtype=np.uint8)
    resized = 0
    for i, path in enumerate(paths):
        array[i], was_resized = decode_image(Path(path), width, height)
        resized += int(was_resized)
    return array, resized


def build_image_cache(catalog_path: Path, out: Path, workers: int = 0) -> CacheSummary:
    """Decode every image of a catalog into ``out/images.npy`` and write ``out/index.parquet``.

    ``workers`` > 1 decodes chunks of images in a process pool; 0 or 1 decodes in this process.
    The arrays are written to temporary names and renamed at the end, so an interrupted build
    never leaves a cache that looks complete.
    """
    started = time.perf_counter()
    catalog = read_catalog(resolve(catalog_path))
    root = resolve(catalog.root)
    image_ids = catalog.frame[ID_COLUMN].astype(str).tolist()
    paths = [root / relative for relative in catalog.frame[PATH_COLUMN]]
    if not paths:
        raise ValueError(f"Catalog {catalog_path} contains no images, so there is nothing to cache.")
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} images of catalog {catalog_path} are missing under {root}, "
            f"for example {missing[0]}. Cache the validated catalog, which leaves missing images out."
        )

    width, height = _most_common_size(read_image_sizes(paths))
    out = resolve(out)
    out.mkdir(parents=True, exist_ok=True)
    images_tmp = out / f".{IMAGES_FILE}.partial.npy"
    images = np.lib.format.open_memmap(images_tmp, mode="w+", dtype=np.uint8, shape=(len(paths), height, width, 3))

    resized = _decode_all(paths, images, width, height, workers)
    images.flush()
    del images
    os.replace(images_tmp, out / IMAGES_FILE)
    _write_index(out / INDEX_FILE, image_ids, catalog_path)

    summary = CacheSummary(
        images=len(paths),
        height=height,
        width=width,
        resized=resized,
        workers=workers,
        wall_s=round(time.perf_counter() - started, 2),
        folder=str(out),
    )
    # Only what the content determines goes into the folder, so that rebuilding the cache from the
    # same images gives the same DVC hash and the stages that read it stay up to date.
    content = {key: value for key, value in asdict(summary).items() if key in _CONTENT_FIELDS}
    (out / SUMMARY_FILE).write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")
    _logger.info(
        "Cached %d images at %dx%d (width x height) in %s; %d of another size were resized",
        summary.images, width, height, out, resized,
    )
    return summary


def _most_common_size(sizes: list[tuple[int, int]]) -> tuple[int, int]:
    counts = Counter(sizes)
    (width, height), count = counts.most_common(1)[0]
    if len(counts) > 1:
        _logger.info("Image sizes found (width, height): %s; storing all at %dx%d", dict(counts.most_common(5)), width, height)
    return width, height


def _decode_all(paths: list[Path], images: np.ndarray, width: int, height: int, workers: int) -> int:
    """Fill ``images`` row by row in catalog order; return how many images were resized."""
    chunks = [
        ([str(path) for path in paths[start : start + _CHUNK_IMAGES]], width, height)
        for start in range(0, len(paths), _CHUNK_IMAGES)
    ]
    progress = tqdm(total=len(paths), desc="decode images", unit="img")
    resized = 0
    start = 0

    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = pool.map(_decode_chunk, chunks)
            for array, chunk_resized in results:
                images[start : start + len(array)] = array
                start += len(array)
                resized += chunk_resized
                progress.update(len(array))
    else:
        for chunk in chunks:
            array, chunk_resized = _decode_chunk(chunk)
            images[start : start + len(array)] = array
            start += len(array)
            resized += chunk_resized
            progress.update(len(array))

    progress.close()
    return resized


def _write_index(path: Path, image_ids: list[str], catalog_path: Path) -> None:
    if len(set(image_ids)) != len(image_ids):
        duplicated = pd.Series(image_ids)[pd.Series(image_ids).duplicated()].iloc[0]
        raise ValueError(f"Catalog {catalog_path} repeats image_id {duplicated!r}; image ids must be unique.")
    table = pa.table({ID_COLUMN: pa.array(image_ids, pa.string()), ROW_COLUMN: pa.array(np.arange(len(image_ids)), pa.int64())})
    pq.write_table(table, path)


class ImageCache:
    """A read-only, memory-mapped view of a cache folder written by :func:`build_image_cache`."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = resolve(folder)
        images_path = self.folder / IMAGES_FILE
        index_path = self.folder / INDEX_FILE
        for path in (images_path, index_path):
            if not path.is_file():
                raise FileNotFoundError(f"Image cache file not found: {path}. Build the cache with `mclfir data cache`.")

        self.images = np.load(images_path, mmap_mode="r")
        index = pq.read_table(index_path).to_pandas()
        self._row_of = dict(zip(index[ID_COLUMN].astype(str), index[ROW_COLUMN].astype(np.int64)))

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def image_size(self) -> tuple[int, int]:
        """Stored size ``(H0, W0)`` of every image."""
        return int(self.images.shape[1]), int(self.images.shape[2])

    def rows(self, image_ids: Sequence[str]) -> np.ndarray:
        """Return the cache rows of ``image_ids`` as int64 ``[B]``."""
        try:
            return np.fromiter((self._row_of[str(image_id)] for image_id in image_ids), dtype=np.int64, count=len(image_ids))
        except KeyError as error:
            raise KeyError(
                f"Image id {error.args[0]!r} is not in the image cache {self.folder}; "
                "rebuild the cache from the catalog the splits were made from."
            ) from None

    def read_rows(self, rows: np.ndarray) -> torch.Tensor:
        """Return the images at cache ``rows`` as a uint8 tensor ``[B, H0, W0, 3]``."""
        import torch

        return torch.from_numpy(np.ascontiguousarray(self.images[np.asarray(rows, dtype=np.int64)]))

    def read(self, image_ids: Sequence[str]) -> torch.Tensor:
        """Return the images of ``image_ids`` as a uint8 tensor ``[B, H0, W0, 3]``."""
        return self.read_rows(self.rows(image_ids))


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``mclfir data cache``."""
    parser.add_argument("--catalog", default="data/validated/catalog.parquet", help="validated catalog to cache (Parquet)")
    parser.add_argument("--out", default="data/cache", help="output folder for images.npy and index.parquet")
    # Measured on 2 cores with 43,177 JPEGs of 80x60: 14.6 s in one process, 10.1 s with 2 workers.
    parser.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="decoding processes; 0 or 1 decodes in this process (default: the number of CPU cores)",
    )


def run(args: argparse.Namespace) -> int:
    """Build the image cache and print a one-line summary."""
    summary = build_image_cache(Path(args.catalog), Path(args.out), workers=args.workers)
    print(
        f"Cached {summary.images} images at {summary.width}x{summary.height} in {summary.folder} "
        f"({summary.resized} resized from another size, {summary.wall_s} s)"
    )
    return 0
