"""Benchmark of training throughput: the full train step against the bare backbone.

The full step is what ``mclfir train`` runs for a second increment: doublet sampling, reading
from the image cache, augmentation, student forward (backbone and heads), EMA-teacher forward,
InfoNCE and distillation losses, backward, AdamW step and EMA update. The bare step is only the
backbone's forward and backward on the same batch. The script also times each part of the full
step on its own and reports the peak resident memory (maxrss).

Run on the real cache (built by ``mclfir data cache``) with its catalog::

    .venv/bin/python bench/bench_train.py --cache data/cache --catalog data/validated/catalog.parquet

Without ``--cache`` it generates random 80x60 images, which times the same work.
"""

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from mclfir.config import ModelConfig, TrainConfig
from mclfir.data.catalog import read_catalog
from mclfir.data.doublets import DoubletSampler, build_pool
from mclfir.data.image_cache import ImageCache
from mclfir.losses import info_nce_loss
from mclfir.model.ema import EmaTeacher
from mclfir.model.multihead import MultiHeadModel
from mclfir.train import IncrementTrainer, TrainPaths, augment_images, autocast_context


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", help="image cache folder; random images when omitted")
    parser.add_argument("--catalog", help="catalog whose labels form the doublets (needed with --cache)")
    parser.add_argument("--old-attribute", default="masterCategory", help="attribute of the earlier head")
    parser.add_argument("--attribute", default="articleType", help="attribute of the head being trained")
    parser.add_argument("--backbone", default="resnet18", help="timm model name")
    parser.add_argument("--feature-index", type=int, default=3, help="timm features_only out index")
    parser.add_argument("--image-size", type=int, nargs=2, default=[80, 60], metavar=("H", "W"), help="network input size")
    parser.add_argument("--batch-size", type=int, default=32, help="pairs per batch (2 images each)")
    parser.add_argument("--steps", type=int, default=20, help="timed rounds (one full, one bare and one split-up step each)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed rounds first")
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0 uses every core")
    parser.add_argument("--cpu-bf16", action="store_true", help="bf16 autocast on the CPU")
    parser.add_argument("--json", help="also write the results to this JSON file")
    return parser.parse_args()


def random_cache(folder: Path, images: int) -> ImageCache:
    """Write a cache of random 80x60 images with ids 0..images-1."""
    array = np.lib.format.open_memmap(folder / "images.npy", mode="w+", dtype=np.uint8, shape=(images, 80, 60, 3))
    array[:] = np.random.default_rng(0).integers(0, 256, size=array.shape, dtype=np.uint8)
    array.flush()
    pd.DataFrame({"image_id": [str(i) for i in range(images)], "row": np.arange(images)}).to_parquet(folder / "index.parquet")
    return ImageCache(folder)


def attribute_pool(cache: ImageCache, catalog_path: str | None, attribute: str):
    """Pool of one attribute: from the catalog labels, or 20 random values over the random cache."""
    if catalog_path is None:
        rows = np.arange(len(cache))
        return build_pool(attribute, rows, [str(row % 20) for row in rows])
    catalog = read_catalog(Path(catalog_path))
    labelled = catalog.frame[catalog.frame[attribute].map(len) > 0]
    rows = cache.rows(labelled["image_id"].astype(str).tolist())
    return build_pool(attribute, rows, labelled[attribute].map(lambda values: "|".join(sorted(values))).tolist())


def build_trainer(args: argparse.Namespace, cache: ImageCache) -> IncrementTrainer:
    """Build a trainer for a second increment, so that distillation and the old head run too."""
    model_cfg = ModelConfig(backbone=args.backbone, feature_index=args.feature_index, image_size=list(args.image_size))
    cfg = TrainConfig(batch_size=args.batch_size, pairs_per_epoch=args.batch_size * 1000, cpu_bf16=args.cpu_bf16, num_threads=args.threads)
    torch.manual_seed(0)
    model = MultiHeadModel(model_cfg)
    model.add_increment("old", [args.old_attribute])
    model.add_increment("new", [args.attribute])
    teacher = EmaTeacher(model, cfg.ema_decay)
    sampler = DoubletSampler([attribute_pool(cache, args.catalog, args.attribute)], cfg.pairs_per_epoch, cfg.batch_size, cfg.seed)
    return IncrementTrainer(
        "new", model, teacher, sampler, cache, model_cfg, cfg, TrainPaths(),
        distill=True, config_record={}, device=torch.device("cpu"),
    )


