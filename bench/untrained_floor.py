"""Retrieval mAP of untrained features: the floor a trained model must beat on every attribute.

Two feature kinds, both L2-normalised and ranked by dot product with the same protocol and
metric code as ``mclfir evaluate`` (the test split's query and candidate rows of each attribute):

- ``pixels``: the photo shrunk to 16x12 (height x width) grey pixels, flattened, mean removed.
- ``colour``: a joint RGB histogram with 4 bins per channel (64 bins), square-rooted.

Run after ``dvc repro cache split``:
``.venv/bin/python bench/untrained_floor.py --splits data/splits --cache data/cache --out metrics/untrained_floor.json``
"""

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mclfir.data.image_cache import ImageCache
from mclfir.data.split import read_split
from mclfir.evaluate import eval_rows
from mclfir.metrics import retrieval_metrics

HISTOGRAM_BINS = 4


def pixel_features(images_u8: torch.Tensor) -> np.ndarray:
    """Return ``[B, 192]`` features from ``[B, H, W, 3]`` uint8 images: 16x12 grey, centred, L2-normalised."""
    grey = images_u8.float().mean(dim=3, keepdim=True).permute(0, 3, 1, 2)  # [B, 1, H, W]
    small = F.interpolate(grey, size=(16, 12), mode="area").flatten(1)  # [B, 192]
    small = small - small.mean(dim=1, keepdim=True)
    return F.normalize(small, dim=1).numpy()


def colour_features(images_u8: torch.Tensor) -> np.ndarray:
    """Return ``[B, 64]`` features from ``[B, H, W, 3]`` uint8 images: square-rooted RGB histogram, L2-normalised."""
    bins = (images_u8.long() * HISTOGRAM_BINS) // 256  # [B, H, W, 3] in 0..3
    codes = (bins[..., 0] * HISTOGRAM_BINS + bins[..., 1]) * HISTOGRAM_BINS + bins[..., 2]  # [B, H, W]
    codes = codes.flatten(1)
    histogram = torch.zeros(codes.shape[0], HISTOGRAM_BINS**3).scatter_add_(1, codes, torch.ones_like(codes, dtype=torch.float32))
    return F.normalize(histogram.sqrt(), dim=1).numpy()


FEATURES = {"pixels": pixel_features, "colour": colour_features}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--splits", default="data/splits", help="folder of the split folders, one per increment")
    parser.add_argument("--cache", default="data/cache", help="image cache folder")
    parser.add_argument("--split", default="test", help="evaluation split")
    parser.add_argument("--k", type=int, default=10, help="cut-off of mAP@k")
    parser.add_argument("--out", default=None, help="JSON file to write the figures to")
    args = parser.parse_args()

    cache = ImageCache(args.cache)
    results = {}
    for split_file in sorted(Path(args.splits).glob("*/*.parquet")):
        table = read_split(split_file)
        rows = eval_rows(table.frame, table.attribute, args.split)
        query_images = cache.read(rows.query_ids)
        candidate_images = cache.read(rows.candidate_ids)

        results[table.attribute] = {}
        for name, featurize in FEATURES.items():
            metrics = retrieval_metrics(
                featurize(query_images), rows.query_values, featurize(candidate_images), rows.candidate_values, k=args.k
            )
            results[table.attribute][name] = {"map": round(metrics.map, 2), "chance": round(metrics.chance, 2)}
            print(f"{table.attribute:15s} {name:7s} mAP {metrics.map:6.2f}  chance {metrics.chance:6.2f}", flush=True)

    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
