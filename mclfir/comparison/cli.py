"""``mclfir compare report``: write metrics/compare.json, docs/results.md and its figures from the comparison's results."""

import argparse
import json
import logging

from mclfir.config import load_eval_config, load_params
from mclfir.paths import resolve

_logger = logging.getLogger(__name__)

DEFAULT_OUT = "metrics/compare.json"
DEFAULT_DOC = "docs/results.md"
DEFAULT_FIGURES = "docs/figures"


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``mclfir compare report``."""
    parser.add_argument("--compare-dir", default="compare", help="folder of the comparison pipeline (default: %(default)s)")
    parser.add_argument("--out", default=DEFAULT_OUT, help="comparison metrics file (default: %(default)s)")
    parser.add_argument("--doc", default=DEFAULT_DOC, help="results document (default: %(default)s)")
    parser.add_argument("--figures", default=DEFAULT_FIGURES, help="folder of the figures (default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    """Build the comparison from every strategy evaluated so far and write its three outputs."""
    from mclfir.comparison.figures import plot_forgetting_curve, plot_map_against_cost
    from mclfir.comparison.results_doc import format_number, training_devices, write_results
    from mclfir.comparison.summary import CompareLayout, build_comparison
    from mclfir.data.increments import load_plan

    params = load_params()
    plan = load_plan(params)
    # A plan may branch: the report follows the last increment's lineage, as `mclfir evaluate` does.
    plan_attributes = plan.lineage_attributes(plan.order[-1])
    layout = CompareLayout(resolve(args.compare_dir))
    comparison = build_comparison(plan_attributes, layout)

    out = resolve(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(comparison, indent=2, allow_nan=False) + "\n", encoding="utf-8")

    figures = resolve(args.figures)
    plot_map_against_cost(comparison, figures / "compare_cost.png")
    plot_forgetting_curve(comparison, figures / "compare_forgetting.png")
    devices = training_devices([layout.train_metrics(name) for name in comparison])
    lineage_plan = {name: entry for name, entry in plan.to_dict().items() if name in plan_attributes}
    doc = write_results(comparison, lineage_plan, devices, resolve(args.doc), load_eval_config(params).split)

    for name, report in comparison.items():
        print(
            f"{name}: {len(report['increment_names'])}/{len(plan_attributes)} increments, final mAP {format_number(report['final_map'])}, "
            f"forgetting {format_number(report['forgetting'])}, wall / joint {format_number(report['cost_ratio_to_joint'], 3)}"
        )
    print(f"Wrote {out}, {doc} and the figures in {figures}")
    return 0
