"""Benchmark of search on the real catalogue: index build time and size, query latency, and top-10 quality.

Per attribute of the model it measures:

- the index build, split into the backbone pass over every catalogue image (shared by all
  attributes) and the attribute's own head pass and save, plus the size of its index file;
- the latency of a warm query, with the model and the index in memory. A query decodes its image
  file, embeds it and ranks the whole index. It reports p50 and p95 over ``--queries`` random
  test-split queries;
- over the same queries, the share of the top-10 results (the query's own item left out) whose
  value is the query's, beside chance: the share of the catalogue with that value;
- that each query, sent as its catalogue id, comes back first (or a byte-identical duplicate
  does) with a score of at least 0.99.

It also times the exact search step alone (matmul and top-k) on random indexes of growing size,
which is what decides when an approximate library would pay, and one cold ``mclfir search``
process from start to end.

Usage (from the project root, after ``dvc repro``):

    python bench/bench_search.py --model models/inc3/checkpoint.pt --work /tmp/mclfir-search-bench
"""

import argparse
import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from mclfir.config import load_params
from mclfir.data.catalog import read_catalog
from mclfir.data.image_cache import ImageCache
from mclfir.data.increments import load_plan
from mclfir.data.split import read_split
from mclfir.paths import resolve
from mclfir.registry import decode_image
from mclfir.search.index import AttributeIndex, ModelIdentity, attribute_file, display_values, load_index
from mclfir.search.models import load_search_model
from mclfir.search.query import embed_query

_logger = logging.getLogger(__name__)

TOP_K = 10
SCORE_FLOOR = 0.99
SCALING_SIZES = (43_177, 200_000, 1_000_000, 2_000_000)


def build_timed(search_model, catalog, cache: ImageCache, out: Path, batch_size: int) -> dict[str, dict]:
    """Build every attribute's index like ``mclfir index build`` does, timing the backbone and each head apart."""
    model = search_model.model.eval()
    attributes = search_model.attributes
    image_ids = catalog.frame["image_id"].astype(str).tolist()
    embeddings = {attribute: np.empty((len(image_ids), model.cfg.embed_dim), dtype=np.float32) for attribute in attributes}
    backbone_s, head_s = 0.0, dict.fromkeys(attributes, 0.0)

    with torch.inference_mode():
        for start in range(0, len(image_ids), batch_size):
            batch_ids = image_ids[start : start + batch_size]
            started = time.perf_counter()
            features = model.features(cache.read(batch_ids).permute(0, 3, 1, 2))
            backbone_s += time.perf_counter() - started
            for attribute in attributes:
                started = time.perf_counter()
                embeddings[attribute][start : start + len(batch_ids)] = model.embed(features, [attribute] * len(batch_ids)).float().numpy()
                head_s[attribute] += time.perf_counter() - started

    results = {}
    for attribute in attributes:
        started = time.perf_counter()
        index = AttributeIndex(attribute, embeddings[attribute], np.asarray(image_ids), display_values(catalog.frame[attribute].tolist()))
        path = index.save(attribute_file(out, attribute))
        save_s = time.perf_counter() - started
        results[attribute] = {
            "backbone_s_shared": round(backbone_s, 1),
            "head_and_save_s": round(head_s[attribute] + save_s, 1),
            "index_mib": round(path.stat().st_size / 2**20, 2),
        }
    (out / "manifest.json").write_text(
        json.dumps({"model": search_model.identity.to_dict(), "attributes": attributes, "images": len(image_ids), "dtype": "float32"})
    )
    return results


def sample_queries(params: dict, attribute: str, count: int, seed: int) -> list[str]:
    """Return ``count`` random query ids of the test split of ``attribute``."""
    plan = load_plan(params)
    table = read_split(resolve("data/splits") / plan.increment_of(attribute) / f"{attribute}.parquet").frame
    ids = table[(table["split"] == "test") & (table["role"] == "query")]["image_id"].astype(str).to_numpy()
    rng = np.random.default_rng(seed)
    return sorted(rng.choice(ids, size=min(count, len(ids)), replace=False).tolist())


