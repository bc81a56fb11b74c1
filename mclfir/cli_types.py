"""Argument types shared by the command-line options of several commands."""

import argparse


def positive_int(text: str) -> int:
    """Parse a positive whole number, or reject the value with a message that names it."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: use a positive whole number")
    return value
