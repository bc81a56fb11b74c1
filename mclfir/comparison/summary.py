"""Build ``metrics/compare.json``: the continual-learning figures and the cost of every strategy.

Each strategy's entry has the keys of ``metrics/continual.json`` (built by
:func:`mclfir.continual.build_report` from the strategy's own evaluation and training files) and
its cost against joint training over the same increments:

- ``cost_ratio_to_joint``: cumulative training wall seconds over joint's;
- ``cpu_ratio_to_joint``: the same for CPU seconds, which other jobs on the machine inflate less;
- ``images_ratio_to_joint``: training images seen over joint's, which the plan fixes.

A strategy enters once its first increment is evaluated. The ratios cover the increments that
both it and joint have finished, and are null while joint has none.
"""

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from mclfir.continual import build_report, read_cost, read_json, to_json_number
from mclfir.strategies import STRATEGIES

_logger = logging.getLogger(__name__)

REFERENCE = "joint"
COST_FIELDS = {"cost_ratio_to_joint": "wall_s", "cpu_ratio_to_joint": "cpu_s", "images_ratio_to_joint": "images_seen"}


@dataclass(frozen=True)
class CompareLayout:
    """Folders of each strategy's files in the comparison pipeline, relative to the project root."""

    root: Path = Path("compare")

    def increment_metrics(self, strategy: str) -> Path:
        """Folder of the strategy's evaluation results, one ``<increment>.json`` each."""
        return self.root / "metrics" / strategy / "increments"

    def train_metrics(self, strategy: str) -> Path:
        """Folder of the strategy's training metrics, one ``<increment>.json`` each."""
        return self.root / "metrics" / strategy / "train"


def evaluated_increments(plan: Mapping[str, Sequence[str]], folder: Path) -> list[str]:
    """Return the leading increments of ``plan`` that have an evaluation file in ``folder``."""
    done = []
    for name in plan:
        if not (folder / f"{name}.json").is_file():
            break
        done.append(name)
    return done


def strategy_report(plan: Mapping[str, Sequence[str]], layout: CompareLayout, strategy: str) -> dict[str, Any] | None:
    """Return the continual report of ``strategy`` over its evaluated increments, or None before its first."""
    names = evaluated_increments(plan, layout.increment_metrics(strategy))
    if not names:
        return None

    metrics = [
        read_json(layout.increment_metrics(strategy) / f"{name}.json", f"dvc repro compare/dvc.yaml:evaluate@{strategy}-{name}")
        for name in names
    ]
    costs = [read_cost(layout.train_metrics(strategy), name) for name in names]
    report = build_report({name: plan[name] for name in names}, metrics, costs, which="student")
    report["complete"] = len(names) == len(plan)
    return report


def total_cost(report: Mapping[str, Any], field: str, increments: int) -> float | None:
    """Return the sum of ``field`` over the first ``increments`` cost entries, or None when one is missing."""
    values = [entry.get(field) for entry in report["cost"][:increments]]
    if len(values) < increments or any(value is None for value in values):
        return None
    return float(sum(values))


def add_cost_ratios(reports: dict[str, dict[str, Any]]) -> None:
    """Add the ``*_ratio_to_joint`` keys to every report, over the increments it shares with joint."""
    reference = reports.get(REFERENCE)
    for report in reports.values():
        shared = min(len(report["increment_names"]), len(reference["increment_names"])) if reference else 0
        report["ratio_increments"] = shared
        for key, field in COST_FIELDS.items():
            ours = total_cost(report, field, shared) if shared else None
            theirs = total_cost(reference, field, shared) if shared else None
            report[key] = to_json_number(ours / theirs) if ours is not None and theirs else None


def build_comparison(plan: Mapping[str, Sequence[str]], layout: CompareLayout = CompareLayout()) -> dict[str, dict[str, Any]]:
    """Return the content of ``metrics/compare.json``: strategy name -> report, for strategies evaluated so far."""
    reports = {}
    for name in STRATEGIES:
        report = strategy_report(plan, layout, name)
        if report is None:
            _logger.warning("Strategy %s has no evaluated increment yet; it is left out", name)
            continue
        reports[name] = report
    if not reports:
        raise FileNotFoundError(
            f"No strategy has evaluation results under {layout.root / 'metrics'}; run `make compare` first."
        )
    add_cost_ratios(reports)
    return reports