def time_parts(trainer: IncrementTrainer, batch) -> dict[str, float]:
    """Run one full step split into its parts; return the seconds of each part."""
    marks = [("start", time.perf_counter())]
    rows = np.concatenate([batch.anchor_rows, batch.positive_rows])
    images = trainer.cache.read_rows(rows)
    marks.append(("data loading (cache read)", time.perf_counter()))
    generator = torch.Generator().manual_seed(0)
    inputs = augment_images(images, trainer.image_size, generator)
    if trainer.channels_last:
        inputs = inputs.contiguous(memory_format=torch.channels_last)
    marks.append(("augmentation", time.perf_counter()))

    trainer.model.train()
    with autocast_context(trainer.device, trainer.cfg.cpu_bf16):
        features = trainer.model.features(inputs)
    marks.append(("student backbone forward", time.perf_counter()))
    attributes = [trainer.sampler.attributes[i] for i in batch.attribute_ids]
    with autocast_context(trainer.device, trainer.cfg.cpu_bf16):
        embeddings = trainer.model.embed(features, attributes + attributes)
    P = len(batch)
    attribute_ids = torch.from_numpy(batch.attribute_ids)
    value_ids = torch.from_numpy(batch.value_ids)
    loss = info_nce_loss(embeddings[:P], embeddings[P:], attribute_ids, value_ids, trainer.cfg.temperature)
    marks.append(("student head forward + InfoNCE", time.perf_counter()))
    distill = trainer._distillation_losses(inputs, features, generator)
    loss = loss + trainer.cfg.distill_weight * sum(distill.values())
    marks.append(("teacher forward + old head + distillation losses", time.perf_counter()))

    trainer.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    marks.append(("backward (student backbone + heads)", time.perf_counter()))
    trainer.optimizer.step()
    marks.append(("optimizer step", time.perf_counter()))
    trainer.ema.update(trainer.model)
    marks.append(("EMA update", time.perf_counter()))
    return {name: after - before for (_, before), (name, after) in zip(marks, marks[1:])}


def bare_backbone_step(trainer: IncrementTrainer, inputs: torch.Tensor) -> None:
    """Forward and backward of the backbone alone on normalised ``inputs [2P, 3, H, W]``."""
    backbone = trainer.model.backbone
    backbone.train()
    backbone.zero_grad(set_to_none=True)
    with autocast_context(trainer.device, trainer.cfg.cpu_bf16):
        features = backbone(inputs)
    features.float().mean().backward()


def measure(trainer: IncrementTrainer, steps: int, warmup: int) -> dict[str, object]:
    """Time full steps, bare backbone steps and split-up steps, interleaved, and take medians.

    Interleaving and medians keep a burst of load from other processes out of one measurement.
    """
    plan_started = time.perf_counter()
    batches = trainer.sampler.epoch(0)
    plan_s = (time.perf_counter() - plan_started) / len(trainer.sampler)

    first = batches[0]
    images = trainer.cache.read_rows(np.concatenate([first.anchor_rows, first.positive_rows]))
    bare_inputs = trainer.model.preprocess(augment_images(images, trainer.image_size, torch.Generator().manual_seed(0)))
    if trainer.channels_last:
        bare_inputs = bare_inputs.contiguous(memory_format=torch.channels_last)

    full, bare, parts = [], [], []
    for index in range(warmup + steps):
        started = time.perf_counter()
        trainer.train_step(batches[2 * index])
        full_s = time.perf_counter() - started + plan_s

        started = time.perf_counter()
        bare_backbone_step(trainer, bare_inputs)
        bare_s = time.perf_counter() - started

        step_parts = time_parts(trainer, batches[2 * index + 1])
        if index >= warmup:
            full.append(full_s)
            bare.append(bare_s)
            parts.append(step_parts)

    part_medians = {"sampling (epoch plan, per batch)": plan_s}
    part_medians.update({name: float(np.median([step[name] for step in parts])) for name in parts[0]})
    return {"full_s": float(np.median(full)), "bare_s": float(np.median(bare)), "parts_s": part_medians}


def main() -> None:
    args = parse_args()
    if args.cache and not args.catalog:
        raise SystemExit("--cache needs --catalog, whose labels form the doublets.")
    threads = args.threads or torch.get_num_threads()
    torch.set_num_threads(threads)

    with tempfile.TemporaryDirectory() as folder:
        cache = ImageCache(args.cache) if args.cache else random_cache(Path(folder), 4000)
        trainer = build_trainer(args, cache)
        images_per_step = 2 * args.batch_size

        timings = measure(trainer, args.steps, args.warmup)
        full_s = timings["full_s"]
        bare_s = timings["bare_s"]
        parts = timings["parts_s"]

    results = {
        "backbone": args.backbone,
        "image_size": list(args.image_size),
        "batch_pairs": args.batch_size,
        "threads": threads,
        "cpu_bf16": args.cpu_bf16,
        "full_step_s": round(full_s, 4),
        "full_images_per_s": round(images_per_step / full_s, 1),
        "bare_backbone_step_s": round(bare_s, 4),
        "bare_backbone_images_per_s": round(images_per_step / bare_s, 1),
        "full_over_bare_time": round(full_s / bare_s, 2),
        "parts_s": {name: round(seconds, 4) for name, seconds in parts.items()},
        "parts_sum_s": round(sum(parts.values()), 4),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    print(json.dumps(results, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
