"""Command-line interface: one command per pipeline step. DVC stages call these.

Each command lives in its own module, which provides ``configure_parser(parser)`` to declare
its options and ``run(args) -> int`` to execute it and return the exit status. Modules keep
heavy imports (torch, Great Expectations) inside ``run`` so that ``mclfir --help`` stays fast.
"""

import argparse
import importlib
import logging
import sys

_logger = logging.getLogger(__name__)
_QUIET_LOGGERS = ("great_expectations", "httpx")
# Errors that mean bad input (files, parameters, tables); pyarrow's and PyYAML's derive from these.
_INPUT_ERRORS = (FileNotFoundError, NotADirectoryError, PermissionError, ValueError, KeyError)

# (command path, module, one-line help)
COMMANDS: list[tuple[tuple[str, ...], str, str]] = [
    (("data", "import"), "mclfir.data.importer", "copy the dataset named by MCLFIR_DATA_ROOT into the project, or download it"),
    (("data", "download"), "mclfir.data.download", "download Fashion Product Images from a hub (needs network)"),
    (("data", "prepare"), "mclfir.data.prepare", "read a dataset into one catalog table (Parquet)"),
    (("data", "add-attributes"), "mclfir.data.add_attributes", "add new attributes from a labels file and write one label file per attribute"),
    (("data", "validate"), "mclfir.data.validate", "validate a catalog with Great Expectations and image checks"),
    (("data", "split"), "mclfir.data.split", "split a validated catalog into train, valid and test, per attribute"),
    (("data", "plan"), "mclfir.data.increments", "check the increment plan against the data and write it out"),
    (("data", "cache"), "mclfir.data.image_cache", "decode every catalog image once into a memory-mapped array"),
    (("init",), "mclfir.init_model", "write the initial model that the first increment starts from"),
    (("train",), "mclfir.train", "train one increment: a new attribute head on the parent's backbone"),
    (("evaluate",), "mclfir.evaluate", "evaluate an increment's checkpoint (retrieval mAP), or aggregate the continual report"),
    (("index", "build"), "mclfir.search.build_cli", "embed the whole catalogue under every attribute the model serves, one index per attribute"),
    (("search",), "mclfir.search.cli", "find the catalogue items most similar to an image under one attribute"),
    (("registry", "register"), "mclfir.registry_cli.register", "register a checkpoint as an MLflow model version and run the promotion gate"),
    (("registry", "review"), "mclfir.registry_cli.review", "compare a registered version with the champion, per attribute"),
    (("registry", "promote"), "mclfir.registry_cli.promote", "make a version the champion against the gate, recording why"),
    (("compare", "lineage"), "mclfir.comparison.lineage_cli", "write an increment's lineage and the sha256 of the split files it reads"),
    (("compare", "report"), "mclfir.comparison.cli", "write metrics/compare.json, docs/results.md and its figures from the strategy comparison"),
    (("tracking", "start"), "mclfir.tracking_cli.start", "create the MLflow parent run that the pipeline's steps nest under"),
    (("tracking", "finish"), "mclfir.tracking_cli.finish", "mark the MLflow parent run as ended"),
]


def build_parser() -> argparse.ArgumentParser:
    """Return the top-level parser with every registered command."""
    parser = argparse.ArgumentParser(prog="mclfir", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    groups = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    group_parsers: dict[str, argparse._SubParsersAction] = {}
    for path, module_name, help_text in COMMANDS:
        module = importlib.import_module(module_name)
        if len(path) == 1:
            command_parser = groups.add_parser(path[0], help=help_text, description=help_text)
        else:
            group, name = path
            if group not in group_parsers:
                group_parser = groups.add_parser(group, help=f"{group} commands")
                group_parsers[group] = group_parser.add_subparsers(dest="subcommand", required=True, metavar="SUBCOMMAND")
            command_parser = group_parsers[group].add_parser(name, help=help_text, description=help_text)
        module.configure_parser(command_parser)
        command_parser.set_defaults(handler=module.run)
    return parser


def configure_logging(verbose: bool = False) -> None:
    """Set up logging once, for the command-line entry point."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    # Great Expectations logs internal bookkeeping at INFO on import; keep its warnings only.
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    """Run one command and return its exit status.

    Errors that describe bad input or a missing file (a missing catalog, an unknown increment,
    invalid parameters) are logged as one line and give exit status 1. ``--verbose`` adds the
    traceback. Other exceptions propagate, because they are bugs.
    """
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    try:
        return int(args.handler(args) or 0)
    except _INPUT_ERRORS as error:
        _logger.error("%s: %s", type(error).__name__, _message(error), exc_info=args.verbose)
        return 1


def _message(error: BaseException) -> str:
    # KeyError wraps its message in quotes; show the text itself.
    if isinstance(error, KeyError) and len(error.args) == 1 and isinstance(error.args[0], str):
        return error.args[0]
    return str(error)


if __name__ == "__main__":
    sys.exit(main())
