"""Continual-learning figures over the increments: the R matrix, forgetting, BWT, and their plots.

``R`` is a list with one dict per increment, in plan order: ``R[t][a]`` is the mAP (percent) of
attribute ``a`` measured after training increment ``t``. An attribute appears from the increment
that introduced it onwards. With ``T`` the last increment and ``t_a`` the increment that
introduced ``a``, and "earlier attributes" the ones with ``t_a < T``:

- final mAP: the plain mean of ``R[T]`` over every attribute learned so far.
- forgetting: the mean over earlier attributes of ``max_{t_a <= t < T} R[t][a] - R[T][a]``
  (positive when an attribute lost accuracy); 0 with one increment.
- backward transfer (BWT): the mean over earlier attributes of ``R[T][a] - R[t_a][a]``
  (negative when later training hurt it); 0 with one increment.

NaN entries (an attribute with no usable query) are left out of these means.
"""

import csv
import json
import logging
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

_logger = logging.getLogger(__name__)

Plan = Mapping[str, Sequence[str]]
RMatrix = Sequence[Mapping[str, float | None]]


def _value(row: Mapping[str, float | None], attribute: str) -> float:
    value = row.get(attribute)
    return float("nan") if value is None else float(value)


def introduced_at(plan: Plan) -> dict[str, int]:
    """Return the index of the increment that introduced each attribute, in plan order."""
    first: dict[str, int] = {}
    for index, attributes in enumerate(plan.values()):
        for attribute in attributes:
            if attribute in first:
                raise ValueError(f"Attribute {attribute!r} appears in more than one increment of the plan.")
            first[attribute] = index
    return first


def _check_r(r_matrix: RMatrix, plan: Plan) -> None:
    if not r_matrix:
        raise ValueError("The R matrix is empty; evaluate at least one increment first.")
    if len(r_matrix) > len(plan):
        raise ValueError(f"The R matrix has {len(r_matrix)} rows but the plan has only {len(plan)} increments.")

    seen: list[str] = []
    for row, (name, attributes) in zip(r_matrix, plan.items()):
        seen.extend(attributes)
        missing = [attribute for attribute in seen if attribute not in row]
        if missing:
            raise ValueError(
                f"The R matrix row of increment {name!r} lacks attributes {missing}; "
                f"evaluate every attribute seen up to {name}."
            )


def final_map(r_matrix: RMatrix) -> float:
    """Return the plain mean of the last row of R (NaN entries left out)."""
    values = [_value(r_matrix[-1], attribute) for attribute in r_matrix[-1]]
    return _nanmean(values)


def forgetting(r_matrix: RMatrix, plan: Plan) -> float:
    """Return the mean over earlier attributes of the drop from their best earlier mAP to the last."""
    _check_r(r_matrix, plan)
    last = len(r_matrix) - 1
    drops = []
    for attribute, first in introduced_at(plan).items():
        if first >= last:
            continue
        best_earlier = _nanmax([_value(r_matrix[t], attribute) for t in range(first, last)])
        drops.append(best_earlier - _value(r_matrix[last], attribute))
    return _nanmean(drops) if drops else 0.0


def backward_transfer(r_matrix: RMatrix, plan: Plan) -> float:
    """Return the mean over earlier attributes of their last mAP minus their mAP when introduced."""
    _check_r(r_matrix, plan)
    last = len(r_matrix) - 1
    changes = []
    for attribute, first in introduced_at(plan).items():
        if first >= last:
            continue
        changes.append(_value(r_matrix[last], attribute) - _value(r_matrix[first], attribute))
    return _nanmean(changes) if changes else 0.0


def _nanmean(values: Sequence[float]) -> float:
    array = np.asarray(values, dtype=np.float64)
    array = array[~np.isnan(array)]
    return float(array.mean()) if array.size else float("nan")


def _nanmax(values: Sequence[float]) -> float:
    array = np.asarray(values, dtype=np.float64)
    array = array[~np.isnan(array)]
    return float(array.max()) if array.size else float("nan")


def to_json_number(value: float | None) -> float | None:
    """Return ``value`` as a float, or None for NaN, because JSON has no NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return float(value)


def read_json(path: Path, what_makes_it: str) -> dict[str, Any]:
    """Read a JSON file, naming the command that writes it when it is missing."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; create it with `{what_makes_it}`.")
    with path.open(encoding="utf-8") as handle:
        return json.load(handle)


