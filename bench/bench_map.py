"""Benchmark: vectorised mAP (mclfir.metrics) against a plain per-query Python AP loop.

For each candidate count, both compute AP over the full ranking on the same random L2-normalised
embeddings and values. The script reports time per query, the speed-up, the max abs difference
of the per-query APs, and the peak memory of a full vectorised evaluation. Each size runs in its
own process so that its peak resident set size (``ru_maxrss``) is its own.

    .venv/bin/python bench/bench_map.py
    .venv/bin/python bench/bench_map.py --candidates 1000 10000 --queries 500 --loop-queries 200
"""

import argparse
import json
import multiprocessing
import os
import platform
import resource
import time

import numpy as np

DIM = 128
NUM_VALUES = 20


def make_data(num_queries: int, num_candidates: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return L2-normalised float32 embeddings and values with a skewed (Zipf-like) frequency."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, NUM_VALUES + 1)
    weights /= weights.sum()
    labels = np.array([f"value{i}" for i in range(NUM_VALUES)], dtype=object)

    def embeddings(rows: int) -> np.ndarray:
        array = rng.normal(size=(rows, DIM)).astype(np.float32)
        return array / np.linalg.norm(array, axis=1, keepdims=True)

    query_emb, candidate_emb = embeddings(num_queries), embeddings(num_candidates)
    query_values = labels[rng.choice(NUM_VALUES, size=num_queries, p=weights)]
    candidate_values = labels[rng.choice(NUM_VALUES, size=num_candidates, p=weights)]
    return query_emb, query_values, candidate_emb, candidate_values


def loop_average_precision(query_emb, query_values, candidate_emb, candidate_values) -> np.ndarray:
    """Compute AP per query with one Python loop over the ranked candidates of each query."""
    aps = np.full(len(query_emb), np.nan)
    for i in range(len(query_emb)):
        scores = candidate_emb @ query_emb[i]
        order = np.argsort(-scores, kind="stable")
        relevant = candidate_values[order] == query_values[i]
        num_relevant = int(relevant.sum())
        if num_relevant == 0:
            continue
        hits = 0
        total = 0.0
        for rank, is_relevant in enumerate(relevant, start=1):
            if is_relevant:
                hits += 1
                total += hits / rank
        aps[i] = total / num_relevant
    return aps


def bench_size(num_candidates: int, num_queries: int, loop_queries: int, seed: int) -> dict:
    """Time both implementations at one candidate count and measure the vectorised peak memory."""
    from mclfir.metrics import MAX_CHUNK_ELEMENTS, ranked_precision

    query_emb, query_values, candidate_emb, candidate_values = make_data(num_queries, num_candidates, seed)
    loop_queries = min(loop_queries, num_queries)
    subset = slice(0, loop_queries)

    # Warm-up, so that one-off costs (imports, BLAS threads) are not timed.
    ranked_precision(query_emb[:8], query_values[:8], candidate_emb, candidate_values)
    loop_average_precision(query_emb[:2], query_values[:2], candidate_emb, candidate_values)
    rss_before_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    started = time.perf_counter()
    ranked = ranked_precision(query_emb, query_values, candidate_emb, candidate_values, k=10)
    vectorised_s = time.perf_counter() - started
    rss_after_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    started = time.perf_counter()
    loop_ap = loop_average_precision(query_emb[subset], query_values[subset], candidate_emb, candidate_values)
    loop_s = time.perf_counter() - started

    # float32 scores from a matrix product (vectorised) and a matrix-vector product (loop) may
    # differ in the last bit, which swaps near-tied candidates. In float64 the APs must agree.
    query_64, candidate_64 = query_emb[subset].astype(np.float64), candidate_emb.astype(np.float64)
    ap_64 = ranked_precision(query_64, query_values[subset], candidate_64, candidate_values).ap
    loop_ap_64 = loop_average_precision(query_64, query_values[subset], candidate_64, candidate_values)

    vectorised_ms = 1000 * vectorised_s / num_queries
    loop_ms = 1000 * loop_s / loop_queries
    return {
        "candidates": num_candidates,
        "queries_vectorised": num_queries,
        "queries_loop": loop_queries,
        "vectorised_ms_per_query": round(vectorised_ms, 3),
        "loop_ms_per_query": round(loop_ms, 3),
        "speedup": round(loop_ms / vectorised_ms, 1),
        "max_abs_diff_float32": _max_abs_diff(loop_ap, ranked.ap[subset]),
        "max_abs_diff_float64": _max_abs_diff(loop_ap_64, ap_64),
        "chunk_queries": max(1, MAX_CHUNK_ELEMENTS // num_candidates),
        "peak_rss_mib": round(rss_after_kib / 1024, 1),
        "peak_rss_increase_mib": round((rss_after_kib - rss_before_kib) / 1024, 1),
    }


def _max_abs_diff(expected: np.ndarray, actual: np.ndarray) -> float:
    """Return the max abs difference of two AP arrays; inf when they exclude different queries."""
    if not np.array_equal(np.isnan(expected), np.isnan(actual)):
        return float("inf")
    valid = ~np.isnan(expected)
    return float(np.max(np.abs(expected[valid] - actual[valid]))) if valid.any() else 0.0


def _child(queue, *args) -> None:
    queue.put(bench_size(*args))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, nargs="+", default=[1000, 10000, 40000], help="candidate counts to test")
    parser.add_argument("--queries", type=int, default=1000, help="queries of the vectorised run (default: %(default)s)")
    parser.add_argument("--loop-queries", type=int, nargs="+", default=[1000, 1000, 250], help="queries of the loop run, one per candidate count (the last repeats)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print one JSON object per size instead of a table")
    args = parser.parse_args()

    context = multiprocessing.get_context("spawn")
    print(f"# {platform.machine()}, {os.cpu_count()} CPUs, NumPy {np.__version__}, D={DIM}, {NUM_VALUES} values (Zipf-like)")
    if not args.json:
        print(
            "| candidates | queries (vectorised / loop) | vectorised ms/query | loop ms/query | speed-up "
            "| max abs diff float32 / float64 | peak RSS (MiB) | RSS increase (MiB) |"
        )
        print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for index, num_candidates in enumerate(args.candidates):
        loop_queries = args.loop_queries[min(index, len(args.loop_queries) - 1)]
        queue = context.Queue()
        process = context.Process(target=_child, args=(queue, num_candidates, args.queries, loop_queries, args.seed))
        process.start()
        result = queue.get()
        process.join()

        if args.json:
            print(json.dumps(result))
            continue
        print(
            f"| {result['candidates']} | {result['queries_vectorised']} / {result['queries_loop']} | "
            f"{result['vectorised_ms_per_query']} | {result['loop_ms_per_query']} | {result['speedup']}x | "
            f"{result['max_abs_diff_float32']:.1e} / {result['max_abs_diff_float64']:.1e} | "
            f"{result['peak_rss_mib']} | {result['peak_rss_increase_mib']} |"
        )


if __name__ == "__main__":
    main()
