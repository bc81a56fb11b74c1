"""Train one increment: a new attribute head on the parent's backbone, with an EMA teacher.

The student starts from the parent increment's checkpoint (for the parent ``init``, the file
written by ``mclfir init``, or a fresh model when there is none), gets one new head for the increment's attributes, and trains on balanced doublets
with InfoNCE. From the second increment on, the EMA teacher anchors the student: the student's
backbone features and its earlier heads' embeddings are pulled towards the teacher's on the
current batch. The teacher is an exponential moving average of the student, updated after every
optimizer step.

Outputs, under the project root: ``models/<increment>/last.pt`` (every ``checkpoint_every``
steps and at each epoch end, for ``--resume``), ``models/<increment>/checkpoint.pt`` (final) and
``metrics/train/<increment>.json`` (per-epoch loss and cost). A resumed run reaches the same
weights as an uninterrupted run with the same seed: batches come from ``(seed, epoch)``, the
augmentation of a step from ``(seed, step)``, and the checkpoint contains every other state.

CLI: ``mclfir train --increment inc1 [--resume] [--max-steps N]``.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import os
import random
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Sequence

import numpy as np

from mclfir.cli_types import positive_int
from mclfir.config import ModelConfig, TrainConfig, load_model_config, load_params, load_train_config, to_dict
from mclfir.paths import resolve
from mclfir.strategies import DEFAULT_STRATEGY, STRATEGIES, TEACHER_EMA, TEACHER_PARENT, Strategy, get_strategy

if TYPE_CHECKING:
    import torch

    from mclfir.data.doublets import DoubletBatch, DoubletSampler
    from mclfir.data.image_cache import ImageCache
    from mclfir.model.ema import EmaTeacher
    from mclfir.model.multihead import MultiHeadModel

_logger = logging.getLogger(__name__)

INIT_PARENT = "init"
CHECKPOINT_FILE = "checkpoint.pt"
LAST_FILE = "last.pt"
# Large odd multiplier that spreads (seed, step) pairs over distinct augmentation seeds.
_STEP_SEED_STRIDE = 1_000_003


@dataclass(frozen=True)
class TrainPaths:
    """Input and output folders of training. Relative paths start at the project root."""

    cache_dir: str = "data/cache"
    splits_dir: str = "data/splits"
    models_dir: str = "models"
    metrics_dir: str = "metrics/train"

    def model_dir(self, increment: str) -> Path:
        """Folder of an increment's checkpoints."""
        return resolve(self.models_dir) / increment

    def parent_checkpoint(self, parent: str) -> Path:
        """Checkpoint that an increment with ``parent`` starts from; ``init`` is the file of `mclfir init`."""
        return self.model_dir(parent) / CHECKPOINT_FILE

    def metrics_file(self, increment: str) -> Path:
        """Training metrics file of an increment."""
        return resolve(self.metrics_dir) / f"{increment}.json"


@dataclass
class TrainProgress:
    """Counters that a checkpoint saves so that a resumed run continues them."""

    step: int = 0
    epoch: int = 0
    wall_s: float = 0.0
    # CPU seconds of the training process (every thread), which other jobs on the machine inflate less than wall time.
    cpu_s: float = 0.0
    images_seen: int = 0
    epoch_losses: list[dict[str, float]] = field(default_factory=list)
    # Sums over the steps done so far in the current epoch, keyed by loss name.
    running: dict[str, float] = field(default_factory=dict)
    running_steps: int = 0

    def cost(self) -> dict[str, float | int]:
        """Training cost so far: wall and CPU time, images seen (2 per pair) and optimizer steps."""
        return {"wall_s": round(self.wall_s, 2), "cpu_s": round(self.cpu_s, 2), "images_seen": self.images_seen, "steps": self.step}


def select_device() -> "torch.device":
    """Return CUDA when present, else the CPU."""
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def autocast_context(device: "torch.device", cpu_bf16: bool):
    """Return bf16 autocast on CUDA, and on the CPU when ``cpu_bf16`` is set; otherwise a no-op."""
    import torch

    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    if cpu_bf16:
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return nullcontext()