def measure_attribute(search_model, index: AttributeIndex, query_ids: list[str], paths: dict, root: Path, hashes: dict, cache: ImageCache) -> dict:
    """Time warm file queries and score their top-10; check self-retrieval by id."""
    latencies, precisions, chances, self_found = [], [], [], 0
    value_share = {value: count / len(index) for value, count in zip(*np.unique(index.values, return_counts=True))}
    row_of = {image_id: row for row, image_id in enumerate(index.image_ids)}

    for query_id in query_ids:
        started = time.perf_counter()
        pixels = decode_image(str(root / paths[query_id]), 0)
        rows, _ = index.search(embed_query(search_model, pixels, index.attribute), TOP_K + 1)
        latencies.append(time.perf_counter() - started)

        value = index.values[row_of[query_id]]
        others = [row for row in rows[0] if index.image_ids[row] != query_id][:TOP_K]
        precisions.append(float(np.mean(index.values[others] == value)))
        chances.append(value_share[value])

        rows, scores = index.search(embed_query(search_model, cache.read([query_id])[0].numpy(), index.attribute), 1)
        first = str(index.image_ids[rows[0][0]])
        if scores[0][0] >= SCORE_FLOOR and (first == query_id or hashes.get(first) == hashes.get(query_id)):
            self_found += 1

    milliseconds = 1000.0 * np.asarray(latencies)
    return {
        "queries": len(query_ids),
        "latency_ms_p50": round(float(np.percentile(milliseconds, 50)), 1),
        "latency_ms_p95": round(float(np.percentile(milliseconds, 95)), 1),
        "top10_same_value": round(float(np.mean(precisions)), 3),
        "chance": round(float(np.mean(chances)), 3),
        "self_first_at_0.99": self_found,
    }


def search_scaling(dim: int, repeats: int = 20) -> dict[int, float]:
    """Return the median milliseconds of one exact top-10 search on random indexes of each size."""
    rng = np.random.default_rng(0)
    timings = {}
    for size in SCALING_SIZES:
        embeddings = rng.standard_normal((size, dim), dtype=np.float32)
        embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
        index = AttributeIndex("random", embeddings, np.arange(size).astype(str), np.zeros(size, dtype=str))
        query = embeddings[:1]
        index.search(query, TOP_K)
        samples = []
        for _ in range(repeats):
            started = time.perf_counter()
            index.search(query, TOP_K)
            samples.append(time.perf_counter() - started)
        timings[size] = round(1000.0 * float(np.median(samples)), 2)
        del embeddings, index
    return timings


def cold_cli_seconds(model: str, image_id: str, attribute: str, index_dir: Path) -> float:
    """Return the wall seconds of one ``mclfir search`` process, from start to exit."""
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "mclfir.cli", "search", "--image", image_id, "--attribute", attribute, "--model", model, "--index", str(index_dir)],
        check=True, capture_output=True,
    )
    return round(time.perf_counter() - started, 2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/inc3/checkpoint.pt", help="checkpoint to index and query with")
    parser.add_argument("--work", default="/tmp/mclfir-search-bench", help="folder for the benchmark's index")
    parser.add_argument("--queries", type=int, default=200, help="random test queries per attribute")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="write the results as JSON to this file")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")

    params = load_params()
    search_model = load_search_model(args.model)
    catalog = read_catalog(resolve("data/validated/catalog.parquet"))
    cache = ImageCache("data/cache")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)

    results = {"threads": torch.get_num_threads(), "images": len(catalog.frame), "attributes": {}}
    results["build"] = build_timed(search_model, catalog, cache, work, args.batch_size)
    paths = dict(zip(catalog.frame["image_id"].astype(str), catalog.frame["path"].astype(str)))
    hashes = dict(zip(catalog.frame["image_id"].astype(str), catalog.frame["content_hash"].astype(str)))
    identity = ModelIdentity(search_model.identity.checkpoint_sha256, search_model.identity.label)
    for attribute in search_model.attributes:
        index = load_index(work, attribute, identity)
        query_ids = sample_queries(params, attribute, args.queries, args.seed)
        results["attributes"][attribute] = measure_attribute(search_model, index, query_ids, paths, resolve(catalog.root), hashes, cache)
        _logger.info("%s: %s", attribute, results["attributes"][attribute])

    results["search_ms_by_size"] = search_scaling(search_model.model.cfg.embed_dim)
    first_attribute = search_model.attributes[0]
    results["cold_cli_s"] = cold_cli_seconds(args.model, sample_queries(params, first_attribute, 1, args.seed)[0], first_attribute, work)

    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
