"""Tests of the retrieval metrics against plain reference loops and hand-computed cases."""

import itertools
import math

import numpy as np
import pytest

import torch

from mclfir.metrics import (
    balanced_mean,
    expected_random_ap,
    rank_order,
    ranked_precision,
    retrieval_metrics,
)


def reference_precision(query_emb, query_values, candidate_emb, candidate_values, k):
    """Compute AP and AP@k with one plain loop per query, ranking ties by candidate index."""
    aps, aps_at_k = [], []
    for i in range(len(query_emb)):
        scores = [float(np.dot(query_emb[i], candidate_emb[j])) for j in range(len(candidate_emb))]
        order = sorted(range(len(candidate_emb)), key=lambda j: (-scores[j], j))
        relevant = [candidate_values[j] == query_values[i] for j in order]
        num_relevant = sum(relevant)
        if num_relevant == 0:
            aps.append(math.nan)
            aps_at_k.append(math.nan)
            continue

        hits = 0
        total = 0.0
        total_at_k = 0.0
        for rank, is_relevant in enumerate(relevant, start=1):
            if is_relevant:
                hits += 1
                total += hits / rank
                if rank <= k:
                    total_at_k += hits / rank
        aps.append(total / num_relevant)
        aps_at_k.append(total_at_k / min(num_relevant, k))
    return np.array(aps), np.array(aps_at_k)


def random_case(seed, num_queries=40, num_candidates=60, dim=3):
    """Build embeddings with small integer entries (many exact ties) and skewed values.

    "rare" appears once among the candidates (one relevant item) and "absent" never does.
    """
    rng = np.random.default_rng(seed)
    query_emb = rng.integers(-1, 2, size=(num_queries, dim)).astype(np.float32)
    candidate_emb = rng.integers(-1, 2, size=(num_candidates, dim)).astype(np.float32)
    labels = np.array(["a", "b", "c", "d|e"])
    candidate_values = labels[rng.integers(0, len(labels), size=num_candidates)].astype(object)
    candidate_values[rng.integers(0, num_candidates)] = "rare"
    query_values = labels[rng.integers(0, len(labels), size=num_queries)].astype(object)
    query_values[:3] = "rare"
    query_values[3:5] = "absent"
    return query_emb, query_values, candidate_emb, candidate_values


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("chunk_size", [None, 7])
def test_ranked_precision_matches_reference_loop(seed, chunk_size):
    query_emb, query_values, candidate_emb, candidate_values = random_case(seed)
    expected_ap, expected_ap_at_k = reference_precision(query_emb, query_values, candidate_emb, candidate_values, k=5)

    ranked = ranked_precision(query_emb, query_values, candidate_emb, candidate_values, k=5, chunk_size=chunk_size)

    np.testing.assert_allclose(ranked.ap, expected_ap, rtol=0, atol=1e-12, equal_nan=True)
    np.testing.assert_allclose(ranked.ap_at_k, expected_ap_at_k, rtol=0, atol=1e-12, equal_nan=True)


def test_ranked_precision_float64_matches_reference_loop():
    query_emb, query_values, candidate_emb, candidate_values = random_case(5)
    query_emb, candidate_emb = query_emb.astype(np.float64), candidate_emb.astype(np.float64)
    expected_ap, _ = reference_precision(query_emb, query_values, candidate_emb, candidate_values, k=5)

    ranked = ranked_precision(query_emb, query_values, candidate_emb, candidate_values, k=5)

    np.testing.assert_allclose(ranked.ap, expected_ap, rtol=0, atol=1e-12, equal_nan=True)


def test_ranked_precision_accepts_tensors():
    query_emb, query_values, candidate_emb, candidate_values = random_case(6)
    expected = ranked_precision(query_emb, query_values, candidate_emb, candidate_values)

    ranked = ranked_precision(torch.from_numpy(query_emb), query_values, torch.from_numpy(candidate_emb), candidate_values)

    np.testing.assert_array_equal(ranked.ap, expected.ap)


def test_rank_order_matches_stable_argsort():
    rng = np.random.default_rng(8)
    scores = rng.choice(np.array([-2.5, -1.0, -0.0, 0.0, 0.5, 1e-30, -1e-30, 3.0], dtype=np.float32), size=(20, 50))
    scores[0] = rng.normal(size=50).astype(np.float32)

    order = rank_order(scores)

    expected = np.argsort(-scores.astype(np.float64), axis=1, kind="stable")
    np.testing.assert_array_equal(order, expected)


def test_ranked_precision_counts_relevant():
    query_emb, query_values, candidate_emb, candidate_values = random_case(3)

    ranked = ranked_precision(query_emb, query_values, candidate_emb, candidate_values)

    expected = [int(np.sum(candidate_values == value)) for value in query_values]
    assert ranked.num_relevant.tolist() == expected
    assert ranked.num_relevant[0] == 1
    assert np.isnan(ranked.ap[3])


def test_ap_hand_computed():
    # Scores 3, 2, 1 rank candidates 0, 1, 2; relevant at ranks 1 and 3: AP = (1/1 + 2/3) / 2.
    query_emb = np.array([[1.0]])
    candidate_emb = np.array([[3.0], [2.0], [1.0]])

    ranked = ranked_precision(query_emb, ["x"], candidate_emb, ["x", "y", "x"], k=2)

    assert ranked.ap[0] == pytest.approx((1 + 2 / 3) / 2)
    assert ranked.ap_at_k[0] == pytest.approx(1 / 2)


