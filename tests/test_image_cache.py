"""Tests of the decoded-image cache: build, index, resizing of odd sizes, and reading."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from mclfir.data.catalog import Catalog, write_catalog
from mclfir.data.image_cache import ImageCache, build_image_cache


def _write_images(root: Path, sizes: list[tuple[int, int]]) -> list[np.ndarray]:
    """Write one flat-coloured PNG per size (width, height); return the RGB arrays written."""
    (root / "images").mkdir(parents=True)
    arrays = []
    for i, (width, height) in enumerate(sizes):
        colour = (10 * i % 256, 255 - 10 * i % 256, 77)
        image = Image.new("RGB", (width, height), colour)
        image.save(root / "images" / f"{i}.png")
        arrays.append(np.asarray(image))
    return arrays


def _write_catalog(root: Path, count: int, out: Path) -> Path:
    frame = pd.DataFrame(
        {
            "image_id": [str(i) for i in range(count)],
            "path": [f"images/{i}.png" for i in range(count)],
            "content_hash": [None] * count,
            "source_row": list(range(2, count + 2)),
            "colour": [["red"]] * count,
        }
    )
    return write_catalog(Catalog(frame, ["colour"], "test", str(root)), out)


@pytest.mark.parametrize("workers", [0, 2])
def test_cache_stores_every_image_in_order(tmp_path, workers):
    sizes = [(6, 8)] * 5 + [(12, 10)]
    arrays = _write_images(tmp_path / "data", sizes)
    catalog = _write_catalog(tmp_path / "data", len(sizes), tmp_path / "catalog.parquet")

    summary = build_image_cache(catalog, tmp_path / "cache", workers=workers)

    assert summary.images == 6
    assert (summary.height, summary.width) == (8, 6)
    assert summary.resized == 1
    cache = ImageCache(tmp_path / "cache")
    assert len(cache) == 6
    assert cache.image_size == (8, 6)
    for i in range(5):
        assert np.array_equal(cache.read([str(i)])[0].numpy(), arrays[i])


def test_cache_resizes_odd_size_to_most_common(tmp_path):
    arrays = _write_images(tmp_path / "data", [(6, 8), (6, 8), (12, 16)])
    catalog = _write_catalog(tmp_path / "data", 3, tmp_path / "catalog.parquet")
    build_image_cache(catalog, tmp_path / "cache")

    resized = ImageCache(tmp_path / "cache").read(["2"])

    assert resized.shape == (1, 8, 6, 3)
    # A flat colour survives bilinear resizing unchanged.
    assert np.array_equal(resized[0].numpy(), arrays[2][:8, :6])


def test_cache_read_returns_uint8_in_request_order(tmp_path):
    arrays = _write_images(tmp_path / "data", [(6, 8)] * 4)
    catalog = _write_catalog(tmp_path / "data", 4, tmp_path / "catalog.parquet")
    build_image_cache(catalog, tmp_path / "cache")

    batch = ImageCache(tmp_path / "cache").read(["3", "0", "3"])

    assert batch.dtype == torch.uint8
    assert batch.shape == (3, 8, 6, 3)
    assert np.array_equal(batch[0].numpy(), arrays[3])
    assert np.array_equal(batch[1].numpy(), arrays[0])


def test_cache_unknown_id_raises_with_id(tmp_path):
    _write_images(tmp_path / "data", [(6, 8)] * 2)
    catalog = _write_catalog(tmp_path / "data", 2, tmp_path / "catalog.parquet")
    build_image_cache(catalog, tmp_path / "cache")

    with pytest.raises(KeyError, match="'missing-id'"):
        ImageCache(tmp_path / "cache").read(["missing-id"])


def test_cache_missing_image_file_raises(tmp_path):
    _write_images(tmp_path / "data", [(6, 8)] * 2)
    catalog = _write_catalog(tmp_path / "data", 3, tmp_path / "catalog.parquet")

    with pytest.raises(FileNotFoundError, match="2.png"):
        build_image_cache(catalog, tmp_path / "cache")


def test_cache_folder_missing_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="mclfir data cache"):
        ImageCache(tmp_path / "nothing")
