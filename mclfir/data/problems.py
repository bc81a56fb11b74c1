"""Problems found in a dataset, collected in one pass and reported together.

Every check records a :class:`Problem` instead of raising on the first bad row, so a user
sees every defect of a dataset in one run. The action states what the pipeline does about it:

- ``stop``: the data may not be used; the command exits 1.
- ``set_aside``: the row, or the image's label for one attribute, is left out, counted and reported.
- ``guard``: the row is kept but excluded where it would harm evaluation (conflicting duplicates).
"""

import logging
from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Iterable, Literal

import pandas as pd

_logger = logging.getLogger(__name__)

Action = Literal["stop", "set_aside", "guard"]
ACTIONS: tuple[Action, ...] = ("stop", "set_aside", "guard")
_EXAMPLES_SHOWN = 5


@dataclass(frozen=True)
class Problem:
    """One defect: which check found it, where it is, and what to do about it."""

    check: str
    action: Action
    message: str
    file: str = ""
    row: int | None = None
    image_id: str = ""
    column: str = ""
    value: str = ""

    def location(self) -> str:
        """Return ``file:row`` (or the parts that are known) for messages."""
        if self.file and self.row is not None:
            return f"{self.file}:{self.row}"
        return self.file or (f"row {self.row}" if self.row is not None else "")


def problems_frame(problems: Iterable[Problem]) -> pd.DataFrame:
    """Return problems as a table with one row each, in the order found."""
    columns = list(Problem.__dataclass_fields__)
    records = [{key: _printable(value) for key, value in asdict(problem).items()} for problem in problems]
    frame = pd.DataFrame.from_records(records, columns=columns)
    frame["row"] = frame["row"].astype("Int64")
    return frame


def _printable(value: object) -> object:
    """Return text with undecodable bytes (read with ``surrogateescape``) shown as ``\\xNN`` escapes."""
    if not isinstance(value, str):
        return value
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def has_stop(problems: Iterable[Problem]) -> bool:
    """Return True when any problem means the data may not be used."""
    return any(problem.action == "stop" for problem in problems)


def summarize(problems: Iterable[Problem]) -> list[str]:
    """Return one summary line per (action, check) with its count and a few examples; stops add their fix."""
    grouped: dict[tuple[str, str], list[Problem]] = defaultdict(list)
    for problem in problems:
        grouped[(problem.action, problem.check)].append(problem)

    lines = []
    for action in ACTIONS:
        for (group_action, check), members in grouped.items():
            if group_action != action:
                continue
            examples = "; ".join(_describe(problem) for problem in members[:_EXAMPLES_SHOWN])
            more = f"; and {len(members) - _EXAMPLES_SHOWN} more" if len(members) > _EXAMPLES_SHOWN else ""
            lines.append(f"[{action}] {check}: {len(members)} ({examples}{more})")
            if action == "stop":
                # A stop needs a fix, so show what the first problem says to do.
                lines.append(f"    {_printable(members[0].message)}")
    return lines


def _describe(problem: Problem) -> str:
    parts = [problem.location()]
    if problem.image_id:
        parts.append(f"id {problem.image_id}")
    if problem.column:
        parts.append(f"{problem.column}={problem.value!r}")
    described = " ".join(part for part in parts if part)
    return described or problem.message
