"""Tests of the doublet InfoNCE loss, its logit mask and the distillation losses."""

import torch
import torch.nn.functional as F

from mclfir.losses import embedding_distillation_loss, feature_distillation_loss, info_nce_loss, pair_logit_mask


def test_mask_excludes_same_value_items():
    # Three pairs of one attribute; pairs 0 and 1 share value 5, pair 2 has value 7.
    attribute_ids = torch.tensor([0, 0, 0, 0, 0, 0])
    value_ids = torch.tensor([5, 5, 7, 5, 5, 7])

    mask = pair_logit_mask(attribute_ids, value_ids)

    assert mask[0, 3]  # anchor 0 -> its positive
    assert not mask[0, 1]  # anchor 1 shares value 5
    assert not mask[0, 4]  # positive of pair 1 shares value 5
    assert mask[0, 2]  # value 7 is a negative
    assert mask[0, 5]
    assert not mask[0, 0]  # never itself
    assert mask[3, 0]  # positive -> its anchor


def test_mask_excludes_other_attribute_items():
    # Pair 0 has attribute 0, pair 1 attribute 1; values differ but the attributes do too.
    attribute_ids = torch.tensor([0, 1, 0, 1])
    value_ids = torch.tensor([0, 1, 0, 1])

    mask = pair_logit_mask(attribute_ids, value_ids)

    assert not mask[0, 1]
    assert not mask[0, 3]
    assert mask[0, 2]
    assert mask.sum() == 4  # only the four pair links remain


def test_mask_rejects_odd_item_count():
    try:
        pair_logit_mask(torch.zeros(3, dtype=torch.long), torch.zeros(3, dtype=torch.long))
    except ValueError as error:
        assert "even number" in str(error)
    else:
        raise AssertionError("an odd item count must raise")


def test_masked_items_do_not_change_loss():
    torch.manual_seed(0)
    anchors = F.normalize(torch.randn(3, 8), dim=1)
    positives = F.normalize(torch.randn(3, 8), dim=1)
    attribute_ids = torch.tensor([0, 0, 0])
    value_ids = torch.tensor([1, 1, 2])
    loss = info_nce_loss(anchors, positives, attribute_ids, value_ids, temperature=0.3)

    # Moving pair 1 (same value as pair 0) changes pair 0's loss terms only through pair 1's own rows.
    moved = positives.clone()
    moved[1] = F.normalize(torch.randn(8), dim=0)
    anchors_moved = anchors.clone()
    anchors_moved[1] = F.normalize(torch.randn(8), dim=0)
    per_item = _per_item_loss(anchors, positives, attribute_ids, value_ids)
    per_item_moved = _per_item_loss(anchors_moved, moved, attribute_ids, value_ids)

    assert torch.isfinite(loss)
    assert torch.allclose(per_item[[0, 3]], per_item_moved[[0, 3]])


def _per_item_loss(anchors, positives, attribute_ids, value_ids):
    P = anchors.shape[0]
    embeddings = torch.cat([anchors, positives])
    logits = embeddings @ embeddings.T / 0.3
    mask = pair_logit_mask(torch.cat([attribute_ids] * 2), torch.cat([value_ids] * 2))
    logits = logits.masked_fill(~mask, float("-inf"))
    targets = (torch.arange(2 * P) + P) % (2 * P)
    return F.cross_entropy(logits, targets, reduction="none")


def test_loss_zero_without_negatives():
    anchors = F.normalize(torch.randn(2, 4), dim=1)
    positives = F.normalize(torch.randn(2, 4), dim=1)

    loss = info_nce_loss(anchors, positives, torch.tensor([0, 0]), torch.tensor([3, 3]), temperature=0.3)

    assert loss.item() == 0.0


def test_loss_decreases_on_separable_problem():
    torch.manual_seed(0)
    # Two values, each a noisy cluster in 16-d; a linear map learns to separate them.
    centres = torch.randn(2, 16)
    value_ids = torch.tensor([0, 1] * 8)
    attribute_ids = torch.zeros(16, dtype=torch.long)
    anchors_raw = centres[value_ids] + 0.5 * torch.randn(16, 16)
    positives_raw = centres[value_ids] + 0.5 * torch.randn(16, 16)
    projection = torch.nn.Linear(16, 8)
    optimizer = torch.optim.SGD(projection.parameters(), lr=0.5)

    losses = []
    for _ in range(50):
        anchors = F.normalize(projection(anchors_raw), dim=1)
        positives = F.normalize(projection(positives_raw), dim=1)
        loss = info_nce_loss(anchors, positives, attribute_ids, value_ids, temperature=0.3)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())

    assert losses[-1] < 0.5 * losses[0]


def test_feature_distillation_zero_for_equal_maps():
    features = torch.randn(2, 4, 3, 3)

    assert feature_distillation_loss(features, features.clone()).abs().item() < 1e-6
    assert feature_distillation_loss(features, -features).item() > 1.9


def test_feature_distillation_ignores_scale():
    features = torch.randn(2, 4, 3, 3)

    assert feature_distillation_loss(3.0 * features, features).abs().item() < 1e-6


def test_embedding_distillation_gradient_reaches_student_only():
    student = F.normalize(torch.randn(4, 8), dim=1).requires_grad_()
    teacher = F.normalize(torch.randn(4, 8), dim=1).requires_grad_()

    embedding_distillation_loss(student, teacher).backward()

    assert student.grad is not None
    assert teacher.grad is None