def augment_images(
    images: "torch.Tensor",
    image_size: Sequence[int],
    generator: "torch.Generator",
    crop_scale_min: float = 0.9,
    hflip: bool = True,
) -> "torch.Tensor":
    """Augment uint8 ``[B, H0, W0, 3]`` into float ``[B, 3, H, W]`` in [0, 1] at ``image_size``.

    Each image gets a random horizontal flip and a random crop whose sides are a fraction in
    ``[crop_scale_min, 1]`` of the image's, kept inside the image and with its aspect ratio.
    The crop and the resize are one bilinear ``grid_sample``. Colours are never changed because
    colour is an attribute, and the mild scale keeps sleeves and hems in view. The model
    normalises the result with its backbone's mean and std.
    """
    import torch
    import torch.nn.functional as F

    B = images.shape[0]
    height, width = int(image_size[0]), int(image_size[1])
    batch = images.permute(0, 3, 1, 2).float().div_(255.0)  # [B, 3, H0, W0]

    scale = crop_scale_min + (1.0 - crop_scale_min) * torch.rand(B, generator=generator)
    # The crop centre may move by (1 - scale) in normalised [-1, 1] coordinates and stay inside.
    shift = (1.0 - scale)[:, None] * (2.0 * torch.rand(B, 2, generator=generator) - 1.0)  # [B, 2]
    flip = torch.ones(B)
    if hflip:
        flip = torch.where(torch.rand(B, generator=generator) < 0.5, -1.0, 1.0)

    theta = torch.zeros(B, 2, 3)
    theta[:, 0, 0] = scale * flip
    theta[:, 1, 1] = scale
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta.to(batch.device), [B, 3, height, width], align_corners=False)  # [B, H, W, 2]
    batch = F.grid_sample(batch, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return batch


def build_scheduler(optimizer: "torch.optim.Optimizer", total_steps: int, warmup_fraction: float):
    """Return a linear warm-up then cosine decay to zero over ``total_steps``, stepped once per step."""
    import torch

    warmup_steps = max(1, int(round(total_steps * warmup_fraction)))

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def build_optimizer(model: "torch.nn.Module", cfg: TrainConfig) -> "torch.optim.AdamW":
    """Return AdamW with weight decay on weight matrices and kernels only, not on biases and norms."""
    import torch

    decay, no_decay = [], []
    for parameter in model.parameters():
        if not parameter.requires_grad:
            continue
        (decay if parameter.ndim >= 2 else no_decay).append(parameter)
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr)


def load_increment_plan(params: dict[str, Any], increment: str) -> tuple[list[str], str]:
    """Return the attributes and the parent of ``increment`` from the validated increment plan.

    The plan check rejects unknown, self-referencing and later parents with a message that
    names the increment and the fix.
    """
    from mclfir.data.increments import load_plan

    entry = load_plan(params).get(increment)
    return list(entry.attributes), entry.parent


class IncrementModels(NamedTuple):
    """The models of one increment: the student, its EMA (or None) and the distillation teacher (or None)."""

    student: "MultiHeadModel"
    ema: "EmaTeacher | None"
    teacher: "MultiHeadModel | None"


def build_models(
    model_cfg: ModelConfig,
    increment: str,
    attributes: list[str],
    parent: str,
    paths: TrainPaths,
    ema_decay: float,
    strategy: Strategy = STRATEGIES[DEFAULT_STRATEGY],
    lineage: dict[str, list[str]] | None = None,
) -> IncrementModels:
    """Return the student with the increment's new head, its EMA and the distillation teacher.

    With a parent checkpoint, the student starts from the parent's student weights and the EMA
    from the parent's EMA weights. The EMA takes the new head from the student. A strategy that
    starts from scratch loads the initial model instead and adds one head per increment of
    ``lineage`` (increment -> attributes, oldest first, ending with ``increment``). The teacher is
    the EMA's model (``mclfir``) or a frozen copy of the parent's student (``lwf``), and None for the
    first increment, which has nothing to distil.
    """
    if strategy.from_scratch:
        return _build_from_scratch(model_cfg, lineage or {increment: attributes}, paths)

    model, ema = _load_parent(model_cfg, parent, paths, ema_decay, strategy.keeps_ema)
    teacher = None
    if parent != INIT_PARENT and strategy.teacher == TEACHER_PARENT:
        teacher = _frozen_copy(model)

    model.add_increment(increment, attributes)
    if ema is not None:
        ema.sync_structure(model)
    if parent != INIT_PARENT and strategy.teacher == TEACHER_EMA:
        teacher = ema.module
    return IncrementModels(model, ema, teacher)


