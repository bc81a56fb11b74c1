"""``mclfir registry register``: log a checkpoint as a pyfunc model, register it and run the gate."""

import argparse
import logging

_logger = logging.getLogger(__name__)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--checkpoint",
        default=None,
        help="checkpoint to register (default: models/<last increment of params.yaml>/checkpoint.pt)",
    )
    parser.add_argument("--report", default="metrics/continual.json", help="continual report with the mAP of each attribute")


def run(args: argparse.Namespace) -> int:
    from mclfir.config import load_params
    from mclfir.registry import register

    params = load_params()
    checkpoint = args.checkpoint or default_checkpoint(params)
    version = register(checkpoint, args.report, params)
    print(f"Registered version {version}")
    return 0


def default_checkpoint(params: dict) -> str:
    """Return ``models/<last increment>/checkpoint.pt`` for the increment plan in ``params``."""
    increments = list((params.get("increments") or {}).keys())
    if not increments:
        raise ValueError("No increments in params.yaml; pass --checkpoint with the checkpoint to register.")
    return f"models/{increments[-1]}/checkpoint.pt"
