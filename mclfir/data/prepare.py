"""``mclfir data prepare``: read a dataset with its source adapter into one catalog table.

The command writes the catalog (Parquet, see :mod:`mclfir.data.catalog`) and a problems table
with one row per problem found (see :mod:`mclfir.data.problems`), prints a summary, and exits
1 when any problem has the action ``stop``, else 0. The ``asen`` source also writes the
benchmark's query/candidate protocol table. With ``--labels``, the label files of
:mod:`mclfir.data.labels` are added as attributes before the subsample.
"""

import argparse
import hashlib
import importlib
import importlib.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Callable

import pandas as pd

from mclfir import paths
from mclfir.data.catalog import HASH_COLUMN, ID_COLUMN, ROW_COLUMN, Catalog, write_catalog
from mclfir.data.labels import merge_label_files
from mclfir.data.problems import Problem, has_stop, problems_frame, summarize

_logger = logging.getLogger(__name__)

PROBLEMS_SUFFIX = ".problems.parquet"

# Source name -> adapter module. Modules are imported on use, so that a missing or
# slow-to-import adapter only affects its own source.
ADAPTER_MODULES: dict[str, str] = {
    "fashion-products": "mclfir.data.fashion_products",
    "fashionai": "mclfir.data.fashionai",
    "asen": "mclfir.data.asen",
}


class PrepareError(Exception):
    """A user-facing error of ``mclfir data prepare``, whose message names the option or file to change."""


class SourceUnavailableError(PrepareError):
    """The adapter module of a known source is not part of this installation."""


@dataclass
class SourceTables:
    """Tables read by an adapter: the catalog (None when it cannot be built), its problems, and for ASEN the protocol."""

    catalog: Catalog | None
    problems: list[Problem]
    protocol: pd.DataFrame | None = None


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``mclfir data prepare``."""
    parser.add_argument("--source", choices=list(ADAPTER_MODULES), default="fashion-products", help="dataset adapter (default: %(default)s)")
    parser.add_argument(
        "--root",
        default=None,
        help=f"dataset folder, relative to the project root unless absolute (default: ${paths.DATA_ROOT_ENV})",
    )
    parser.add_argument("--out", required=True, help="catalog file to write (.parquet)")
    parser.add_argument(
        "--max-images",
        type=_non_negative_int,
        default=0,
        help="number of images to keep, those whose id has the lowest SHA-256, so the subsample is deterministic (0 keeps all)",
    )
    parser.add_argument(
        "--labels",
        default=None,
        metavar="DIR",
        help="folder of label files (<attribute>.csv, written by `mclfir data add-attributes`) to add as attributes, relative to the project root (default: none)",
    )
    parser.add_argument(
        "--problems",
        default=None,
        help="problems table to write as .parquet (default: <out stem>.problems.parquet beside the catalog)",
    )

    asen = parser.add_argument_group("asen source")
    asen.add_argument("--dataset", default=None, help="ASEN benchmark to read: FashionAI, DARN or DeepFashion")
    asen.add_argument("--image-root", default=None, help="folder the ASEN image paths are relative to (default: where ASEN expects the images)")
    asen.add_argument("--protocol", default=None, help="protocol table to write as .parquet (default: protocol.parquet beside the catalog)")


def run(args: argparse.Namespace) -> int:
    """Read the dataset, write the catalog and the problems table, and return the exit status."""
    root_text = args.root or os.environ.get(paths.DATA_ROOT_ENV, "").strip()
    if not root_text:
        _logger.error(
            "No dataset root given. Pass --root, set %s to the dataset folder, or run `mclfir data import`.",
            paths.DATA_ROOT_ENV,
        )
        return 1

    try:
        tables = READERS[args.source](paths.resolve(root_text), args)
    except (FileNotFoundError, PrepareError) as error:
        _logger.error("%s", error)
        return 1

    out = paths.resolve(args.out)
    problems_out = paths.resolve(args.problems) if args.problems else default_problems_path(out)
    catalog = tables.catalog
    if catalog is not None and args.labels:
        catalog, label_problems = merge_label_files(catalog, paths.resolve(args.labels))
        tables.problems += label_problems
    if catalog is not None:
        catalog = subsample(catalog, args.max_images)
        catalog.root = root_for_metadata(catalog.root)
        write_catalog(catalog, out)
    elif out.exists():
        out.unlink()
        _logger.info("Removed the previous catalog %s, because no catalog could be built", out)
    write_problems(tables.problems, problems_out)

    if tables.protocol is not None and catalog is not None:
        _write_asen_protocol(tables.protocol, catalog, args, out)

    for line in format_summary(catalog, tables.problems, out, problems_out):
        print(line)
    return 1 if has_stop(tables.problems) else 0


def import_adapter(source: str) -> ModuleType:
    """Import and return the adapter module of ``source``.

    Raises SourceUnavailableError when the module is not part of this installation, and
    KeyError for an unknown source.
    """
    if source not in ADAPTER_MODULES:
        raise KeyError(f"Unknown source {source!r}. Known sources: {', '.join(ADAPTER_MODULES)}")

    module_name = ADAPTER_MODULES[source]
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name != module_name:
            raise
        available = [name for name, module in ADAPTER_MODULES.items() if importlib.util.find_spec(module) is not None]
        raise SourceUnavailableError(
            f"The {source!r} adapter ({module_name}) is not available in this installation. "
            f"Use --source with one of the adapters that is: {', '.join(available) or 'none'}."
        ) from error


def read_fashion_products_source(root: Path, args: argparse.Namespace) -> SourceTables:
    """Read Fashion Product Images (``styles.csv`` and ``images/``)."""
    adapter = import_adapter("fashion-products")
    catalog, problems = adapter.read_fashion_products(root)
    return SourceTables(catalog, problems)


def read_fashionai_source(root: Path, args: argparse.Namespace) -> SourceTables:
    """Read the FashionAI attribute challenge layout (``Annotations/label.csv`` and ``Images/``)."""
    adapter = import_adapter("fashionai")
    catalog, problems = adapter.read_fashionai(root)
    return SourceTables(catalog, problems)


def read_asen_source(root: Path, args: argparse.Namespace) -> SourceTables:
    """Read one benchmark's ASEN split files, which also give the query/candidate protocol."""
    adapter = import_adapter("asen")
    if not args.dataset:
        raise PrepareError(f"--source asen needs --dataset, one of: {', '.join(adapter.DATASETS)}.")
    try:
        dataset = adapter.canonical_dataset(args.dataset)
    except ValueError as error:
        raise PrepareError(str(error)) from error

    image_root = paths.resolve(args.image_root) if args.image_root else None
    catalog, protocol, problems = adapter.read_asen(root, dataset, image_root=image_root)
    return SourceTables(catalog, problems, protocol)


