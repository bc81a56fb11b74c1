"""``mclfir tracking finish``: mark the parent MLflow run as ended, with the pipeline's outcome."""

import argparse

from mclfir.paths import PARENT_RUN_FILE

STATUSES = ("FINISHED", "FAILED", "KILLED")


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--status", default="FINISHED", choices=STATUSES, help="final status of the parent run")
    parser.add_argument("--parent-file", default=PARENT_RUN_FILE, help="file that contains the parent run id (default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    from mclfir.tracking import finish_pipeline_run

    run_id = finish_pipeline_run(args.status, args.parent_file)
    if run_id is None:
        print(f"No parent run to finish: {args.parent_file} not found; run `mclfir tracking start` first.")
        return 1
    print(f"Parent run {run_id} ended as {args.status}.")
    return 0
