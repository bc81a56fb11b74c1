"""``mclfir data add-attributes``: add new attributes from a user's labels file.

The command checks ``LABELS.csv`` and writes one label file per attribute into the label folder
(:mod:`mclfir.data.labels`), records each file with ``dvc add``, and emits the Prefect event
``mclfir.attributes.added`` (:mod:`mclfir.events`) so that a deployment can run the pipeline
on the new attributes. It exits 1 when the labels file is rejected or ``dvc add`` fails.
"""

import argparse
import logging
import shutil
import subprocess
import sys
from pathlib import Path

from mclfir import events, paths
from mclfir.data.labels import DEFAULT_CATALOG, DEFAULT_LABELS_DIR, add_attributes, display_path, label_file_path

_logger = logging.getLogger(__name__)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``mclfir data add-attributes``."""
    parser.add_argument(
        "labels",
        metavar="LABELS.csv",
        help="labels file, relative to the working directory: first column id or image_id, then one column per new attribute",
    )
    parser.add_argument("--labels-dir", default=DEFAULT_LABELS_DIR, metavar="DIR", help="folder of the label files, relative to the project root (default: %(default)s)")
    parser.add_argument(
        "--catalog",
        default=None,
        metavar="PATH",
        help=f"catalog whose attributes and image ids the labels are checked against (default: {DEFAULT_CATALOG} when it exists)",
    )
    parser.add_argument("--replace", action="store_true", help="overwrite the label files of attributes that already have one")
    parser.add_argument("--no-dvc", action="store_true", help="do not record the written files with `dvc add`")
    parser.add_argument("--no-event", action="store_true", help="do not emit the Prefect event mclfir.attributes.added")


def run(args: argparse.Namespace) -> int:
    """Write the label files, record them in DVC, emit the event, and return the exit status."""
    labels_dir = paths.resolve(args.labels_dir)
    try:
        attributes = add_attributes(Path(args.labels), labels_dir, catalog_path=args.catalog, replace=args.replace)
    except (FileNotFoundError, ValueError) as error:
        _logger.error("%s", error)
        return 1

    files = [display_path(label_file_path(labels_dir, name)) for name in attributes]
    noun = "attribute" if len(attributes) == 1 else "attributes"
    print(f"Added {len(attributes)} {noun} ({', '.join(attributes)}) as label files: {' '.join(files)}")

    if not args.no_dvc and not record_in_dvc(files):
        return 1
    if not args.no_event:
        print(events.emit_attributes_added(attributes, files))

    for line in next_steps(files, recorded=not args.no_dvc, emitted=not args.no_event):
        print(line)
    return 0


def record_in_dvc(files: list[str]) -> bool:
    """Run ``dvc add`` on ``files`` from the project root and return True when it succeeds.

    On failure, print dvc's error and the command that records the files by hand.
    """
    project = paths.project_root()
    command = [dvc_executable(), "add", *files]
    try:
        result = subprocess.run(command, cwd=project, capture_output=True, text=True)
    except FileNotFoundError as error:
        print(f"Could not run dvc: {error}")
        result = None

    if result is not None and result.returncode == 0:
        print(f"Recorded in DVC: {' '.join(file + '.dvc' for file in files)}")
        return True

    if result is not None:
        print(result.stderr.strip() or result.stdout.strip())
    print(
        f"The label files were written but not recorded in DVC. Record them from {project} with "
        f"`dvc add {' '.join(files)}`, then run `python -m flows.new_attributes`."
    )
    return False


def dvc_executable() -> str:
    """Return the ``dvc`` executable beside the running Python when it exists, else ``dvc`` from PATH."""
    beside_python = Path(sys.executable).parent / "dvc"
    if beside_python.is_file():
        return str(beside_python)
    return shutil.which("dvc") or "dvc"


def next_steps(files: list[str], recorded: bool, emitted: bool) -> list[str]:
    """Return the lines that tell the user what to do after the label files are written."""
    lines = []
    if recorded:
        folders = sorted({str(Path(file).parent.as_posix()) for file in files})
        tracked = [file + ".dvc" for file in files] + [f"{folder}/.gitignore" for folder in folders]
        lines.append(f"Next: commit the DVC records with `git add {' '.join(tracked)}` and `git commit`.")
    else:
        lines.append(f"Next: record the label files with `dvc add {' '.join(files)}`, then commit the .dvc files.")
    if not emitted:
        lines.append("Then run the flow from the project root with `python -m flows.new_attributes`.")
    return lines
