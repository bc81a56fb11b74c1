"""``mclfir registry review``: print a version against the champion, per attribute, with the gate's verdict."""

import argparse


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--version", default=None, help="model version to review (default: the challenger, else the newest)")


def run(args: argparse.Namespace) -> int:
    from mclfir.registry import review

    print(review(args.version))
    return 0
