"""Figures of the strategy comparison: mAP against training cost, and the forgetting curve."""

import logging
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from mclfir.continual import r_array

_logger = logging.getLogger(__name__)

Comparison = Mapping[str, Mapping[str, Any]]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure, out: Path) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(out, dpi=120)
    _pyplot().close(figure)
    _logger.info("Wrote %s", out)
    return out


def mean_map_per_increment(report: Mapping[str, Any]) -> np.ndarray:
    """Return ``[increments]``: the mean mAP over the attributes seen after each increment."""
    values, _, _ = r_array(report)
    return np.nanmean(values, axis=1)


def cumulative_wall_hours(report: Mapping[str, Any]) -> np.ndarray:
    """Return ``[increments]``: the cumulative training wall time in hours (NaN after a missing entry)."""
    seconds = [np.nan if entry.get("wall_s") is None else float(entry["wall_s"]) for entry in report["cost"]]
    return np.cumsum(np.asarray(seconds, dtype=np.float64)) / 3600.0


def plot_map_against_cost(comparison: Comparison, out: Path) -> Path:
    """Draw each strategy's mean mAP after every increment against its cumulative training time.

    The last point of a line is the strategy's final mAP and total cost.
    """
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(7.0, 4.5))
    for name, report in comparison.items():
        hours = cumulative_wall_hours(report)
        means = mean_map_per_increment(report)
        line = axes.plot(hours, means, marker="o", label=name)[0]
        axes.annotate(f"{means[-1]:.1f}", (hours[-1], means[-1]), textcoords="offset points", xytext=(6, 4), color=line.get_color())
    axes.set_xlabel("cumulative training wall time (h)")
    axes.set_ylabel("mean mAP over attributes seen (%)")
    axes.set_title("mAP after each increment against cumulative training cost")
    axes.grid(alpha=0.3)
    axes.legend()
    return _save(figure, out)


def plot_forgetting_curve(comparison: Comparison, out: Path) -> Path:
    """Draw the mAP of each first-increment attribute, and their mean, after every increment, per strategy."""
    plt = _pyplot()
    first = next(iter(comparison.values()))["increments"][0]
    panels = ["mean", *first]
    figure, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.6), squeeze=False)
    for name, report in comparison.items():
        values, increments, attributes = r_array(report)
        columns = [attributes.index(attribute) for attribute in first]
        series = {"mean": np.nanmean(values[:, columns], axis=1), **{attribute: values[:, attributes.index(attribute)] for attribute in first}}
        for panel_axes, panel in zip(axes[0], panels):
            panel_axes.plot(increments, series[panel], marker="o", label=name)
    for panel_axes, panel in zip(axes[0], panels):
        panel_axes.set_title("mean of the first increment" if panel == "mean" else panel)
        panel_axes.set_xlabel("after increment")
        panel_axes.grid(alpha=0.3)
    axes[0][0].set_ylabel("mAP (%)")
    axes[0][-1].legend()
    figure.suptitle("Forgetting: the first increment's attributes over later increments")
    return _save(figure, out)
