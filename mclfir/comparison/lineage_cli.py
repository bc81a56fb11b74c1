"""``mclfir compare lineage``: write the lineage file of one increment for the comparison pipeline."""

import argparse
import logging

from mclfir.config import load_params
from mclfir.paths import resolve

_logger = logging.getLogger(__name__)

DEFAULT_SPLITS = "data/splits"


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``mclfir compare lineage``."""
    parser.add_argument("--increment", required=True, help="increment of the plan in params.yaml")
    parser.add_argument("--splits", default=DEFAULT_SPLITS, help="folder of the split files, one folder per increment (default: %(default)s)")
    parser.add_argument("--out", required=True, help="lineage file to write (JSON)")


def run(args: argparse.Namespace) -> int:
    """Write the increment's lineage and the sha256 of the split files it reads."""
    from mclfir.comparison.lineage import lineage_record, write_lineage
    from mclfir.data.increments import load_plan

    record = lineage_record(load_plan(load_params()), args.increment, resolve(args.splits))
    out = write_lineage(record, resolve(args.out))
    _logger.info("Wrote %s: %s over %d split files", out, ", ".join(record["lineage"]), len(record["splits_sha256"]))
    return 0