def read_cost(train_metrics_dir: Path, increment: str) -> dict[str, Any]:
    """Return ``cost`` (``wall_s``, ``cpu_s``, ``images_seen``, ``steps``) of ``metrics/train/<increment>.json``.

    A missing file or key is logged as a warning and gives null figures, so the report of
    models trained elsewhere still builds.
    """
    path = Path(train_metrics_dir) / f"{increment}.json"
    empty = {"increment": increment, "wall_s": None, "cpu_s": None, "images_seen": None, "steps": None}
    if not path.is_file():
        _logger.warning("Training metrics %s not found; the cost of increment %s is left empty", path, increment)
        return empty

    with path.open(encoding="utf-8") as handle:
        cost = json.load(handle).get("cost")
    if not isinstance(cost, dict):
        _logger.warning("%s has no 'cost' mapping; the cost of increment %s is left empty", path, increment)
        return empty
    return {
        "increment": increment,
        "wall_s": cost.get("wall_s"),
        "cpu_s": cost.get("cpu_s"),
        "images_seen": cost.get("images_seen"),
        "steps": cost.get("steps"),
    }


def build_report(
    plan: Plan,
    increment_metrics: Sequence[Mapping[str, Any]],
    costs: Sequence[Mapping[str, Any]],
    which: str = "student",
) -> dict[str, Any]:
    """Build the content of ``metrics/continual.json`` from per-increment evaluation results.

    ``increment_metrics`` are the dicts of ``metrics/increments/<increment>.json`` for the first
    ``len(increment_metrics)`` increments of ``plan``, in order. ``which`` picks the model
    (``student`` or ``ema``) whose figures are reported.
    """
    names = list(plan)[: len(increment_metrics)]
    covered_plan = {name: list(plan[name]) for name in names}
    for name, metrics in zip(names, increment_metrics):
        if metrics.get("increment") != name:
            raise ValueError(
                f"Expected evaluation results of increment {name!r} but got {metrics.get('increment')!r}; "
                "pass them in plan order."
            )
        if which not in metrics:
            raise ValueError(
                f"Evaluation results of increment {name!r} have no {which!r} figures; "
                f"run `mclfir evaluate --increment {name} --which {which}` (or both)."
            )

    per_attribute = [metrics[which]["attributes"] for metrics in increment_metrics]
    r_matrix = [{attribute: figures["map"] for attribute, figures in row.items()} for row in per_attribute]
    _check_r(r_matrix, covered_plan)
    last = per_attribute[-1]

    return {
        "model": which,
        "increments": [list(attributes) for attributes in covered_plan.values()],
        "increment_names": names,
        "R": [{attribute: to_json_number(value) for attribute, value in row.items()} for row in r_matrix],
        "final_map": to_json_number(final_map(r_matrix)),
        "forgetting": to_json_number(forgetting(r_matrix, covered_plan)),
        "bwt": to_json_number(backward_transfer(r_matrix, covered_plan)),
        "chance": {attribute: to_json_number(figures["chance"]) for attribute, figures in last.items()},
        "balanced": {attribute: to_json_number(figures["balanced"]) for attribute, figures in last.items()},
        "map_at_k": {attribute: to_json_number(figures["map_at_k"]) for attribute, figures in last.items()},
        "cost": [dict(cost) for cost in costs[: len(names)]],
    }


def r_array(report: Mapping[str, Any]) -> tuple[np.ndarray, list[str], list[str]]:
    """Return R as a ``[increments, attributes]`` float array (NaN where not yet learned), row and column names."""
    attributes = [attribute for group in report["increments"] for attribute in group]
    rows = [[_value(row, attribute) for attribute in attributes] for row in report["R"]]
    return np.array(rows, dtype=np.float64).reshape(len(rows), len(attributes)), report["increment_names"], attributes


