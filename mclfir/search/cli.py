"""``mclfir search``: the catalogue items most similar to an image under one attribute, printed and optionally drawn."""

import argparse
import logging
from pathlib import Path

import numpy as np

from mclfir.config import load_params
from mclfir.paths import resolve
from mclfir.cli_types import positive_int
from mclfir.search.build_cli import DEFAULT_CACHE, DEFAULT_CATALOG, DEFAULT_INDEX

GRID_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")

_logger = logging.getLogger(__name__)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``mclfir search``."""
    parser.add_argument("--image", required=True, help="query: an image file (relative to the working folder) or the id of a catalogue item")
    parser.add_argument("--attribute", required=True, help="attribute to compare under, such as baseColour")
    parser.add_argument("--top-k", type=positive_int, default=10, help="number of results (default: %(default)s)")
    parser.add_argument(
        "--model",
        help="checkpoint or MLflow model URI (default: models:/<registry.model_name>@champion when the registry has one, "
        "else the latest trained checkpoint)",
    )
    parser.add_argument("--grid", help="also write the query and its results as a picture (.png or .jpg) to this file, relative to the working folder")
    parser.add_argument("--index", default=DEFAULT_INDEX, help="index folder built by `mclfir index build`, relative to the project root (default: %(default)s)")
    parser.add_argument("--cache", default=DEFAULT_CACHE, help="image cache, for queries by id and the grid (default: %(default)s)")
    parser.add_argument("--catalog", default=DEFAULT_CATALOG, help="catalog, for the grid when there is no cache (default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    """Search, print one line per result, and draw the grid when asked."""
    from mclfir.search.models import default_reference, load_search_model
    from mclfir.search.query import format_result, search

    if args.grid and Path(args.grid).suffix.lower() not in GRID_SUFFIXES:
        raise ValueError(f"Invalid --grid {args.grid}: name a picture file ending in {', '.join(GRID_SUFFIXES)}.")
    params = load_params()
    search_model = load_search_model(args.model or default_reference(params))
    result = search(search_model, args.image, args.attribute, resolve(args.index), params, args.top_k, resolve(args.cache))
    print("\n".join(format_result(result)))

    if args.grid:
        from mclfir.search.grid import write_grid

        pixels = hit_images([hit.image_id for hit in result.hits], resolve(args.cache), resolve(args.catalog))
        print(f"Grid written to {write_grid(result, pixels, Path(args.grid))}")
    return 0


def hit_images(image_ids: list[str], cache_dir: Path, catalog_path: Path) -> list[np.ndarray]:
    """Return the results' images ``[H, W, 3]`` uint8, from the image cache or else from the catalog's files."""
    if cache_dir.is_dir():
        from mclfir.data.image_cache import ImageCache

        return list(ImageCache(cache_dir).read(image_ids).numpy())

    from mclfir.data.catalog import read_catalog
    from mclfir.registry import decode_image

    catalog = read_catalog(catalog_path)
    paths = dict(zip(catalog.frame["image_id"].astype(str), catalog.frame["path"].astype(str)))
    root = resolve(catalog.root)
    return [decode_image(str(root / paths[image_id]), row) for row, image_id in enumerate(image_ids)]
