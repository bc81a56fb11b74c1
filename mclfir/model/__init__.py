"""Model package: timm backbone, attribute heads, multi-head model, EMA teacher and checkpoints."""

from mclfir.model.backbone import FeatureMapBackbone, build_backbone
from mclfir.model.checkpoint import (
    capture_rng_state,
    load_checkpoint,
    load_model,
    restore_rng_state,
    save_checkpoint,
)
from mclfir.model.ema import EmaTeacher
from mclfir.model.head import AttributeHead
from mclfir.model.multihead import MultiHeadModel

__all__ = [
    "AttributeHead",
    "EmaTeacher",
    "FeatureMapBackbone",
    "MultiHeadModel",
    "build_backbone",
    "capture_rng_state",
    "load_checkpoint",
    "load_model",
    "restore_rng_state",
    "save_checkpoint",
]