def plot_map_heatmap(report: Mapping[str, Any], out: Path) -> Path:
    """Draw R as an annotated heatmap (increments x attributes, mAP in percent) and save it as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values, increments, attributes = r_array(report)
    colormap = matplotlib.colormaps["viridis"].with_extremes(bad="lightgrey")

    width = max(6.0, 1.1 * len(attributes) + 2.0)
    height = max(3.0, 0.6 * len(increments) + 2.0)
    figure, axes = plt.subplots(figsize=(width, height))
    image = axes.imshow(np.ma.masked_invalid(values), cmap=colormap, vmin=0.0, vmax=100.0, aspect="auto")

    for row in range(values.shape[0]):
        for column in range(values.shape[1]):
            value = values[row, column]
            if np.isnan(value):
                continue
            text_colour = "white" if value < 60 else "black"
            axes.text(column, row, f"{value:.1f}", ha="center", va="center", color=text_colour, fontsize=9)

    axes.set_xticks(range(len(attributes)), attributes, rotation=35, ha="right")
    axes.set_yticks(range(len(increments)), increments)
    axes.set_xlabel("attribute")
    axes.set_ylabel("after increment")
    axes.set_title(_heatmap_title(report))
    figure.colorbar(image, ax=axes, label="mAP (%)")
    figure.tight_layout()

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=120)
    plt.close(figure)
    _logger.info("Wrote mAP heatmap to %s", out)
    return out


def _heatmap_title(report: Mapping[str, Any]) -> str:
    def number(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.1f}"

    return (
        f"{report['model']} mAP: final {number(report['final_map'])}, "
        f"forgetting {number(report['forgetting'])}, BWT {number(report['bwt'])}"
    )


def write_map_per_increment(report: Mapping[str, Any], out: Path) -> Path:
    """Write one CSV row per increment: ``step``, ``increment``, ``mean_map`` and one column per attribute.

    ``step`` is the 0-based increment index, the x field of a DVC linear plot; the attribute
    columns are its y fields. Cells of attributes not yet learned are left empty.
    """
    values, increments, attributes = r_array(report)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["step", "increment", "mean_map", *attributes])
        for step, (name, row) in enumerate(zip(increments, values)):
            cells = ["" if np.isnan(value) else f"{value:.4f}" for value in row]
            mean = _nanmean(row)
            writer.writerow([step, name, "" if np.isnan(mean) else f"{mean:.4f}", *cells])
    _logger.info("Wrote mAP per increment to %s", out)
    return out


def plot_map_per_increment(report: Mapping[str, Any], out: Path) -> Path:
    """Draw each attribute's mAP and the mean over learned attributes after every increment, as PNG.

    The same figures as the per-increment CSV. ``dvc plots show`` renders a PNG without network
    access, unlike its Vega-Lite templates, which load Vega from a CDN.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values, increments, attributes = r_array(report)
    steps = np.arange(len(increments))

    figure, axes = plt.subplots(figsize=(max(6.0, 1.2 * len(increments) + 3.0), 4.5))
    for column, attribute in enumerate(attributes):
        axes.plot(steps, values[:, column], marker="o", linewidth=1.2, label=attribute)
    means = np.array([_nanmean(row) for row in values])
    axes.plot(steps, means, color="black", linewidth=2.5, linestyle="--", marker="s", label="mean")

    axes.set_xticks(steps, increments)
    axes.set_xlabel("after increment")
    axes.set_ylabel("mAP (%)")
    axes.set_ylim(0.0, 100.0)
    axes.grid(alpha=0.3)
    axes.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    axes.set_title(f"{report['model']} mAP per increment")
    figure.tight_layout()

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=120)
    plt.close(figure)
    _logger.info("Wrote mAP per increment plot to %s", out)
    return out


def write_report(report: Mapping[str, Any], out: Path) -> Path:
    """Write the continual report as JSON (NaN written as null)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2, allow_nan=False)
        handle.write("\n")
    _logger.info("Wrote continual report to %s", out)
    return out


def aggregate(
    plan: Plan,
    increment_metrics_dir: Path,
    train_metrics_dir: Path,
    report_path: Path,
    plots_dir: Path,
    which: str = "student",
    last_increment: str | None = None,
) -> dict[str, Any]:
    """Build ``continual.json``, the heatmap and the per-increment CSV and PNG from each increment's results.

    Covers the plan's increments up to ``last_increment`` (default: the last of the plan); each
    must have ``<increment_metrics_dir>/<increment>.json``.
    """
    names = list(plan)
    if last_increment is not None:
        if last_increment not in plan:
            raise ValueError(f"Unknown increment {last_increment!r}; the plan has {', '.join(names)}.")
        names = names[: names.index(last_increment) + 1]

    increment_metrics = [
        read_json(Path(increment_metrics_dir) / f"{name}.json", f"mclfir evaluate --increment {name}") for name in names
    ]
    costs = [read_cost(Path(train_metrics_dir), name) for name in names]
    report = build_report({name: plan[name] for name in names}, increment_metrics, costs, which)

    write_report(report, Path(report_path))
    plot_map_heatmap(report, Path(plots_dir) / "map_heatmap.png")
    write_map_per_increment(report, Path(plots_dir) / "map_per_increment.csv")
    plot_map_per_increment(report, Path(plots_dir) / "map_per_increment.png")
    return report