def test_ap_at_k_normalised_by_min_r_k():
    # Relevant at ranks 2, 4, 5 (R = 3), k = 2: only rank 2 counts, P@2 = 1/2, divided by min(3, 2).
    query_emb = np.array([[1.0]])
    candidate_emb = np.array([[5.0], [4.0], [3.0], [2.0], [1.0]])

    ranked = ranked_precision(query_emb, ["x"], candidate_emb, ["y", "x", "y", "x", "x"], k=2)

    assert ranked.ap_at_k[0] == pytest.approx(0.25)
    assert ranked.ap[0] == pytest.approx((1 / 2 + 2 / 4 + 3 / 5) / 3)


def test_ties_ranked_by_candidate_index():
    # Both candidates score the same, so index 0 (irrelevant) ranks first and AP = 1/2.
    query_emb = np.array([[1.0, 0.0]])
    candidate_emb = np.array([[1.0, 0.0], [1.0, 0.0]])

    ranked = ranked_precision(query_emb, ["x"], candidate_emb, ["y", "x"])

    assert ranked.ap[0] == pytest.approx(0.5)


def test_perfect_embeddings_reach_100():
    candidate_values = ["a", "a", "b", "b", "c"]
    one_hot = {"a": [1.0, 0.0, 0.0], "b": [0.0, 1.0, 0.0], "c": [0.0, 0.0, 1.0]}
    candidate_emb = np.array([one_hot[value] for value in candidate_values])
    query_emb = np.array([one_hot["a"], one_hot["c"]])

    metrics = retrieval_metrics(query_emb, ["a", "c"], candidate_emb, candidate_values, k=2)

    assert metrics.map == pytest.approx(100.0)
    assert metrics.map_at_k == pytest.approx(100.0)
    assert metrics.balanced == pytest.approx(100.0)


def exact_random_ap(num_relevant, num_candidates):
    """Average AP over every distinct placement of the relevant items."""
    aps = []
    for positions in itertools.combinations(range(1, num_candidates + 1), num_relevant):
        aps.append(sum((hit + 1) / rank for hit, rank in enumerate(positions)) / num_relevant)
    return float(np.mean(aps))


@pytest.mark.parametrize(("num_relevant", "num_candidates"), [(1, 1), (1, 2), (1, 7), (3, 7), (6, 7), (7, 7), (4, 10)])
def test_expected_random_ap_matches_enumeration(num_relevant, num_candidates):
    closed_form = expected_random_ap([num_relevant], num_candidates)[0]

    assert closed_form == pytest.approx(exact_random_ap(num_relevant, num_candidates), abs=1e-12)


@pytest.mark.parametrize(("num_relevant", "num_candidates"), [(1, 50), (5, 50), (30, 50)])
def test_expected_random_ap_matches_monte_carlo(num_relevant, num_candidates):
    rng = np.random.default_rng(7)
    trials = 20000
    relevant = np.zeros((trials, num_candidates), dtype=bool)
    relevant[:, :num_relevant] = True
    relevant = rng.permuted(relevant, axis=1)
    hits = relevant.cumsum(axis=1)
    ranks = np.arange(1, num_candidates + 1)
    aps = (relevant * hits / ranks).sum(axis=1) / num_relevant
    standard_error = aps.std() / math.sqrt(trials)

    closed_form = expected_random_ap([num_relevant], num_candidates)[0]

    assert abs(closed_form - aps.mean()) < 4 * standard_error + 1e-12


def test_expected_random_ap_nan_without_relevant():
    assert np.isnan(expected_random_ap([0], 5)[0])


def test_expected_random_ap_rejects_r_above_n():
    with pytest.raises(ValueError, match="relevant"):
        expected_random_ap([6], 5)


def test_balanced_mean_weights_values_equally():
    per_query = np.array([1.0, 1.0, 1.0, 0.0, np.nan])
    values = ["a", "a", "a", "b", "c"]

    # Value a: 1.0, value b: 0.0, value c has no valid query and is left out.
    assert balanced_mean(per_query, values) == pytest.approx(0.5)


def test_retrieval_metrics_excludes_and_counts():
    query_emb, query_values, candidate_emb, candidate_values = random_case(4)
    expected_ap, expected_ap_at_k = reference_precision(query_emb, query_values, candidate_emb, candidate_values, k=10)
    valid = ~np.isnan(expected_ap)
    counts = np.array([np.sum(candidate_values == value) for value in query_values[valid]])

    metrics = retrieval_metrics(query_emb, query_values, candidate_emb, candidate_values, k=10)

    assert metrics.excluded_queries == 2
    assert metrics.queries == int(valid.sum())
    assert metrics.candidates == len(candidate_values)
    assert metrics.map == pytest.approx(100 * np.mean(expected_ap[valid]))
    assert metrics.map_at_k == pytest.approx(100 * np.mean(expected_ap_at_k[valid]))
    assert metrics.chance == pytest.approx(100 * np.mean(expected_random_ap(counts, len(candidate_values))))
    assert metrics.balanced == pytest.approx(100 * balanced_mean(expected_ap, query_values))


def test_ranked_precision_rejects_dimension_mismatch():
    with pytest.raises(ValueError, match="dimension"):
        ranked_precision(np.zeros((2, 3)), ["a", "b"], np.zeros((4, 5)), ["a"] * 4)


def test_ranked_precision_rejects_value_count_mismatch():
    with pytest.raises(ValueError, match="query values"):
        ranked_precision(np.zeros((2, 3)), ["a"], np.zeros((4, 3)), ["a"] * 4)


def test_ranked_precision_rejects_nan_embeddings():
    query_emb = np.full((1, 2), np.nan)

    with pytest.raises(ValueError, match="NaN"):
        ranked_precision(query_emb, ["a"], np.zeros((2, 2)), ["a", "b"])
