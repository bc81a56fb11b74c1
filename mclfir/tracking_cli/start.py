"""``mclfir tracking start``: create the parent MLflow run that the pipeline's steps nest under."""

import argparse

from mclfir.paths import PARENT_RUN_FILE


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", default="pipeline", help="name of the parent run")
    parser.add_argument("--parent-file", default=PARENT_RUN_FILE, help="file that receives the parent run id (default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    from mclfir.tracking import start_pipeline_run

    run_id = start_pipeline_run(args.name, args.parent_file)
    print(f"Started MLflow parent run {run_id}; the steps' runs nest under it (id stored in {args.parent_file}).")
    return 0
