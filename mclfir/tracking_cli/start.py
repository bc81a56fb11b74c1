"""``mclfir tracking start``: create the parent MLflow run that the pipeline's steps nest under."""

import argparse


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", default="pipeline", help="name of the parent run")


def run(args: argparse.Namespace) -> int:
    from mclfir.tracking import PARENT_RUN_FILE, start_pipeline_run

    run_id = start_pipeline_run(args.name)
    print(f"Started MLflow parent run {run_id}; the steps' runs nest under it (id stored in {PARENT_RUN_FILE}).")
    return 0
