"""Backbone: any timm model cut after one stage, used as a feature-map extractor.

The head attends over the positions of the feature map, so the map must keep some spatial
resolution: the real photos are 80x60 px, where a stride-32 map is only 3x2. For ResNets
``feature_index: 3`` stops after stage 3 (stride 16) and timm drops the later stages.

NOTE: timm 1.0.31's EfficientNet and MobileNetV3 feature wrappers keep and run every block
whatever the out index, so with those backbones the later stages cost time and go unused.
"""

import logging
import os
from pathlib import Path

import timm
import torch
from timm.models import load_state_dict
from torch import nn

from mclfir.config import ModelConfig
from mclfir.paths import resolve

_logger = logging.getLogger(__name__)


class FeatureMapBackbone(nn.Module):
    """A timm ``features_only`` model that returns its one feature map: ``[B, 3, H, W] -> [B, C, h, w]``.

    Attributes: ``out_channels`` (C), ``reduction`` (stride of the map), ``image_size`` ([H, W] the
    network expects), ``mean`` and ``std`` (per-channel input normalisation of the backbone).
    """

    def __init__(self, body: nn.Module, image_size: tuple[int, int], mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        self.body = body
        self.out_channels = int(body.feature_info.channels()[-1])
        self.reduction = int(body.feature_info.reduction()[-1])
        self.image_size = image_size
        self.mean = tuple(float(value) for value in mean)
        self.std = tuple(float(value) for value in std)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Map normalised images ``[B, 3, H, W]`` to the feature map ``[B, C, h, w]``."""
        return self.body(images)[-1]


def build_backbone(cfg: ModelConfig) -> tuple[FeatureMapBackbone, int]:
    """Create the backbone named by ``cfg`` and return it with its channel count C.

    Weights: ``cfg.weights_path`` (a local file) wins over ``cfg.pretrained`` (timm's hub
    weights); with neither, the backbone starts from random initialisation.
    """
    weights_file = _resolve_weights_file(cfg.weights_path)
    body = _create_body(cfg, weights_file)
    if weights_file is not None:
        _check_weights_loaded(body, weights_file, cfg.backbone)

    data_config = timm.data.resolve_model_data_config(body)
    image_size = tuple(cfg.image_size) if cfg.image_size is not None else tuple(data_config["input_size"][1:])
    backbone = FeatureMapBackbone(body, image_size, data_config["mean"], data_config["std"])

    _logger.info(
        "Backbone %s cut at feature index %d: %d channels, stride %d, input %dx%d (HxW), weights from %s",
        cfg.backbone,
        cfg.feature_index,
        backbone.out_channels,
        backbone.reduction,
        image_size[0],
        image_size[1],
        weights_file or ("timm hub" if cfg.pretrained else "random initialisation"),
    )
    return backbone, backbone.out_channels


def _resolve_weights_file(weights_path: str | None) -> Path | None:
    if not weights_path:
        return None
    weights_file = resolve(weights_path)
    if not weights_file.is_file():
        raise FileNotFoundError(
            f"Backbone weights file not found: {weights_file} (model.weights_path = {weights_path!r}). "
            "Point model.weights_path at a timm weights file, or set it to null."
        )
    return weights_file


def _create_body(cfg: ModelConfig, weights_file: Path | None) -> nn.Module:
    options = dict(features_only=True, out_indices=(cfg.feature_index,))
    if weights_file is not None:
        options.update(pretrained=True, pretrained_cfg_overlay=dict(file=str(weights_file)))
    else:
        options.update(pretrained=cfg.pretrained)

    try:
        return timm.create_model(cfg.backbone, **options)
    except RuntimeError as error:
        if "Unknown model" in str(error):
            raise ValueError(
                f"Unknown timm model in model.backbone: {cfg.backbone!r}. List the names with timm.list_models()."
            ) from error
        if weights_file is not None:
            raise RuntimeError(
                f"Failed to load backbone weights from {weights_file} into {cfg.backbone}: {error}. "
                "Check that the file contains weights of that timm model."
            ) from error
        raise
    except (IndexError, AssertionError) as error:
        raise ValueError(
            f"Invalid model.feature_index {cfg.feature_index} for {cfg.backbone}: {error}. "
            "Use an index below the number of feature levels (timm feature_info)."
        ) from error
    except OSError as error:
        # huggingface_hub raises subclasses of OSError (LocalEntryNotFoundError and the HTTP errors)
        # when the hub is offline or unreachable.
        offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
        hint = "HF_HUB_OFFLINE is set, so the hub is not contacted. " if offline else ""
        raise RuntimeError(
            f"Failed to download pretrained weights for {cfg.backbone} from the Hugging Face hub: {error}. "
            f"{hint}Set model.weights_path to a local weights file, allow the hub (unset HF_HUB_OFFLINE, "
            "with network access), or set model.pretrained to false."
        ) from error


def _check_weights_loaded(body: nn.Module, weights_file: Path, backbone_name: str) -> None:
    """Raise unless every backbone tensor has a counterpart of the same shape in the weights file.

    timm loads features-only weights with ``strict=False`` and only logs missing keys, so a file of
    another architecture or naming would otherwise leave the backbone silently at random init.
    timm's ``features_only`` wrappers may join nested names with ``_`` (``blocks_0`` for
    ``blocks.0``), so names are compared with ``_`` and ``.`` treated as equal.
    """
    file_state = load_state_dict(str(weights_file))
    file_shapes = {_normalise_key(key): tuple(value.shape) for key, value in file_state.items()}

    missing = []
    for key, value in body.state_dict().items():
        if file_shapes.get(_normalise_key(key)) != tuple(value.shape):
            missing.append(key)
    if missing:
        first_missing = ", ".join(missing[:5])
        raise RuntimeError(
            f"Invalid backbone weights file {weights_file}: {len(missing)} of {len(body.state_dict())} tensors of "
            f"{backbone_name} are missing or have another shape (first: {first_missing}). "
            "Use a weights file saved from the same timm model (model.state_dict())."
        )


def _normalise_key(key: str) -> str:
    return key.replace("_", ".")