def _load_parent(
    model_cfg: ModelConfig, parent: str, paths: TrainPaths, ema_decay: float, keeps_ema: bool
) -> tuple["MultiHeadModel", "EmaTeacher | None"]:
    """Return the parent's student and, when ``keeps_ema``, its EMA; a fresh model for a missing ``init``."""
    from mclfir.model.checkpoint import load_checkpoint
    from mclfir.model.ema import EmaTeacher
    from mclfir.model.multihead import MultiHeadModel

    parent_path = paths.parent_checkpoint(parent)
    if parent == INIT_PARENT and not parent_path.is_file():
        model = MultiHeadModel(model_cfg)
        return model, EmaTeacher(model, ema_decay) if keeps_ema else None

    if not parent_path.is_file():
        raise FileNotFoundError(
            f"Parent checkpoint not found: {parent_path}. Train increment {parent!r} first "
            f"(`mclfir train --increment {parent}`)."
        )
    payload = load_checkpoint(parent_path)
    _check_parent_complete(payload, parent, parent_path)
    model = MultiHeadModel.from_structure(model_cfg, payload["structure"])
    model.load_state_dict(payload["model"])
    if not keeps_ema:
        return model, None

    ema = EmaTeacher(model, ema_decay)
    if payload.get("ema"):
        ema.load_state_dict(payload["ema"])
    else:
        _logger.warning("Parent checkpoint %s has no EMA weights; the EMA starts from its student", parent_path)
    return model, ema


def _build_from_scratch(model_cfg: ModelConfig, lineage: dict[str, list[str]], paths: TrainPaths) -> IncrementModels:
    """Return the initial model with one fresh head per increment of ``lineage``, and no EMA or teacher."""
    model, _ = _load_parent(model_cfg, INIT_PARENT, paths, ema_decay=0.0, keeps_ema=False)
    for name, attributes in lineage.items():
        model.add_increment(name, attributes)
    return IncrementModels(model, None, None)


def _frozen_copy(model: "MultiHeadModel") -> "MultiHeadModel":
    """Return a copy of ``model`` in eval mode with gradients turned off."""
    teacher = copy.deepcopy(model)
    teacher.requires_grad_(False)
    return teacher.eval()


def _check_parent_complete(payload: dict[str, Any], parent: str, path: Path) -> None:
    """Raise when the parent checkpoint comes from a run that stopped before its last epoch."""
    epochs = (payload.get("config") or {}).get("train", {}).get("epochs")
    if epochs is not None and payload.get("epoch", epochs) < epochs:
        raise ValueError(
            f"Parent checkpoint {path} stopped after epoch {payload['epoch']} of {epochs} "
            f"(step {payload.get('step')}). Finish it with `mclfir train --increment {parent} --resume`."
        )


def build_sampler(
    increment: str,
    attributes: list[str],
    cache: "ImageCache",
    paths: TrainPaths,
    cfg: TrainConfig,
    lineage: dict[str, list[str]] | None = None,
) -> "DoubletSampler":
    """Return the doublet sampler over the train images of the attributes trained in this increment.

    These are ``attributes``, or every attribute of ``lineage`` (increment -> attributes) when
    given; each attribute's split file lies in the folder of the increment that introduced it.
    """
    from mclfir.data.doublets import DoubletSampler, read_train_pool

    lineage = lineage or {increment: attributes}
    splits_dir = resolve(paths.splits_dir)
    pools = [
        read_train_pool(splits_dir / name / f"{attribute}.parquet", cache.rows)
        for name, names_attributes in lineage.items()
        for attribute in names_attributes
    ]
    for pool in pools:
        _logger.info("Attribute %s: %d train images over %d values", pool.attribute, pool.images, len(pool.values))

    # An epoch is at most one pass over the train images (two per pair), so a subsample such as
    # data.max_images=3000 gets shorter epochs instead of revisiting the same images many times.
    one_pass = math.ceil(max(pool.images for pool in pools) / 2)
    pairs_per_epoch = min(cfg.pairs_per_epoch, one_pass)
    if pairs_per_epoch < cfg.pairs_per_epoch:
        _logger.info("Using %d pairs per attribute per epoch: one pass over the train images (train.pairs_per_epoch is %d)", pairs_per_epoch, cfg.pairs_per_epoch)
    return DoubletSampler(pools, pairs_per_epoch, cfg.batch_size, cfg.seed, cfg.mixed_batches)


