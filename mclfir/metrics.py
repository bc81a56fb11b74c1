"""Retrieval metrics: average precision over a full ranking, mAP, mAP@k, chance and balanced mAP.

Every query is ranked against every candidate by dot product (embeddings are L2-normalised, so
this is cosine similarity). A candidate is relevant to a query when both carry the same value
string. Multi-valued images carry their sorted values joined by ``|``, so they match only the
same combination. Equal scores are ranked by candidate index, lower index first, so results are
deterministic.

Definitions, for one query with ``R`` relevant among ``N`` candidates and ``rel_i`` = 1 when the
candidate at rank ``i`` (1-based) is relevant:

- precision at rank i: ``P@i = (rel_1 + ... + rel_i) / i``.
- AP = ``(1 / R) * sum_{i=1..N} P@i * rel_i``.
- AP@k = ``(1 / min(R, k)) * sum_{i=1..k} P@i * rel_i`` (AP truncated at rank k, normalised by the
  number of relevant candidates that fit in the top k, so a perfect ranking scores 1).
- mAP, mAP@k: the mean over queries.
- chance mAP: the mean over queries of the expected AP of a uniformly random ranking (closed
  form in :func:`expected_random_ap`).
- balanced mAP: the mean over values of the mAP of that value's queries, so frequent values do
  not dominate.

Queries whose value no candidate carries (``R = 0``) have no defined AP: they are left out of
every mean and counted in ``RetrievalMetrics.excluded_queries``.

The ranking is computed in chunks of queries so that the ``[queries, candidates]`` score matrix
has at most :data:`MAX_CHUNK_ELEMENTS` entries (or one row, when there are more candidates).
"""

import logging
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

_logger = logging.getLogger(__name__)

# Entries of one [queries, candidates] chunk. The ranking holds up to three arrays of this shape at
# once: scores and int64 sort keys, then int64 order, int32 gathered codes and bool relevance.
# That is about 20 bytes per entry (80 MB at 2**22 entries), plus the hits of the chunk.
MAX_CHUNK_ELEMENTS = 1 << 22
_LOW_32_BITS = np.int64(0xFFFFFFFF)


@dataclass(frozen=True)
class RankedPrecision:
    """Per-query results of one ranking: AP, AP@k and the number of relevant candidates.

    ``ap`` and ``ap_at_k`` are float64 arrays ``[Q]`` in [0, 1], NaN for queries with no relevant
    candidate. ``num_relevant`` is an int64 array ``[Q]``.
    """

    ap: np.ndarray
    ap_at_k: np.ndarray
    num_relevant: np.ndarray
    k: int


@dataclass(frozen=True)
class RetrievalMetrics:
    """Summary figures of one attribute's retrieval, in percent (0-100)."""

    map: float
    map_at_k: float
    chance: float
    balanced: float
    k: int
    queries: int
    excluded_queries: int
    candidates: int
    values: int

    def to_dict(self) -> dict[str, Any]:
        """Return the figures as a plain dict for JSON."""
        return asdict(self)


def as_array(embeddings: Any) -> np.ndarray:
    """Return embeddings (NumPy array or torch tensor on any device) as a NumPy array."""
    if hasattr(embeddings, "detach"):
        embeddings = embeddings.detach().cpu().numpy()
    return np.asarray(embeddings)


