"""``mclfir tracking finish``: mark the parent MLflow run as ended, with the pipeline's outcome."""

import argparse

STATUSES = ("FINISHED", "FAILED", "KILLED")


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--status", default="FINISHED", choices=STATUSES, help="final status of the parent run")


def run(args: argparse.Namespace) -> int:
    from mclfir.tracking import finish_pipeline_run

    run_id = finish_pipeline_run(args.status)
    if run_id is None:
        print("No parent run to finish: run `mclfir tracking start` first.")
        return 1
    print(f"Parent run {run_id} ended as {args.status}.")
    return 0
