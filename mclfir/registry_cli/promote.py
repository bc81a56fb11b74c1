"""``mclfir registry promote``: make a version the champion against the gate's verdict, recording why."""

import argparse


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--version", required=True, help="model version to make the champion")
    parser.add_argument("--reason", required=True, help="why the gate is overridden; stored in the version's tags")


def run(args: argparse.Namespace) -> int:
    from mclfir.registry import promote

    previous = promote(args.version, args.reason)
    print(f"Version {args.version} is the champion (previous champion: {previous or 'none'})")
    return 0
