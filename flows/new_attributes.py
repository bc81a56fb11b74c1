"""The new-attributes flow: plan an increment for attributes the champion does not serve, then train it.

New attributes reach the data as label files (``mclfir data add-attributes LABELS.csv``). This
flow validates the data, compares the catalog's attributes with the plan and with the champion
model, and appends one increment for the new ones, parented on the last increment. It commits
the plan change (``params.yaml``, ``dvc.lock`` and the label files' ``.dvc`` records) with git,
runs the continual flow, which trains only the new increment because DVC finds the others up
to date, and commits the trained state.

Run it from the project root: ``python -m flows.new_attributes``. The deployment served by
``python -m flows.deploy`` runs it on a cron schedule and on the event ``mclfir.attributes.added``.
"""

import argparse
import logging
import sys

from prefect import flow, get_run_logger

from flows.continual import continual, format_summary
from tasks.data import validate_data
from tasks.plan import find_new_attributes, plan_increment
from tasks.registry import champion_summary
from tasks.repository import commit_paths, repository_slot

FLOW_NAME = "mclfir-new-attributes"
PLAN_PATHS = ["params.yaml", "dvc.lock", "data/labels"]
RESULT_PATHS = ["dvc.lock", "metrics", "plots"]


@flow(name=FLOW_NAME, log_prints=True)
def new_attributes(commit: bool = True, register_version: bool = True) -> dict:
    """Add an increment for new attributes and train it; return what was planned and the continual outcome.

    With ``commit`` the plan change and the trained state are committed with git. Without new
    attributes nothing changes and the continual flow does not run.
    """
    logger = get_run_logger()
    with repository_slot():
        validate_data()
        champion = champion_summary()
        new = find_new_attributes(champion["attributes"] if champion else [])
        if not new:
            logger.info("No new attributes: the plan and the champion cover every attribute in the data.")
            return {"increment": None, "attributes": []}

        increment = plan_increment(new)
        validate_data()
        if commit:
            commit_paths(PLAN_PATHS, f"Plan increment {increment} for {', '.join(new)}")

        outcome = continual(register_version=register_version)
        if commit:
            commit_paths(RESULT_PATHS, f"Train increment {increment}")
    return {"increment": increment, "attributes": new, "continual": outcome}


def main(argv: list[str] | None = None) -> int:
    """Run the flow once with Prefect's ephemeral API (or PREFECT_API_URL) and print what it did."""
    parser = argparse.ArgumentParser(prog="python -m flows.new_attributes", description=__doc__.splitlines()[0])
    parser.add_argument("--no-commit", action="store_true", help="leave the plan change and the results uncommitted")
    parser.add_argument("--no-register", action="store_true", help="stop after the report; register nothing")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")

    result = new_attributes(commit=not args.no_commit, register_version=not args.no_register)
    if result["increment"] is None:
        print("No new attributes; nothing to train.")
        return 0
    print(f"Planned increment {result['increment']} for {', '.join(result['attributes'])}")
    print("\n".join(format_summary(result["continual"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
