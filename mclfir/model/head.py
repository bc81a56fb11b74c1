"""Attribute head: attribute-aware spatial and channel attention over a feature map.

One head serves the attributes of one increment. For each row it looks up a learned embedding
of the row's attribute and:

1. spatial attention: projects the feature map and the attribute embedding to a shared width,
   compares them by a scaled dot product at every position and takes the softmax over the
   h*w positions, then pools the feature map with these weights;
2. channel attention: gates the pooled feature per channel with a sigmoid computed from the
   pooled feature and the attribute embedding;
3. projects the gated feature to ``embed_dim`` and L2-normalises it (in float32, also under autocast).
"""

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class AttributeHead(nn.Module):
    """Attribute-specific embedding: ``features [B, C, h, w]`` and ``attribute_index [B]`` -> ``[B, D]``.

    ``attribute_index`` indexes ``attributes`` (the head's own attributes, in order).
    """

    def __init__(self, in_channels: int, attributes: Sequence[str], embed_dim: int, attention_dim: int = 256):
        super().__init__()
        if not attributes:
            raise ValueError("AttributeHead needs at least one attribute.")
        self.attributes = list(attributes)
        self.in_channels = in_channels
        self.embed_dim = embed_dim
        self.attention_dim = attention_dim

        self.attribute_embedding = nn.Embedding(len(self.attributes), attention_dim)

        self.spatial_feature_proj = nn.Conv2d(in_channels, attention_dim, kernel_size=1)
        self.spatial_attribute_proj = nn.Linear(attention_dim, attention_dim)

        self.channel_gate = nn.Sequential(
            nn.Linear(in_channels + attention_dim, in_channels),
            nn.ReLU(inplace=True),
            nn.Linear(in_channels, in_channels),
        )

        self.embed_proj = nn.Linear(in_channels, embed_dim)

    def spatial_attention(self, features: torch.Tensor, attribute_vectors: torch.Tensor) -> torch.Tensor:
        """Return attention weights ``[B, h*w]`` (each row sums to 1) from ``[B, C, h, w]`` and ``[B, A]``."""
        keys = self.spatial_feature_proj(features).flatten(2)  # [B, A, h*w]
        query = self.spatial_attribute_proj(attribute_vectors)  # [B, A]

        scores = torch.einsum("bap,ba->bp", keys, query) / math.sqrt(self.attention_dim)  # [B, h*w]
        return scores.softmax(dim=1)

    def forward(self, features: torch.Tensor, attribute_index: torch.Tensor) -> torch.Tensor:
        """Map ``features [B, C, h, w]`` and ``attribute_index [B]`` (long) to L2-normalised ``[B, D]``."""
        attribute_vectors = self.attribute_embedding(attribute_index)  # [B, A]

        attention = self.spatial_attention(features, attribute_vectors)  # [B, h*w]
        values = features.flatten(2)  # [B, C, h*w]
        pooled = torch.einsum("bcp,bp->bc", values, attention.to(values.dtype))  # [B, C]

        gate_input = torch.cat([pooled, attribute_vectors.to(pooled.dtype)], dim=1)  # [B, C + A]
        gate = torch.sigmoid(self.channel_gate(gate_input))  # [B, C]
        gated = pooled * gate.to(pooled.dtype)  # [B, C]

        embedding = self.embed_proj(gated)  # [B, D]
        return F.normalize(embedding.float(), dim=1)
