"""Multi-head model: one shared backbone and one attribute head per increment.

Each attribute is served by the head of the increment that introduced it. Adding an increment
adds one head and leaves the backbone and the earlier heads as they are (same module objects,
same tensors), so a continual learner can keep training the backbone while old heads stay
available for distillation.
"""

import logging
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mclfir.config import ModelConfig
from mclfir.model.backbone import build_backbone
from mclfir.model.head import AttributeHead

_logger = logging.getLogger(__name__)


class MultiHeadModel(nn.Module):
    """Backbone plus one :class:`AttributeHead` per increment: ``images [B, 3, H, W]`` -> ``[B, D]``.

    Images enter as RGB, either uint8 in [0, 255] or float in [0, 1], at any size: ``features``
    resizes them to ``image_size`` and normalises them with the backbone's mean and std, so callers
    must not normalise them again.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.backbone, self.feature_channels = build_backbone(cfg)
        self.image_size: tuple[int, int] = tuple(self.backbone.image_size)
        self.heads = nn.ModuleDict()

        # Non-persistent: the normalisation is fixed by the backbone config, not learned or saved.
        self.register_buffer("pixel_mean", torch.tensor(self.backbone.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(self.backbone.std).view(1, 3, 1, 1), persistent=False)

        self._increments: dict[str, list[str]] = {}
        self._head_of: dict[str, str] = {}
        self._local_index: dict[str, int] = {}

    @property
    def increments(self) -> dict[str, list[str]]:
        """Increment name -> attributes it introduced, in the order the increments were added."""
        return {name: list(attributes) for name, attributes in self._increments.items()}

    @property
    def attributes(self) -> list[str]:
        """Every attribute served, in the order the increments introduced them."""
        return list(self._head_of)

    def head_for(self, attribute: str) -> str:
        """Return the name of the increment (and head) that serves ``attribute``."""
        try:
            return self._head_of[attribute]
        except KeyError:
            raise KeyError(
                f"Attribute {attribute!r} is not served by any head; served attributes: {self.attributes}. "
                "Add it with add_increment first."
            ) from None

    def add_increment(self, name: str, attributes: Sequence[str]) -> AttributeHead:
        """Add the head of increment ``name`` serving ``attributes``, and return it.

        The backbone and the earlier heads are kept as they are. Raises ValueError when the
        increment exists, ``attributes`` is empty or repeats a name, or an attribute is already served.
        """
        attributes = list(attributes)
        self._check_new_increment(name, attributes)

        head = AttributeHead(self.feature_channels, attributes, self.cfg.embed_dim, self.cfg.attention_dim)
        reference = next(self.backbone.parameters(), None)
        if reference is not None:
            head = head.to(device=reference.device, dtype=reference.dtype)
        self.heads[name] = head

        self._increments[name] = attributes
        for local_index, attribute in enumerate(attributes):
            self._head_of[attribute] = name
            self._local_index[attribute] = local_index

        _logger.info("Added head %r for attributes %s", name, attributes)
        return head

    def _check_new_increment(self, name: str, attributes: list[str]) -> None:
        if name in self._increments:
            raise ValueError(f"Increment {name!r} already has a head; use a new increment name.")
        if not attributes:
            raise ValueError(f"Increment {name!r} has no attributes; give it at least one.")
        if len(set(attributes)) != len(attributes):
            raise ValueError(f"Increment {name!r} lists an attribute twice: {attributes}.")
        served = [attribute for attribute in attributes if attribute in self._head_of]
        if served:
            owners = {attribute: self._head_of[attribute] for attribute in served}
            raise ValueError(
                f"Increment {name!r} introduces attributes that are already served: {owners} "
                "(attribute -> increment). Each attribute belongs to the increment that introduced it."
            )

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """Resize RGB ``images [B, 3, H0, W0]`` (uint8 or float in [0, 1]) to ``image_size`` and normalise them."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"Expected images of shape [B, 3, H, W], got {list(images.shape)}.")
        if images.dtype == torch.uint8:
            images = images.float().div_(255.0)

        if tuple(images.shape[-2:]) != self.image_size:
            images = F.interpolate(images, size=self.image_size, mode="bilinear", align_corners=False, antialias=False)
        return (images - self.pixel_mean.to(images.dtype)) / self.pixel_std.to(images.dtype)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Map RGB ``images [B, 3, H, W]`` to the backbone feature map ``[B, C, h, w]``."""
        return self.backbone(self.preprocess(images))

    def embed(self, features: torch.Tensor, attributes: Sequence[str]) -> torch.Tensor:
        """Embed each row of ``features [B, C, h, w]`` for its attribute: ``-> [B, D]``, L2-normalised.

        Rows are grouped by the head that serves their attribute, each head runs once on its group,
        and the embeddings are put back in the row order of ``attributes``.
        """
        self._check_batch(features, attributes)
        rows_by_head = self._group_rows(attributes)

        if len(rows_by_head) == 1:
            head_name = next(iter(rows_by_head))
            return self._run_head(features, head_name, attributes)

        group_rows = []
        group_embeddings = []
        for head_name, rows in rows_by_head.items():
            row_index = torch.tensor(rows, dtype=torch.long, device=features.device)
            group_attributes = [attributes[row] for row in rows]
            group_embeddings.append(self._run_head(features.index_select(0, row_index), head_name, group_attributes))
            group_rows.append(row_index)

        embeddings = torch.cat(group_embeddings)  # [B, D], rows grouped by head
        order = torch.cat(group_rows)  # [B]: original row of each grouped row
        return embeddings[torch.argsort(order)]

    def head_embed(self, features: torch.Tensor, increment: str, attributes: Sequence[str]) -> torch.Tensor:
        """Embed ``features [B, C, h, w]`` with the head of ``increment`` only: ``-> [B, D]``.

        Every attribute must be one that ``increment`` introduced.
        """
        self._check_batch(features, attributes)
        if increment not in self._increments:
            raise KeyError(f"No head for increment {increment!r}; heads: {list(self._increments)}.")
        foreign = sorted({attribute for attribute in attributes if self._head_of.get(attribute) != increment})
        if foreign:
            raise ValueError(
                f"Head {increment!r} serves {self._increments[increment]}, not {foreign}; "
                "use embed() to route each attribute to its own head."
            )
        return self._run_head(features, increment, attributes)

    def forward(self, images: torch.Tensor, attributes: Sequence[str]) -> torch.Tensor:
        """Map ``images [B, 3, H, W]`` and one attribute name per row to L2-normalised ``[B, D]``."""
        return self.embed(self.features(images), attributes)

    def _run_head(self, features: torch.Tensor, head_name: str, attributes: Sequence[str]) -> torch.Tensor:
        local_index = torch.tensor(
            [self._local_index[attribute] for attribute in attributes], dtype=torch.long, device=features.device
        )
        return self.heads[head_name](features, local_index)

    def _group_rows(self, attributes: Sequence[str]) -> dict[str, list[int]]:
        rows_by_head: dict[str, list[int]] = {}
        for row, attribute in enumerate(attributes):
            rows_by_head.setdefault(self.head_for(attribute), []).append(row)
        return rows_by_head

    @staticmethod
    def _check_batch(features: torch.Tensor, attributes: Sequence[str]) -> None:
        if isinstance(attributes, str):
            raise TypeError(f"attributes must be a sequence with one attribute name per row, not the string {attributes!r}.")
        if len(attributes) != features.shape[0]:
            raise ValueError(f"Got {len(attributes)} attribute names for a batch of {features.shape[0]} rows.")
        if len(attributes) == 0:
            raise ValueError("Cannot embed an empty batch.")

    def structure(self) -> dict[str, Any]:
        """Return the heads as plain data: ``{"increments": {name: [attributes]}, "attributes": [...]}``."""
        return {"increments": self.increments, "attributes": self.attributes}

    @classmethod
    def from_structure(cls, cfg: ModelConfig, structure: dict[str, Any]) -> "MultiHeadModel":
        """Build a model with the heads listed in ``structure`` (as returned by :meth:`structure`)."""
        model = cls(cfg)
        for name, attributes in structure["increments"].items():
            model.add_increment(name, attributes)

        expected = structure.get("attributes")
        if expected is not None and list(expected) != model.attributes:
            raise ValueError(
                f"Invalid model structure: the increments serve {model.attributes}, "
                f"but the structure lists the attributes {list(expected)}."
            )
        return model
