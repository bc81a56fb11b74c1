"""Initialise the model that the first increment starts from: the ``init`` parent.

The ``init`` DVC stage writes ``models/init/checkpoint.pt``: the backbone (timm's pretrained
weights when ``model.pretrained`` or ``model.weights_path`` requests them, else a seeded random
initialisation) with no heads yet, and its EMA teacher. Training of an increment whose parent is
``init`` starts from this file, so the starting weights are versioned by DVC like every other
increment's. Without the file, training builds the same model in-process from ``train.seed``.
"""

import argparse
import logging
from pathlib import Path
from typing import Any

from mclfir.config import load_model_config, load_params, load_train_config, to_dict
from mclfir.paths import resolve

_logger = logging.getLogger(__name__)

DEFAULT_OUT = "models/init/checkpoint.pt"


def init_model(out: Path, params: dict[str, Any] | None = None) -> Path:
    """Build the head-less model from ``params`` and write it as a checkpoint to ``out``."""
    from mclfir.model.checkpoint import save_checkpoint
    from mclfir.model.ema import EmaTeacher
    from mclfir.model.multihead import MultiHeadModel
    from mclfir.train import INIT_PARENT, seed_everything

    params = load_params() if params is None else params
    model_cfg = load_model_config(params)
    train_cfg = load_train_config(params)

    seed_everything(train_cfg.seed)
    model = MultiHeadModel(model_cfg)
    teacher = EmaTeacher(model, train_cfg.ema_decay)

    payload = {
        "model": model.state_dict(),
        "ema": teacher.state_dict(),
        "structure": model.structure(),
        "config": {"model": to_dict(model_cfg), "seed": train_cfg.seed},
        "increment": INIT_PARENT,
        "step": 0,
        "epoch": 0,
        "cost": {"wall_s": 0.0, "images_seen": 0, "steps": 0},
    }
    path = save_checkpoint(out, payload)
    _logger.info("Wrote the initial %s model (seed %d) to %s", model_cfg.backbone, train_cfg.seed, path)
    return path


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``mclfir init``."""
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"checkpoint to write (default {DEFAULT_OUT})")


def run(args: argparse.Namespace) -> int:
    """Write the initial checkpoint."""
    init_model(resolve(args.out))
    return 0
