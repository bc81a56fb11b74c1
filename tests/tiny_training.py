"""A tiny generated training set and configuration, shared by the training and strategy tests.

Images are 32x32 squares of one of three colours with a dark patch on the left or the right,
so ``colour`` (increment inc0) and ``side`` (increment inc1) are both learnable. Every image is
a train image of both attributes.
"""

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from mclfir.data.catalog import Catalog, write_catalog
from mclfir.data.image_cache import build_image_cache
from mclfir.train import TrainPaths

COLOURS = {"red": (200, 30, 30), "green": (30, 180, 30), "blue": (30, 30, 200)}
SIDES = ("left", "right")
IMAGES_PER_COMBINATION = 4


def tiny_params(epochs: int = 2, pairs_per_epoch: int = 16, checkpoint_every: int = 100) -> dict:
    return {
        "model": {
            "backbone": "test_resnet",
            "feature_index": 2,
            "image_size": [32, 32],
            "pretrained": False,
            "embed_dim": 16,
            "attention_dim": 16,
        },
        "train": {
            "epochs": epochs,
            "batch_size": 4,
            "pairs_per_epoch": pairs_per_epoch,
            "lr": 1e-3,
            "ema_decay": 0.9,
            "seed": 3,
            "checkpoint_every": checkpoint_every,
            "log_every": 1,
            "num_threads": 1,
        },
        "increments": {
            "inc0": {"attributes": ["colour"], "parent": "init"},
            "inc1": {"attributes": ["side"], "parent": "inc0"},
        },
    }


def draw(colour: str, side: str) -> Image.Image:
    pixels = np.full((32, 32, 3), COLOURS[colour], dtype=np.uint8)
    columns = slice(2, 12) if side == "left" else slice(20, 30)
    pixels[10:22, columns] = 20
    return Image.fromarray(pixels)


def build_tiny_data(root: Path) -> Path:
    """Write 24 generated images under ``root`` with their catalog, image cache and split files."""
    (root / "images").mkdir()
    records = []
    for colour in COLOURS:
        for side in SIDES:
            for copy_index in range(IMAGES_PER_COMBINATION):
                image_id = f"{colour}-{side}-{copy_index}"
                draw(colour, side).save(root / "images" / f"{image_id}.png")
                records.append({"image_id": image_id, "colour": colour, "side": side})
    frame = pd.DataFrame.from_records(records)

    catalog = pd.DataFrame(
        {
            "image_id": frame["image_id"],
            "path": "images/" + frame["image_id"] + ".png",
            "content_hash": None,
            "source_row": range(2, len(frame) + 2),
            "colour": frame["colour"].map(lambda value: [value]),
            "side": frame["side"].map(lambda value: [value]),
        }
    )
    write_catalog(Catalog(catalog, ["colour", "side"], "test", str(root)), root / "catalog.parquet")
    build_image_cache(root / "catalog.parquet", root / "cache")

    for increment, attribute in (("inc0", "colour"), ("inc1", "side")):
        split_dir = root / "splits" / increment
        split_dir.mkdir(parents=True)
        split = pd.DataFrame({"image_id": frame["image_id"], "value": frame[attribute], "role": "train"})
        split.to_parquet(split_dir / f"{attribute}.parquet")
    return root


def tiny_paths(data_dir: Path, out: Path) -> TrainPaths:
    return TrainPaths(
        cache_dir=str(data_dir / "cache"),
        splits_dir=str(data_dir / "splits"),
        models_dir=str(out / "models"),
        metrics_dir=str(out / "metrics"),
    )
