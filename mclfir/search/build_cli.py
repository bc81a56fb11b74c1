"""``mclfir index build``: embed the whole catalogue under every attribute the model serves, one index per attribute."""

import argparse
import logging
from pathlib import Path

from mclfir.cli_types import positive_int
from mclfir.config import load_eval_config, load_params
from mclfir.paths import resolve

_logger = logging.getLogger(__name__)

DEFAULT_INDEX = "index"
DEFAULT_CATALOG = "data/validated/catalog.parquet"
DEFAULT_CACHE = "data/cache"


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``mclfir index build``."""
    parser.add_argument("--model", help="checkpoint or MLflow model URI (default: the checkpoint of the plan's latest trained increment)")
    parser.add_argument("--catalog", default=DEFAULT_CATALOG, help="validated catalog whose images are indexed (default: %(default)s)")
    parser.add_argument("--cache", default=DEFAULT_CACHE, help="image cache of that catalog (default: %(default)s)")
    parser.add_argument("--out", default=DEFAULT_INDEX, help="index folder to write (default: %(default)s)")
    parser.add_argument("--batch-size", type=positive_int, help="images per forward pass (default: eval.batch_size)")


def run(args: argparse.Namespace) -> int:
    """Build the indexes and print their sizes and build time."""
    from mclfir.data.catalog import read_catalog
    from mclfir.data.image_cache import ImageCache
    from mclfir.evaluate import resolve_device
    from mclfir.search.index import build_indexes
    from mclfir.search.models import latest_checkpoint, load_search_model

    params = load_params()
    config = load_eval_config(params)
    search_model = load_search_model(args.model or str(latest_checkpoint(params)))
    catalog = read_catalog(resolve(args.catalog))
    missing = [attribute for attribute in search_model.attributes if attribute not in catalog.attributes]
    if missing:
        raise ValueError(
            f"The catalog {resolve(args.catalog)} has no column for attributes {missing} that {search_model.identity.label} serves; "
            "index with the catalog the model was trained on."
        )

    image_ids = catalog.frame["image_id"].astype(str).tolist()
    values = {attribute: catalog.frame[attribute].tolist() for attribute in search_model.attributes}
    device = resolve_device(config.device)
    manifest = build_indexes(
        search_model.model.to(device), ImageCache(args.cache), image_ids, values, search_model.identity,
        resolve(args.out), args.batch_size or config.batch_size, device,
    )

    total = sum(entry["bytes"] for entry in manifest["files"].values())
    print(
        f"Indexed {manifest['images']} images under {len(manifest['attributes'])} attributes with {search_model.identity.label} "
        f"in {manifest['build_s']} s: {total / 2**20:.1f} MiB of {manifest['dtype']} embeddings in {resolve(args.out)}"
    )
    return 0