# Source name -> reader. Each reader imports its adapter module when called.
READERS: dict[str, Callable[[Path, argparse.Namespace], SourceTables]] = {
    "fashion-products": read_fashion_products_source,
    "fashionai": read_fashionai_source,
    "asen": read_asen_source,
}


def _write_asen_protocol(protocol: pd.DataFrame, catalog: Catalog, args: argparse.Namespace, out: Path) -> None:
    """Write the protocol lines whose image is in the (possibly subsampled) catalog."""
    adapter = import_adapter("asen")
    kept_protocol = protocol[protocol[ID_COLUMN].isin(set(catalog.frame[ID_COLUMN]))]
    if len(kept_protocol) < len(protocol):
        _logger.warning(
            "Kept %d of %d protocol lines after --max-images %d; results on this subsample are not comparable to the published benchmark",
            len(kept_protocol), len(protocol), args.max_images,
        )
    protocol_out = paths.resolve(args.protocol) if args.protocol else out.with_name(adapter.PROTOCOL_FILENAME)
    adapter.write_protocol(kept_protocol, protocol_out)


def subsample(catalog: Catalog, max_images: int) -> Catalog:
    """Return the catalog cut to the ``max_images`` rows whose SHA-256 of the image id sorts lowest.

    The choice depends only on the ids, so it is the same on every run, and adding images
    replaces a kept image only by one whose hash sorts lower. Rows keep their catalog order.
    ``max_images`` 0 keeps every row.
    """
    frame = catalog.frame
    if max_images <= 0 or len(frame) <= max_images:
        return catalog

    keys = pd.DataFrame({
        "key": [_id_digest(image_id) for image_id in frame[ID_COLUMN]],
        "row": frame[ROW_COLUMN].to_numpy(),
        "position": range(len(frame)),
    })
    kept_positions = sorted(keys.sort_values(["key", "row"])["position"].iloc[:max_images])
    kept_frame = frame.iloc[kept_positions].reset_index(drop=True)

    _logger.info("Kept %d of %d images (--max-images %d)", len(kept_frame), len(frame), max_images)
    return Catalog(kept_frame, catalog.attributes, catalog.source, catalog.root, dict(catalog.extra, max_images=max_images))


def _id_digest(image_id: str) -> str:
    return hashlib.sha256(str(image_id).encode("utf-8", errors="surrogateescape")).hexdigest()


def root_for_metadata(root_text: str) -> str:
    """Return the root that the catalog paths are relative to, in the form stored in the catalog.

    The result is a POSIX path, relative to the project root when the root lies inside it and
    absolute otherwise. A relative ``root_text`` is taken from the project root. The adapter
    sets the root: the dataset root for most sources, the image folder for ``asen``.
    """
    root = Path(os.path.normpath(paths.resolve(root_text)))
    project = paths.project_root()

    for candidate in (root, root.resolve()):
        if candidate.is_relative_to(project):
            return candidate.relative_to(project).as_posix() or "."
    return root.as_posix()


def default_problems_path(out: Path) -> Path:
    """Return ``<out stem>.problems.parquet`` beside the catalog file."""
    return out.with_name(out.stem + PROBLEMS_SUFFIX)


def write_problems(problems: list[Problem], out: Path) -> Path:
    """Write the problems table (one row per problem, the Problem fields as columns) as Parquet."""
    out.parent.mkdir(parents=True, exist_ok=True)
    problems_frame(problems).to_parquet(out, index=False)
    _logger.info("Wrote %d problems to %s", len(problems), out)
    return out


def format_summary(catalog: Catalog | None, problems: list[Problem], out: Path, problems_out: Path) -> list[str]:
    """Return the lines that the command prints: counts, one line per kind of problem, and the outcome."""
    lines = []
    if catalog is None:
        lines.append("No catalog written: the label file cannot be read into one.")
    else:
        frame = catalog.frame
        recovered = len(catalog.extra.get("recovered_rows", []))
        lines.append(
            f"Catalog {out}: {len(frame)} images, {int(frame[HASH_COLUMN].notna().sum())} with an image file, "
            f"{len(catalog.attributes)} attributes ({', '.join(catalog.attributes)}), {recovered} rows recovered."
        )

    lines.append(f"Problems {problems_out}: {len(problems)}")
    lines += summarize(problems)
    if has_stop(problems):
        lines.append("Stopped: fix the problems marked [stop] in the source files and run prepare again.")
    return lines


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: use 0 (keep all) or a positive number of images") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"invalid value {value}: use 0 (keep all) or a positive number of images")
    return value