class IncrementTrainer:
    """The training loop of one increment: steps, EMA updates, distillation, logging and checkpoints.

    ``ema`` is updated after every optimizer step when given. With ``distill``, the student is
    pulled towards ``teacher``, which defaults to the EMA's model. ``strategy`` selects which of
    the backbone features and the earlier heads' embeddings are distilled.
    """

    def __init__(
        self,
        increment: str,
        model: "MultiHeadModel",
        ema: "EmaTeacher | None",
        sampler: "DoubletSampler",
        cache: "ImageCache",
        model_cfg: ModelConfig,
        cfg: TrainConfig,
        paths: TrainPaths,
        distill: bool,
        config_record: dict[str, Any],
        device: "torch.device | None" = None,
        teacher: "MultiHeadModel | None" = None,
        strategy: Strategy = STRATEGIES[DEFAULT_STRATEGY],
    ) -> None:
        import torch

        self.increment = increment
        self.device = device or select_device()
        self.model = model.to(self.device)
        self.ema = ema
        self.strategy = strategy
        self.teacher = teacher if teacher is not None or not distill or ema is None else ema.module
        if distill and self.teacher is None:
            raise ValueError(f"Distillation of {increment} needs a teacher: pass an EMA or a teacher model.")
        self.distill = distill
        # bf16 convolutions (cuDNN, and oneDNN on the CPU) run fastest on channels-last tensors.
        self.channels_last = self.device.type == "cuda" or cfg.cpu_bf16
        for module in self._modules_to_place():
            module.to(self.device)
            if self.channels_last:
                module.to(memory_format=torch.channels_last)
        self.sampler = sampler
        self.cache = cache
        self.model_cfg = model_cfg
        self.cfg = cfg
        self.paths = paths
        self.config_record = config_record
        self.image_size = list(model.image_size)

        self.new_attributes = list(model.increments[increment])
        # Attributes of the sampler: the new ones, or every attribute seen so far when training from scratch.
        self.trained_attributes = list(sampler.attributes)
        self.old_attributes = [name for name in model.attributes if name not in self.new_attributes]
        self.total_steps = cfg.epochs * len(sampler)
        self.optimizer = build_optimizer(self.model, cfg)
        self.scheduler = build_scheduler(self.optimizer, self.total_steps, cfg.warmup_fraction)
        self.progress = TrainProgress()

    def _modules_to_place(self) -> list["torch.nn.Module"]:
        """Return the student, the EMA's model and the teacher, each once."""
        modules = [self.model]
        for module in (self.ema.module if self.ema is not None else None, self.teacher):
            if module is not None and all(module is not placed for placed in modules):
                modules.append(module)
        return modules

    def prepare_batch(self, batch: "DoubletBatch", step: int) -> tuple["torch.Tensor", "torch.Generator"]:
        """Read and augment the 2P images of a batch, laid out as ``[anchors; positives]``."""
        import torch

        generator = torch.Generator().manual_seed(self.cfg.seed * _STEP_SEED_STRIDE + step)
        rows = np.concatenate([batch.anchor_rows, batch.positive_rows])
        images = self.cache.read_rows(rows)  # [2P, H0, W0, 3] uint8
        inputs = augment_images(images, self.image_size, generator, self.cfg.crop_scale_min, self.cfg.hflip)
        inputs = inputs.to(self.device, non_blocking=True)
        if self.channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        return inputs, generator

    def compute_losses(self, inputs: "torch.Tensor", batch: "DoubletBatch", generator: "torch.Generator") -> dict[str, "torch.Tensor"]:
        """Return the loss terms of one batch; ``loss`` is the total that is back-propagated."""
        import torch

        from mclfir.losses import info_nce_loss

        P = len(batch)
        attribute_ids = torch.from_numpy(batch.attribute_ids).to(self.device)
        value_ids = torch.from_numpy(batch.value_ids).to(self.device)
        attributes = [self.sampler.attributes[i] for i in batch.attribute_ids]

        with autocast_context(self.device, self.cfg.cpu_bf16):
            features = self.model.features(inputs)  # [2P, C, h, w]
            embeddings = self.model.embed(features, attributes + attributes)  # [2P, D]
        losses = {"nce": info_nce_loss(embeddings[:P], embeddings[P:], attribute_ids, value_ids, self.cfg.temperature)}

        if self.distill:
            losses.update(self._distillation_losses(inputs, features, generator))
            distill_total = sum(value for name, value in losses.items() if name.startswith("distill_"))
            losses["loss"] = losses["nce"] + self.cfg.distill_weight * distill_total
        else:
            losses["loss"] = losses["nce"]
        return losses

    def _distillation_losses(self, inputs, features, generator) -> dict[str, "torch.Tensor"]:
        """Pull the student's features and its old heads' embeddings towards the teacher's, as the strategy selects."""
        import torch

        from mclfir.losses import embedding_distillation_loss, feature_distillation_loss

        with torch.no_grad(), autocast_context(self.device, self.cfg.cpu_bf16):
            teacher_features = self.teacher.features(inputs)
        losses = {}
        if self.strategy.distill_features:
            losses["distill_features"] = feature_distillation_loss(features, teacher_features)

        if self.strategy.distill_heads and self.old_attributes:
            # One old attribute per image, drawn at random, keeps the cost flat as heads accumulate.
            picks = torch.randint(len(self.old_attributes), (inputs.shape[0],), generator=generator)
            old = [self.old_attributes[i] for i in picks.tolist()]
            with autocast_context(self.device, self.cfg.cpu_bf16):
                student_old = self.model.embed(features, old)  # [2P, D]
            with torch.no_grad(), autocast_context(self.device, self.cfg.cpu_bf16):
                teacher_old = self.teacher.embed(teacher_features, old)
            losses["distill_heads"] = embedding_distillation_loss(student_old, teacher_old)
        return losses

    def train_step(self, batch: "DoubletBatch") -> dict[str, float]:
        """Run one optimizer step and the EMA update; return the loss terms as floats."""
        inputs, generator = self.prepare_batch(batch, self.progress.step)
        self.model.train()
        losses = self.compute_losses(inputs, batch, generator)

        self.optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        self.optimizer.step()
        self.scheduler.step()
        self.progress.step += 1
        if self.ema is not None:
            self.ema.update(self.model)

        self.progress.images_seen += 2 * len(batch)
        return {name: float(value.detach()) for name, value in losses.items()}

    def fit(self, max_steps: int | None = None) -> bool:
        """Train until the last epoch ends or ``max_steps`` optimizer steps are done in total.

        Returns True when every epoch is done. ``last.pt`` is written every ``checkpoint_every``
        steps, at each epoch end and when ``max_steps`` stops the run.
        """
        from tqdm import tqdm

        batches_per_epoch = len(self.sampler)
        bar = tqdm(total=self.total_steps, initial=self.progress.step, desc=f"train {self.increment}", unit="step")
        started = time.perf_counter()
        cpu_started = time.process_time()
        wall_before = self.progress.wall_s
        cpu_before = self.progress.cpu_s
        stopped = False

        while self.progress.epoch < self.cfg.epochs and not stopped:
            if max_steps is not None and self.progress.step >= max_steps:
                break
            epoch = self.progress.epoch
            batches = self.sampler.epoch(epoch)
            first = self.progress.step - epoch * batches_per_epoch
            for batch in batches[first:]:
                terms = self.train_step(batch)
                self._accumulate(terms)
                self.progress.wall_s = wall_before + time.perf_counter() - started
                self.progress.cpu_s = cpu_before + time.process_time() - cpu_started
                self._report(bar, terms)

                if self.progress.step % self.cfg.checkpoint_every == 0:
                    self.save(self.paths.model_dir(self.increment) / LAST_FILE)
                if max_steps is not None and self.progress.step >= max_steps:
                    stopped = True
                    break

            if not stopped or self.progress.step == (epoch + 1) * batches_per_epoch:
                self._close_epoch(epoch)
            self.save(self.paths.model_dir(self.increment) / LAST_FILE)

        bar.close()
        return self.progress.epoch >= self.cfg.epochs

    def _accumulate(self, terms: dict[str, float]) -> None:
        for name, value in terms.items():
            self.progress.running[name] = self.progress.running.get(name, 0.0) + value
        self.progress.running_steps += 1

    def _close_epoch(self, epoch: int) -> None:
        steps = max(1, self.progress.running_steps)
        means = {name: total / steps for name, total in self.progress.running.items()}
        self.progress.epoch_losses.append({"epoch": epoch, **means})
        _logger.info("Epoch %d of %s done: %s", epoch, self.increment, ", ".join(f"{k} {v:.4f}" for k, v in means.items()))
        self.progress.epoch = epoch + 1
        self.progress.running = {}
        self.progress.running_steps = 0

    def _report(self, bar, terms: dict[str, float]) -> None:
        progress = self.progress
        images_per_s = progress.images_seen / progress.wall_s if progress.wall_s > 0 else 0.0
        bar.update(1)
        bar.set_postfix(loss=f"{terms['loss']:.3f}", img_s=f"{images_per_s:.0f}")
        if progress.step % self.cfg.log_every == 0:
            remaining = self.total_steps - progress.step
            eta_s = remaining * progress.wall_s / max(1, progress.step)
            _logger.info(
                "%s step %d/%d: loss %.4f (nce %.4f), lr %.2e, %.0f images/s, ETA %.0f s",
                self.increment, progress.step, self.total_steps, terms["loss"], terms["nce"],
                self.scheduler.get_last_lr()[0], images_per_s, eta_s,
            )

    def state_payload(self) -> dict[str, Any]:
        """Return the checkpoint payload: plain data and tensors only, loadable with ``weights_only=True``."""
        from mclfir.model.checkpoint import capture_rng_state

        progress = self.progress
        return {
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "step": progress.step,
            "epoch": progress.epoch,
            "rng": {
                **capture_rng_state(),
                # The sampler draws an epoch's batches from (seed, epoch), so its position is its whole state.
                "sampler": {"seed": self.sampler.seed, "epoch": progress.epoch, "batches_per_epoch": len(self.sampler)},
            },
            "config": self.config_record,
            "structure": self.model.structure(),
            "increment": self.increment,
            "cost": progress.cost(),
            "history": {
                "epoch_losses": progress.epoch_losses,
                "running": progress.running,
                "running_steps": progress.running_steps,
            },
        }

    def save(self, path: Path) -> None:
        """Write the checkpoint payload to ``path`` atomically."""
        from mclfir.model.checkpoint import save_checkpoint

        save_checkpoint(path, self.state_payload())

    def load(self, path: Path) -> None:
        """Restore a run from a checkpoint written by :meth:`save`."""
        from mclfir.model.checkpoint import load_checkpoint, restore_rng_state

        payload = load_checkpoint(path)
        if payload.get("increment") != self.increment:
            raise ValueError(
                f"Checkpoint {path} belongs to increment {payload.get('increment')!r}, not {self.increment!r}; "
                "run without --resume to start this increment afresh."
            )
        differences = config_differences(payload.get("config"), self.config_record)
        if differences:
            raise ValueError(
                f"Cannot resume from {path}: it was written with other settings or inputs ({', '.join(differences[:6])}"
                f"{', ...' if len(differences) > 6 else ''}). Resume with the same settings, or run without --resume to start afresh."
            )
        self.model.load_state_dict(payload["model"])
        if self.ema is not None:
            self.ema.load_state_dict(payload["ema"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scheduler.load_state_dict(payload["scheduler"])

        history = payload["history"]
        cost = payload["cost"]
        self.progress = TrainProgress(
            step=int(payload["step"]),
            epoch=int(payload["epoch"]),
            wall_s=float(cost["wall_s"]),
            cpu_s=float(cost.get("cpu_s", 0.0)),
            images_seen=int(cost["images_seen"]),
            epoch_losses=list(history["epoch_losses"]),
            running=dict(history["running"]),
            running_steps=int(history["running_steps"]),
        )
        self._check_sampler(payload["rng"]["sampler"], path)
        restore_rng_state(payload["rng"])
        _logger.info("Resumed %s from %s at step %d (epoch %d)", self.increment, path, self.progress.step, self.progress.epoch)

    def _check_sampler(self, saved: dict[str, Any], path: Path) -> None:
        """Raise when the sampler would plan other batches than the run being resumed."""
        current = {"seed": self.sampler.seed, "batches_per_epoch": len(self.sampler)}
        mismatched = {key: (saved[key], value) for key, value in current.items() if saved[key] != value}
        if mismatched:
            raise ValueError(
                f"Cannot resume from {path}: the doublet sampler changed since it was written "
                f"(saved, now): {mismatched}. Resume with the same train parameters, or run without --resume."
            )


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch so that model initialisation is reproducible."""
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass(frozen=True)
class TrainResult:
    """Outcome of a training run: the files written, whether every epoch ran, cost and losses."""

    increment: str
    checkpoint: Path
    metrics: Path
    completed: bool
    cost: dict[str, float | int]
    epoch_losses: list[dict[str, float]]


def train_increment(
    increment: str,
    params: dict[str, Any] | None = None,
    paths: TrainPaths = TrainPaths(),
    resume: bool = False,
    max_steps: int | None = None,
    device: "torch.device | None" = None,
    auto_resume: bool = False,
) -> TrainResult:
    """Train one increment end to end with the strategy of ``train.strategy``; write its checkpoints and metrics.

    ``max_steps`` stops after that many optimizer steps in total (the schedule still spans
    every epoch, so a later ``resume`` continues the same run). A run that stops early writes
    ``last.pt`` only; ``checkpoint.pt`` is written when the last epoch is done. ``auto_resume``
    continues from ``last.pt`` only when it contains an unfinished run with the same configuration,
    and otherwise starts afresh.
    """
    import torch

    from mclfir.data.image_cache import ImageCache
    from mclfir.data.increments import load_plan

    params = load_params() if params is None else params
    model_cfg = load_model_config(params)
    cfg = load_train_config(params)
    strategy = get_strategy(cfg.strategy)
    attributes, parent = load_increment_plan(params, increment)
    lineage = load_plan(params).lineage_attributes(increment) if strategy.from_scratch else {increment: attributes}
    torch.set_num_threads(cfg.num_threads or os.cpu_count() or 1)
    seed_everything(cfg.seed)

    models = build_models(model_cfg, increment, attributes, parent, paths, cfg.ema_decay, strategy, lineage)
    cache = ImageCache(paths.cache_dir)
    sampler = build_sampler(increment, attributes, cache, paths, cfg, lineage)
    start = INIT_PARENT if strategy.from_scratch else parent
    config_record = {
        "model": to_dict(model_cfg),
        "train": to_dict(cfg),
        "increment": {"name": increment, "attributes": attributes, "parent": start},
        "inputs": run_inputs(paths, start, lineage),
    }
    trainer = IncrementTrainer(
        increment, models.student, models.ema, sampler, cache, model_cfg, cfg, paths,
        distill=models.teacher is not None, config_record=config_record, device=device,
        teacher=models.teacher, strategy=strategy,
    )

    last_path = paths.model_dir(increment) / LAST_FILE
    if resume:
        if not last_path.is_file():
            raise FileNotFoundError(f"Cannot resume: {last_path} not found. Run without --resume to start {increment}.")
        trainer.load(last_path)
    elif auto_resume and _resumable(last_path, config_record, cfg.epochs):
        trainer.load(last_path)
    _logger.info(
        "Training %s (%s) with strategy %s from %s on %s: %d epochs x %d steps of %d pairs, image size %s",
        increment, ", ".join(trainer.trained_attributes), strategy.name, start, trainer.device,
        cfg.epochs, len(sampler), cfg.batch_size, trainer.image_size,
    )

    completed = trainer.fit(max_steps)
    # Only a finished run becomes the increment's checkpoint, the one later increments start from.
    checkpoint_path = paths.model_dir(increment) / (CHECKPOINT_FILE if completed else LAST_FILE)
    trainer.save(checkpoint_path)
    metrics_path = write_train_metrics(trainer, start, completed)
    return TrainResult(increment, checkpoint_path, metrics_path, completed, trainer.progress.cost(), trainer.progress.epoch_losses)


def run_inputs(paths: TrainPaths, start: str, lineage: dict[str, list[str]]) -> dict[str, Any]:
    """Return what a run reads besides its parameters: the starting checkpoint's and split files' sha256, and the lineage.

    A run resumes only with the same inputs, so a parent that was retrained, or new splits, start it afresh.
    """
    from mclfir.data.catalog import hash_file

    start_path = paths.parent_checkpoint(start)
    split_files = [resolve(paths.splits_dir) / name / f"{attribute}.parquet" for name, names in lineage.items() for attribute in names]
    return {
        "start_sha256": hash_file(start_path) if start_path.is_file() else None,
        "splits_sha256": {path.relative_to(resolve(paths.splits_dir)).as_posix(): hash_file(path) for path in split_files},
        "lineage": lineage,
    }


def config_differences(saved: dict[str, Any] | None, current: dict[str, Any], prefix: str = "") -> list[str]:
    """Return the dotted keys whose values differ between a saved run's configuration and the current one."""
    if not isinstance(saved, dict) or not isinstance(current, dict):
        return [prefix or "config"] if saved != current else []
    differences = []
    for key in sorted(set(saved) | set(current), key=str):
        name = f"{prefix}.{key}" if prefix else str(key)
        if key not in saved or key not in current:
            differences.append(name)
        else:
            differences += config_differences(saved[key], current[key], name)
    return differences


def _resumable(last_path: Path, config_record: dict[str, Any], epochs: int) -> bool:
    """Return whether ``last_path`` contains an unfinished run of exactly this configuration."""
    from mclfir.model.checkpoint import load_checkpoint

    if not last_path.is_file():
        return False
    payload = load_checkpoint(last_path)
    if payload.get("config") != config_record:
        _logger.info("Not resuming from %s: it was written with another configuration; starting afresh", last_path)
        return False
    if int(payload.get("epoch", 0)) >= epochs:
        _logger.info("Not resuming from %s: its run already finished; starting afresh", last_path)
        return False
    return True


def write_train_metrics(trainer: IncrementTrainer, parent: str, completed: bool) -> Path:
    """Write ``metrics/train/<increment>.json``: per-epoch losses, cost and the run's shape.

    ``parent`` is the model the increment started from: its parent, or ``init`` for a strategy
    that starts from scratch.
    """
    path = trainer.paths.metrics_file(trainer.increment)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "increment": trainer.increment,
        "parent": parent,
        "attributes": trainer.new_attributes,
        "trained_attributes": trainer.trained_attributes,
        "strategy": trainer.strategy.name,
        "completed": completed,
        "device": trainer.device.type,
        "epochs": trainer.progress.epoch_losses,
        "cost": trainer.progress.cost(),
    }
    path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return path


def with_strategy(params: dict[str, Any], strategy: str | None) -> dict[str, Any]:
    """Return ``params`` with ``train.strategy`` set to ``strategy``; unchanged when it is None."""
    if strategy is None:
        return params
    return {**params, "train": {**params.get("train", {}), "strategy": strategy}}


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``mclfir train``."""
    defaults = TrainPaths()
    parser.add_argument("--increment", required=True, help="increment to train, as named in params.yaml")
    parser.add_argument("--resume", action="store_true", help="continue from models/<increment>/last.pt")
    parser.add_argument(
        "--auto-resume", action="store_true",
        help="continue from last.pt when it contains an unfinished run with the same configuration, else start afresh",
    )
    parser.add_argument("--strategy", choices=list(STRATEGIES), help="training strategy (default: train.strategy)")
    parser.add_argument("--max-steps", type=positive_int, default=None, help="stop after this many optimizer steps in total; the run can be resumed")
    parser.add_argument("--cache", default=defaults.cache_dir, help=f"image cache folder (default {defaults.cache_dir})")
    parser.add_argument("--splits", default=defaults.splits_dir, help=f"split files folder (default {defaults.splits_dir})")
    parser.add_argument("--models", default=defaults.models_dir, help=f"checkpoint folder (default {defaults.models_dir})")
    parser.add_argument("--metrics", default=defaults.metrics_dir, help=f"training metrics folder (default {defaults.metrics_dir})")
    parser.add_argument("--parent-run-file", help="file holding the MLflow parent run id (default: the pipeline's)")


def run(args: argparse.Namespace) -> int:
    """Train the increment inside its MLflow run and print where its checkpoint and metrics went."""
    from mclfir.stage_runs import log_training_result, train_run

    paths = TrainPaths(cache_dir=args.cache, splits_dir=args.splits, models_dir=args.models, metrics_dir=args.metrics)
    params = with_strategy(load_params(), args.strategy)
    attributes, parent = load_increment_plan(params, args.increment)
    start = INIT_PARENT if get_strategy(load_train_config(params).strategy).from_scratch else parent
    with train_run(args.increment, attributes, start, params, args.splits, parent_file=args.parent_run_file):
        result = train_increment(
            args.increment, params=params, paths=paths, resume=args.resume, max_steps=args.max_steps, auto_resume=args.auto_resume,
        )
        log_training_result(result.epoch_losses, result.cost)
    state = "done" if result.completed else "stopped early (resume with --resume)"
    print(
        f"Training of {result.increment} {state}: {result.cost['steps']} steps, {result.cost['images_seen']} images, "
        f"{result.cost['wall_s']} s; checkpoint {result.checkpoint}, metrics {result.metrics}"
    )
    return 0
