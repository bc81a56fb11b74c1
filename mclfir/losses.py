"""Losses of one training increment: doublet InfoNCE and distillation from the EMA teacher.

InfoNCE (van den Oord et al., 2018, "Representation Learning with Contrastive Predictive Coding")
is applied to doublets. The embeddings of P pairs are stacked as ``[anchors; positives]`` (2P
items), so item i's positive is item ``(i + P) mod 2P``. Its negatives are the in-batch items
of the same attribute with a different value. Items that share its value (other than its
positive) are masked out instead of being counted as false negatives, and items of another
attribute are masked out because their embeddings live in another head's space.
"""

import torch
import torch.nn.functional as F


def pair_logit_mask(attribute_ids: torch.Tensor, value_ids: torch.Tensor) -> torch.Tensor:
    """Return which logits take part in InfoNCE for items laid out as ``[anchors; positives]``.

    ``attribute_ids`` and ``value_ids`` are ``[2P]``. The result is bool ``[2P, 2P]``. It is True
    at ``(i, j)`` when j is i's positive or one of its negatives (same attribute, other value).
    """
    (N,) = attribute_ids.shape
    if N % 2:
        raise ValueError(f"Expected an even number of items laid out as [anchors; positives], got {N}.")
    P = N // 2

    same_attribute = attribute_ids[:, None] == attribute_ids[None, :]
    same_value = value_ids[:, None] == value_ids[None, :]
    negatives = same_attribute & ~same_value

    index = torch.arange(N, device=attribute_ids.device)
    positives = torch.zeros(N, N, dtype=torch.bool, device=attribute_ids.device)
    positives[index, (index + P) % N] = True
    return negatives | positives


def info_nce_loss(
    anchors: torch.Tensor,
    positives: torch.Tensor,
    attribute_ids: torch.Tensor,
    value_ids: torch.Tensor,
    temperature: float,
) -> torch.Tensor:
    """Return the mean InfoNCE loss of P doublets, symmetric over anchors and positives.

    ``anchors`` and ``positives`` are L2-normalised ``[P, D]``; ``attribute_ids`` and
    ``value_ids`` are ``[P]`` (a pair shares both). An item whose batch contains no negative for it
    contributes a loss of 0.
    """
    P, _ = anchors.shape
    embeddings = torch.cat([anchors, positives]).float()  # [2P, D]
    attribute_ids = torch.cat([attribute_ids, attribute_ids])
    value_ids = torch.cat([value_ids, value_ids])

    logits = embeddings @ embeddings.T / temperature  # [2P, 2P]
    mask = pair_logit_mask(attribute_ids, value_ids)
    logits = logits.masked_fill(~mask, float("-inf"))

    index = torch.arange(2 * P, device=logits.device)
    targets = (index + P) % (2 * P)
    return F.cross_entropy(logits, targets)


def feature_distillation_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Return the mean cosine distance between student and teacher feature maps ``[B, C, h, w]``.

    The distance is taken over channels at each spatial position, so it does not depend on the
    scale of the features, which drifts while a backbone trains from scratch.
    """
    similarity = F.cosine_similarity(student.float(), teacher.detach().float(), dim=1)  # [B, h, w]
    return (1.0 - similarity).mean()


def embedding_distillation_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Return the mean cosine distance between L2-normalised embeddings ``[B, D]`` of old heads."""
    similarity = (student.float() * teacher.detach().float()).sum(dim=1)  # [B]
    return (1.0 - similarity).mean()
