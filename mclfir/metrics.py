"""Retrieval metrics: average precision over a full ranking, mAP, mAP@k, chance and balanced mAP.

Every query is ranked against every candidate by dot product (embeddings are L2-normalised, so
this is cosine similarity). A candidate is relevant to a query when both carry the same value
string; multi-valued images carry their sorted values joined by ``|``, so they match only the
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
stays below :data:`MAX_CHUNK_ELEMENTS` entries.
"""

import logging
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np
import torch

_logger = logging.getLogger(__name__)

# Entries of one [queries, candidates] chunk. The ranking keeps about five arrays of this shape
# (float32 scores, int64 order, int32 gathered codes, bool relevance, int64 hit counts), which is
# roughly 100 MB at 2**22 entries.
MAX_CHUNK_ELEMENTS = 1 << 22

ArrayLike = np.ndarray | torch.Tensor


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


def encode_values(query_values: Sequence[str], candidate_values: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Map value strings to shared int32 codes: ``[Q]`` and ``[C]`` strings -> ``[Q]``, ``[C]`` codes."""
    query_values = np.asarray(query_values, dtype=object).astype(str)
    candidate_values = np.asarray(candidate_values, dtype=object).astype(str)
    _, codes = np.unique(np.concatenate([query_values, candidate_values]), return_inverse=True)
    codes = codes.astype(np.int32)
    return codes[: len(query_values)], codes[len(query_values) :]


def ranked_precision(
    query_emb: ArrayLike,
    query_values: Sequence[str],
    candidate_emb: ArrayLike,
    candidate_values: Sequence[str],
    k: int = 10,
    chunk_size: int | None = None,
    device: str | torch.device | None = None,
) -> RankedPrecision:
    """Rank all candidates for each query and compute AP and AP@k per query.

    ``query_emb`` is ``[Q, D]``, ``candidate_emb`` is ``[C, D]``; the values are strings ``[Q]``
    and ``[C]``. ``chunk_size`` is the number of queries ranked at once (default: as many as fit
    in :data:`MAX_CHUNK_ELEMENTS` entries). ``device`` defaults to the device of ``query_emb``
    when it is a tensor, else the CPU.
    """
    query_emb = torch.as_tensor(query_emb)
    candidate_emb = torch.as_tensor(candidate_emb)
    _check_shapes(query_emb, query_values, candidate_emb, candidate_values, k)

    device = torch.device(device) if device is not None else query_emb.device
    query_emb = query_emb.to(device)
    candidate_emb = candidate_emb.to(device=device, dtype=query_emb.dtype)
    query_codes, candidate_codes = encode_values(query_values, candidate_values)
    query_codes = torch.from_numpy(query_codes).to(device)
    candidate_codes = torch.from_numpy(candidate_codes).to(device)

    num_queries, num_candidates = query_emb.shape[0], candidate_emb.shape[0]
    if chunk_size is None:
        chunk_size = max(1, MAX_CHUNK_ELEMENTS // max(num_candidates, 1))

    ap_chunks, ap_at_k_chunks, relevant_chunks = [], [], []
    for start in range(0, num_queries, chunk_size):
        stop = min(start + chunk_size, num_queries)
        ap, ap_at_k, num_relevant = _rank_chunk(
            query_emb[start:stop], query_codes[start:stop], candidate_emb, candidate_codes, k
        )
        ap_chunks.append(ap)
        ap_at_k_chunks.append(ap_at_k)
        relevant_chunks.append(num_relevant)

    if not ap_chunks:
        empty = np.zeros(0, dtype=np.float64)
        return RankedPrecision(empty, empty.copy(), np.zeros(0, dtype=np.int64), k)
    return RankedPrecision(
        ap=torch.cat(ap_chunks).cpu().numpy(),
        ap_at_k=torch.cat(ap_at_k_chunks).cpu().numpy(),
        num_relevant=torch.cat(relevant_chunks).cpu().numpy(),
        k=k,
    )


def _check_shapes(
    query_emb: torch.Tensor,
    query_values: Sequence[str],
    candidate_emb: torch.Tensor,
    candidate_values: Sequence[str],
    k: int,
) -> None:
    if query_emb.ndim != 2 or candidate_emb.ndim != 2:
        raise ValueError(
            f"Embeddings must be 2-D [rows, dim]; got queries {tuple(query_emb.shape)} and "
            f"candidates {tuple(candidate_emb.shape)}."
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
    if k < 1:
        raise ValueError(f"Invalid k {k} for mAP@k; use k >= 1.")
    for name, emb in (("query", query_emb), ("candidate", candidate_emb)):
        if emb.is_floating_point() and not bool(torch.isfinite(emb).all()):
            raise ValueError(f"The {name} embeddings contain NaN or infinite entries; check the model that produced them.")


def _rank_chunk(
    query_emb: torch.Tensor,
    query_codes: torch.Tensor,
    candidate_emb: torch.Tensor,
    candidate_codes: torch.Tensor,
    k: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Compute AP, AP@k and R for a chunk: ``[q, D]`` queries, ``[C, D]`` candidates -> three ``[q]``."""
    scores = query_emb @ candidate_emb.T  # [q, C]

    # A stable descending sort keeps equal scores in candidate-index order.
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices  # [q, C]
    del scores
    relevant = candidate_codes[order] == query_codes[:, None]  # [q, C] bool
    del order

    hits = relevant.cumsum(dim=1)  # [q, C]: relevant candidates up to each rank
    ranks = torch.arange(1, relevant.shape[1] + 1, device=relevant.device, dtype=torch.float64)
    precision_at_hits = torch.where(relevant, hits.to(torch.float64) / ranks, 0.0)  # P@i * rel_i
    del hits

    num_relevant = relevant.sum(dim=1)  # [q]
    nan = torch.tensor(float("nan"), dtype=torch.float64, device=relevant.device)
    has_relevant = num_relevant > 0
    ap = torch.where(has_relevant, precision_at_hits.sum(dim=1) / num_relevant.clamp(min=1), nan)

    cutoff = num_relevant.clamp(min=1, max=k).to(torch.float64)
    ap_at_k = torch.where(has_relevant, precision_at_hits[:, :k].sum(dim=1) / cutoff, nan)
    return ap, ap_at_k, num_relevant.to(torch.int64)


def expected_random_ap(num_relevant: ArrayLike, num_candidates: int) -> np.ndarray:
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
    query_emb: ArrayLike,
    query_values: Sequence[str],
    candidate_emb: ArrayLike,
    candidate_values: Sequence[str],
    k: int = 10,
    chunk_size: int | None = None,
    device: str | torch.device | None = None,
) -> RetrievalMetrics:
    """Compute mAP, mAP@k, chance mAP and value-balanced mAP, in percent, for one attribute."""
    ranked = ranked_precision(query_emb, query_values, candidate_emb, candidate_values, k, chunk_size, device)
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