def encode_values(query_values: Sequence[str], candidate_values: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Map value strings to shared int32 codes: ``[Q]`` and ``[C]`` strings -> ``[Q]``, ``[C]`` codes."""
    query_values = np.asarray(query_values, dtype=object).astype(str)
    candidate_values = np.asarray(candidate_values, dtype=object).astype(str)
    _, codes = np.unique(np.concatenate([query_values, candidate_values]), return_inverse=True)
    codes = codes.astype(np.int32)
    return codes[: len(query_values)], codes[len(query_values) :]


def ranked_precision(
    query_emb: Any,
    query_values: Sequence[str],
    candidate_emb: Any,
    candidate_values: Sequence[str],
    k: int = 10,
    chunk_size: int | None = None,
) -> RankedPrecision:
    """Rank all candidates for each query and compute AP and AP@k per query.

    ``query_emb`` is ``[Q, D]``, ``candidate_emb`` is ``[C, D]`` (NumPy arrays or torch tensors);
    the values are strings ``[Q]`` and ``[C]``. Scores are computed in the embeddings' dtype
    (float32 unless both are float64). ``chunk_size`` is the number of queries ranked at once
    (default: as many as fit in :data:`MAX_CHUNK_ELEMENTS` entries).
    """
    query_emb, candidate_emb = as_array(query_emb), as_array(candidate_emb)
    _check_inputs(query_emb, query_values, candidate_emb, candidate_values, k)
    dtype = np.float64 if query_emb.dtype == np.float64 and candidate_emb.dtype == np.float64 else np.float32
    query_emb = np.ascontiguousarray(query_emb, dtype=dtype)
    candidate_emb_t = np.ascontiguousarray(candidate_emb.astype(dtype, copy=False).T)  # [D, C]
    query_codes, candidate_codes = encode_values(query_values, candidate_values)

    num_queries, num_candidates = query_emb.shape[0], candidate_emb.shape[0]
    if chunk_size is None:
        chunk_size = max(1, MAX_CHUNK_ELEMENTS // max(num_candidates, 1))

    ap = np.full(num_queries, np.nan)
    ap_at_k = np.full(num_queries, np.nan)
    num_relevant = np.zeros(num_queries, dtype=np.int64)
    for start in range(0, num_queries, chunk_size):
        stop = min(start + chunk_size, num_queries)
        ap[start:stop], ap_at_k[start:stop], num_relevant[start:stop] = _rank_chunk(
            query_emb[start:stop], query_codes[start:stop], candidate_emb_t, candidate_codes, k
        )
    return RankedPrecision(ap, ap_at_k, num_relevant, k)


def _check_inputs(
    query_emb: np.ndarray,
    query_values: Sequence[str],
    candidate_emb: np.ndarray,
    candidate_values: Sequence[str],
    k: int,
) -> None:
    if query_emb.ndim != 2 or candidate_emb.ndim != 2:
        raise ValueError(
            f"Embeddings must be 2-D [rows, dim]; got queries {query_emb.shape} and candidates {candidate_emb.shape}."
        )
    if query_emb.shape[1] != candidate_emb.shape[1]:
        raise ValueError(
            f"Query and candidate embeddings differ in dimension: {query_emb.shape[1]} vs {candidate_emb.shape[1]}."
        )
    if len(query_values) != query_emb.shape[0]:
        raise ValueError(f"Got {len(query_values)} query values for {query_emb.shape[0]} query embeddings.")
    if len(candidate_values) != candidate_emb.shape[0]:
        raise ValueError(
            f"Got {len(candidate_values)} candidate values for {candidate_emb.shape[0]} candidate embeddings."
        )
    if candidate_emb.shape[0] >= 2**32:
        raise ValueError(f"Got {candidate_emb.shape[0]} candidates; the ranking supports fewer than 2**32.")
    if k < 1:
        raise ValueError(f"Invalid k {k} for mAP@k; use k >= 1.")
    for name, emb in (("query", query_emb), ("candidate", candidate_emb)):
        if not np.isfinite(emb).all():
            raise ValueError(f"The {name} embeddings contain NaN or infinite entries; check the model that produced them.")


def rank_order(scores: np.ndarray) -> np.ndarray:
    """Return candidate indices ``[q, C]`` by descending score, equal scores by ascending index.

    float32 scores are packed with the index into unique int64 keys (order-preserving bits of
    the score in the high half, the inverted index in the low half). Unique keys make the
    order independent of the sort's stability, so NumPy's fast (SIMD) unstable sort applies.
    Other dtypes fall back to a stable argsort.
    """
    num_candidates = scores.shape[1]
    if scores.dtype != np.float32:
        return np.argsort(-scores, axis=1, kind="stable")

    scores = scores + np.float32(0.0)  # -0.0 + 0.0 is +0.0, so both zeros get the same key
    bits = scores.view(np.int32)
    # Flip the magnitude bits of negative floats so that integer order equals float order.
    ordered = bits ^ ((bits >> 31) & np.int32(0x7FFFFFFF))
    keys = ordered.astype(np.int64) << 32
    keys |= _LOW_32_BITS - np.arange(num_candidates, dtype=np.int64)
    keys.sort(axis=1)
    # Ascending keys put the highest score last and, among equal scores, the lowest index last.
    order = _LOW_32_BITS - (keys[:, ::-1] & _LOW_32_BITS)
    return order


def _rank_chunk(
    query_emb: np.ndarray,
    query_codes: np.ndarray,
    candidate_emb_t: np.ndarray,
    candidate_codes: np.ndarray,
    k: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Compute AP, AP@k and R for a chunk: ``[q, D]`` queries, ``[D, C]`` candidates -> three ``[q]``."""
    scores = query_emb @ candidate_emb_t  # [q, C]
    order = rank_order(scores)  # [q, C]
    del scores
    relevant = candidate_codes[order] == query_codes[:, None]  # [q, C] bool
    del order

    # Only relevant positions contribute P@i, so work on them alone. nonzero() lists them row
    # by row in rank order, so the n-th hit of a row is relevant candidate number n of that query.
    rows, columns = np.nonzero(relevant)  # [H] each, H = hits in the chunk
    num_relevant = relevant.sum(axis=1)  # [q]
    del relevant
    row_starts = np.cumsum(num_relevant) - num_relevant  # [q]: first hit of each row
    hits = np.arange(1, rows.size + 1) - row_starts[rows]  # [H], 1-based
    precision_at_hits = hits / (columns + 1.0)  # [H]: P@rank at each hit

    num_queries = query_emb.shape[0]
    precision_sum = np.bincount(rows, weights=precision_at_hits, minlength=num_queries)
    in_top_k = columns < k
    precision_sum_at_k = np.bincount(rows[in_top_k], weights=precision_at_hits[in_top_k], minlength=num_queries)

    has_relevant = num_relevant > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        ap = np.where(has_relevant, precision_sum / num_relevant, np.nan)
        ap_at_k = np.where(has_relevant, precision_sum_at_k / np.minimum(num_relevant, k), np.nan)
    return ap, ap_at_k, num_relevant.astype(np.int64)


def expected_random_ap(num_relevant: Any, num_candidates: int) -> np.ndarray:
    """Return the expected AP of a uniformly random ranking of ``N`` candidates with ``R`` relevant.

    With ``H_N`` the N-th harmonic number::

        E[AP] = (R - 1) / (N - 1) + (N - R) * H_N / (N * (N - 1))

    Derivation: ``E[AP] = (1/R) * sum_i (1/i) * E[rel_i * (rel_1 + ... + rel_i)]``, with
    ``P(rel_i) = R/N`` and ``P(rel_i and rel_j) = R(R-1) / (N(N-1))`` for ``j != i``. For ``N = 1``
    the single candidate is relevant and AP is 1. Entries with ``R = 0`` are NaN.
    """
    num_relevant = np.asarray(num_relevant, dtype=np.float64)
    if num_candidates < 1:
        raise ValueError(f"Invalid number of candidates {num_candidates}; chance AP needs at least one.")
    if np.any(num_relevant > num_candidates) or np.any(num_relevant < 0):
        raise ValueError(f"Numbers of relevant candidates must lie in [0, {num_candidates}].")

    if num_candidates == 1:
        expected = np.ones_like(num_relevant)
    else:
        n = float(num_candidates)
        harmonic = float(np.sum(1.0 / np.arange(1, num_candidates + 1)))
        expected = (num_relevant - 1) / (n - 1) + (n - num_relevant) * harmonic / (n * (n - 1))
    return np.where(num_relevant > 0, expected, np.nan)


def balanced_mean(per_query: np.ndarray, query_values: Sequence[str]) -> float:
    """Return the mean over values of the mean of ``per_query`` over that value's queries.

    NaN entries (queries without relevant candidates) are left out; a value whose queries are
    all NaN is left out as well. Returns NaN when nothing remains.
    """
    per_query = np.asarray(per_query, dtype=np.float64)
    query_values = np.asarray(query_values, dtype=object).astype(str)
    valid = ~np.isnan(per_query)
    if not valid.any():
        return float("nan")

    _, codes = np.unique(query_values[valid], return_inverse=True)
    sums = np.bincount(codes, weights=per_query[valid])
    counts = np.bincount(codes)
    return float(np.mean(sums / counts))


def retrieval_metrics(
    query_emb: Any,
    query_values: Sequence[str],
    candidate_emb: Any,
    candidate_values: Sequence[str],
    k: int = 10,
    chunk_size: int | None = None,
) -> RetrievalMetrics:
    """Compute mAP, mAP@k, chance mAP and value-balanced mAP, in percent, for one attribute."""
    ranked = ranked_precision(query_emb, query_values, candidate_emb, candidate_values, k, chunk_size)
    valid = ranked.num_relevant > 0
    excluded = int((~valid).sum())
    if excluded:
        _logger.info("Left out %d of %d queries whose value no candidate carries", excluded, len(valid))

    num_candidates = len(candidate_values)
    if valid.any():
        chance = expected_random_ap(ranked.num_relevant[valid], num_candidates)
        map_value = float(np.mean(ranked.ap[valid]))
        map_at_k = float(np.mean(ranked.ap_at_k[valid]))
        chance_value = float(np.mean(chance))
    else:
        map_value = map_at_k = chance_value = float("nan")

    query_values = np.asarray(query_values, dtype=object).astype(str)
    return RetrievalMetrics(
        map=100.0 * map_value,
        map_at_k=100.0 * map_at_k,
        chance=100.0 * chance_value,
        balanced=100.0 * balanced_mean(ranked.ap, query_values),
        k=k,
        queries=int(valid.sum()),
        excluded_queries=excluded,
        candidates=num_candidates,
        values=int(len(np.unique(query_values[valid]))),
    )
