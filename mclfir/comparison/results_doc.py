"""Write ``docs/results.md`` from ``metrics/compare.json``: tables, figures, the verdict on the claim, and how to reproduce.

The published claim of the method is that it reaches accuracy close to joint training at about
30% of joint's cumulative training cost, with much less forgetting than plain fine-tuning. The
document states the thresholds it applies to those words and, for each part, whether the measured
figures meet it.
"""

import importlib.metadata
import json
import os
import platform
from pathlib import Path
from typing import Any, Mapping

from mclfir.comparison.figures import mean_map_per_increment
from mclfir.strategies import STRATEGIES

Comparison = Mapping[str, Mapping[str, Any]]

# Thresholds for the claim's words: "close" accuracy, "about 30%" of the cost, "much less" forgetting.
CLOSE_MAP_POINTS = 2.0
CLAIMED_COST_RATIO = 0.30
COST_RATIO_LIMIT = 0.40
FORGETTING_SHARE_LIMIT = 0.5

FIGURES = {
    "cost": ("figures/compare_cost.png", "Mean mAP after each increment against cumulative training wall time"),
    "forgetting": ("figures/compare_forgetting.png", "mAP of the first increment's attributes after each increment"),
}


def format_number(value: Any, digits: int = 2, suffix: str = "") -> str:
    """Return ``value`` with ``digits`` decimals and ``suffix``, or "n/a" when it is missing."""
    return "n/a" if value is None else f"{float(value):.{digits}f}{suffix}"


def _percent(value: Any) -> str:
    return "n/a" if value is None else f"{100.0 * float(value):.0f}%"


def _hours(report: Mapping[str, Any], field: str) -> str:
    values = [entry.get(field) for entry in report["cost"]]
    if any(value is None for value in values):
        return "n/a"
    return f"{sum(values) / 3600.0:.2f}"


def _images(report: Mapping[str, Any]) -> str:
    values = [entry.get("images_seen") for entry in report["cost"]]
    return "n/a" if any(value is None for value in values) else f"{sum(values):,}"


def _signed(value: Any) -> str:
    return "n/a" if value is None else f"{float(value):+.2f}"


def cost_verdict(report: Mapping[str, Any]) -> str:
    """Return the verdict on the cost part of the claim, from the wall-time and CPU-time ratios to joint."""
    ratios = {
        measure: report[key]
        for measure, key in (("wall time", "cost_ratio_to_joint"), ("CPU time", "cpu_ratio_to_joint"))
        if report.get(key) is not None
    }
    if not ratios:
        return "**not measurable**: a training cost is missing, so there is no ratio."
    if all(ratio <= COST_RATIO_LIMIT for ratio in ratios.values()):
        return "**met**."
    if all(ratio > COST_RATIO_LIMIT for ratio in ratios.values()):
        return f"**not met**: the measured {' and '.join(ratios)} ratios are above {COST_RATIO_LIMIT:.0%}."
    figures = ", ".join(f"{measure} {_percent(ratio)}" for measure, ratio in ratios.items())
    return (
        f"**depends on the measure**: {figures} against the {COST_RATIO_LIMIT:.0%} limit. "
        "Other jobs on the machine lengthen wall times, so rerun the comparison on an idle machine to settle it."
    )


def forgetting_verdict(ours: Mapping[str, Any], finetune: Mapping[str, Any]) -> str:
    """Return the verdict on the forgetting part of the claim, from MCL-FIR's forgetting against fine-tuning's."""
    if ours["forgetting"] is None or finetune["forgetting"] is None:
        return "**not measurable**: a forgetting figure is missing."
    if finetune["forgetting"] <= 0:
        return "**not measurable**: fine-tuning did not forget on this plan."
    share = ours["forgetting"] / finetune["forgetting"]
    if share <= FORGETTING_SHARE_LIMIT:
        return "**met**."
    return f"**not met**: MCL-FIR forgets {share:.0%} as much as fine-tuning."


def claim_section(comparison: Comparison, plan_size: int) -> list[str]:
    """Return the lines that compare the measured figures with the claim, with a verdict for each part."""
    lines = ["## The claim against the measurements", ""]
    missing = [name for name in ("mclfir", "finetune", "joint") if not comparison.get(name, {}).get("complete")]
    if missing:
        done = ", ".join(f"{name} ({len(report['increment_names'])} of {plan_size} increments)" for name, report in comparison.items())
        lines += [
            f"The comparison is not finished: {', '.join(missing)} lack increments. Evaluated so far: {done}. "
            "The verdicts on the claim wait for mclfir, finetune and joint to finish; `make compare` continues where it stopped.",
            "",
        ]
        return lines

    unfinished = [
        f"{name} ({len(comparison[name]['increment_names']) if name in comparison else 0} of {plan_size} increments)"
        for name in STRATEGIES
        if not comparison.get(name, {}).get("complete")
    ]
    if unfinished:
        lines += [
            f"Not finished yet: {', '.join(unfinished)}. The verdicts below need only mclfir, finetune and joint; "
            "`make compare` continues the rest where it stopped.",
            "",
        ]

    ours, joint, finetune = comparison["mclfir"], comparison["joint"], comparison["finetune"]
    if ours["final_map"] is None or joint["final_map"] is None:
        return lines + ["The final mAP of MCL-FIR or joint training is missing from metrics/compare.json; no verdict is possible.", ""]

    gap = joint["final_map"] - ours["final_map"]
    close = gap <= CLOSE_MAP_POINTS
    return lines + [
        f"Thresholds used here: accuracy is close when the final mAP is at most {CLOSE_MAP_POINTS:g} points below "
        f"joint's. The cost matches \"about {CLAIMED_COST_RATIO:.0%}\" when the wall-time and CPU-time ratios are at most "
        f"{COST_RATIO_LIMIT:.0%}. Forgetting is much less when it is at most {FORGETTING_SHARE_LIMIT:.0%} of fine-tuning's.",
        "",
        f"1. **Accuracy close to joint training.** MCL-FIR's final mAP is {ours['final_map']:.2f} against joint's "
        f"{joint['final_map']:.2f}, a gap of {gap:+.2f} points: "
        + ("**met**." if close else f"**not met**: the gap is larger than {CLOSE_MAP_POINTS:g} points."),
        f"2. **At about {CLAIMED_COST_RATIO:.0%} of joint's cumulative training cost.** MCL-FIR's training wall time is "
        f"{_percent(ours['cost_ratio_to_joint'])} of joint's (CPU time {_percent(ours['cpu_ratio_to_joint'])}, images seen "
        f"{_percent(ours['images_ratio_to_joint'])}): " + cost_verdict(ours),
        f"3. **Much less forgetting than fine-tuning.** Forgetting is {format_number(ours['forgetting'])} points for MCL-FIR and "
        f"{format_number(finetune['forgetting'])} for fine-tuning (backward transfer {_signed(ours['bwt'])} against "
        f"{_signed(finetune['bwt'])}): " + forgetting_verdict(ours, finetune),
        "",
    ]

# Figures on which a sequential strategy is set against MCL-FIR: (key, label, whether higher is better).
_RIVAL_FIGURES = (
    ("final_map", "final mAP", True),
    ("forgetting", "forgetting", False),
    ("cost_ratio_to_joint", "wall time", False),
    ("cpu_ratio_to_joint", "CPU time", False),
)


def _is_cost_ratio(key: str) -> bool:
    return key.endswith("_ratio_to_joint")


def _rival_figure(key: str, rival: Any, ours: Any) -> str:
    """Return the rival's figure with MCL-FIR's in brackets. A cost ratio reads "44% of joint's (55%)"."""
    if _is_cost_ratio(key):
        return f"{_percent(rival)} of joint's ({_percent(ours)})"
    return f"{format_number(rival)} ({format_number(ours)})"


def _shown(key: str, value: Any) -> float:
    """Return ``value`` rounded as the document prints it: whole percent for cost ratios, else two decimals."""
    return round(100.0 * float(value)) if _is_cost_ratio(key) else round(float(value), 2)


def rival_lines(comparison: Comparison) -> list[str]:
    """Return the section that compares each other sequential strategy with MCL-FIR, figure by figure.

    The claim compares MCL-FIR with joint training and fine-tuning only. This section covers every
    sequential baseline, so that a baseline that does better than MCL-FIR is named in the document.
    """
    ours = comparison.get("mclfir", {})
    rivals = [name for name in STRATEGIES if name not in ("mclfir", "joint") and comparison.get(name, {}).get("complete")]
    if not ours.get("complete") or not rivals:
        return []

    lines = [
        "## MCL-FIR against the other sequential strategies",
        "",
        "Each strategy's figure comes first, MCL-FIR's is in brackets. Lower is better for forgetting and costs.",
        "",
    ]
    for name in rivals:
        rival = comparison[name]
        figures, ahead, behind = [], [], []
        for key, label, higher_is_better in _RIVAL_FIGURES:
            if rival.get(key) is None or ours.get(key) is None:
                continue
            figures.append(f"{label} {_rival_figure(key, rival[key], ours[key])}")

            # Figures compare as printed, so that two values shown alike count as level.
            rival_shown, ours_shown = (_shown(key, rival[key]), _shown(key, ours[key]))
            if rival_shown != ours_shown:
                (ahead if (rival_shown > ours_shown) == higher_is_better else behind).append(label)
        if figures:
            lines.append(f"- **{name}**: {', '.join(figures)}. " + _rival_verdict(name, ahead, behind))
    return lines + [""]


def _listing(labels: list[str]) -> str:
    return labels[0] if len(labels) == 1 else f"{', '.join(labels[:-1])} and {labels[-1]}"


def _rival_verdict(name: str, ahead: list[str], behind: list[str]) -> str:
    """Return the sentence that names the figures on which ``name`` is ahead and those on which MCL-FIR is."""
    if ahead and not behind:
        return f"{name} is ahead of MCL-FIR on every figure here: {_listing(ahead)}."
    if behind and not ahead:
        return f"MCL-FIR is ahead of {name} on every figure here: {_listing(behind)}."
    if not ahead:
        return f"{name} and MCL-FIR are level."
    return f"{name} is ahead on {_listing(ahead)}; MCL-FIR is ahead on {_listing(behind)}."


def strategy_table(comparison: Comparison, plan_size: int, split: str) -> list[str]:
    """Return the Markdown table of the strategies' figures and costs."""
    lines = [
        "## Strategies",
        "",
        f"mAP, forgetting and backward transfer (BWT) are in percent points, for the student model on the {split} split. "
        "Costs are summed over the increments evaluated; the ratios compare with joint training over the first increments "
        "that both have finished, counted in the column \"ratios over\". "
        "Other jobs running on the machine at the same time lengthen wall times; CPU times are less sensitive to them.",
        "",
        "| strategy | increments | final mAP | forgetting | BWT | train wall (h) | train CPU (h) | images seen | ratios over | wall / joint | CPU / joint | images / joint |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, report in comparison.items():
        lines.append(
            f"| {name} | {len(report['increment_names'])}/{plan_size} | {format_number(report['final_map'])} | "
            f"{format_number(report['forgetting'])} | {format_number(report['bwt'])} | {_hours(report, 'wall_s')} | "
            f"{_hours(report, 'cpu_s')} | {_images(report)} | {report.get('ratio_increments', 0)} | {format_number(report['cost_ratio_to_joint'], 3)} | "
            f"{format_number(report['cpu_ratio_to_joint'], 3)} | {format_number(report['images_ratio_to_joint'], 3)} |"
        )
    return lines + [""]


def first_increment_lines(comparison: Comparison) -> list[str]:
    """Return a paragraph on whether every strategy ends the first increment with the same mAP per attribute."""
    rows = {name: report["R"][0] for name, report in comparison.items() if report["R"]}
    if len(rows) < 2:
        return []
    reference = next(iter(rows.values()))
    if all(row == reference for row in rows.values()):
        return [
            "After the first increment every strategy has the same mAP on every attribute. No strategy has a parent to "
            "distil from yet, joint's first increment trains the same attributes from the same initial model, and the EMA "
            "that mclfir keeps does not change its student. The strategies part from the second increment on.",
            "",
        ]
    gaps = {}
    for attribute in reference:
        values = [row[attribute] for row in rows.values() if row.get(attribute) is not None]
        gaps[attribute] = max(values) - min(values) if values else 0.0
    attribute = max(gaps, key=gaps.get)
    return [
        f"After the first increment the strategies' mAP differ by up to {gaps[attribute]:.2f} points ({attribute}), "
        "although none of them has a parent to distil from yet.",
        "",
    ]


def progress_table(comparison: Comparison) -> list[str]:
    """Return the Markdown table of each strategy's mean mAP over the attributes seen after every increment."""
    increments = max((report["increment_names"] for report in comparison.values()), key=len)
    lines = [
        "## Mean mAP after each increment",
        "",
        "The mean over the attributes seen so far; the last increment's column is the final mAP.",
        "",
        "| strategy | " + " | ".join(increments) + " |",
        "|---|" + "---:|" * len(increments),
    ]
    for name, report in comparison.items():
        means = mean_map_per_increment(report)
        cells = [format_number(means[index]) if index < len(means) else "n/a" for index in range(len(increments))]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines + [""]


def cost_table(comparison: Comparison) -> list[str]:
    """Return the Markdown table of each strategy's training wall and CPU seconds per increment."""
    increments = max((report["increment_names"] for report in comparison.values()), key=len)
    lines = [
        "## Training cost per increment",
        "",
        "Wall seconds / CPU seconds of each training stage. A stage that had the machine to itself uses about as many "
        "CPU seconds per wall second as it has training threads; a lower ratio means other jobs shared the cores. "
        "A resumable comparison may run in several sittings, and the same stage rerun in another sitting can take a few "
        "percent more or less time even on an idle machine.",
        "",
        "| strategy | " + " | ".join(increments) + " |",
        "|---|" + "---:|" * len(increments),
    ]
    for name, report in comparison.items():
        cells = []
        for index in range(len(increments)):
            entry = report["cost"][index] if index < len(report["cost"]) else {}
            cells.append(f"{format_number(entry.get('wall_s'), 0)} / {format_number(entry.get('cpu_s'), 0)}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines + [""]


def attribute_table(comparison: Comparison) -> list[str]:
    """Return the Markdown table of each attribute's mAP after each strategy's last evaluated increment."""
    names = list(comparison)
    attributes = []
    for report in comparison.values():
        attributes += [attribute for attribute in report["R"][-1] if attribute not in attributes]
    chance = {}
    for report in comparison.values():
        chance.update({attribute: value for attribute, value in report["chance"].items() if value is not None})

    lines = [
        "## mAP per attribute after the last increment",
        "",
        "Chance is the mAP of a random ranking, from the value frequencies among each attribute's candidates. "
        "Each strategy's column is after its last evaluated increment, named in brackets.",
        "",
        "| attribute | chance | " + " | ".join(f"{name} ({comparison[name]['increment_names'][-1]})" for name in names) + " |",
        "|---|---:|" + "---:|" * len(names),
    ]
    for attribute in attributes:
        cells = [format_number(comparison[name]["R"][-1].get(attribute)) for name in names]
        lines.append(f"| {attribute} | {format_number(chance.get(attribute))} | " + " | ".join(cells) + " |")
    return lines + [""]


def plan_table(plan: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Return the Markdown table of the increment plan."""
    lines = ["## Increments", "", "| increment | attributes | starts from |", "|---|---|---|"]
    for name, entry in plan.items():
        lines.append(f"| {name} | {', '.join(entry['attributes'])} | {entry['parent']} |")
    return lines + [""]


def machine_lines(devices: list[str]) -> list[str]:
    """Return a description of this machine and of the devices the training stages reported."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        models = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if line.startswith("model name")]
        cpu = models[0] if models else cpu
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30 if hasattr(os, "sysconf") else None
    versions = ", ".join(f"{package} {_version(package)}" for package in ("torch", "timm", "dvc", "mlflow"))
    return [
        f"- Report written on: {cpu}, {os.cpu_count()} logical cores, {format_number(memory_gib, 0)} GiB RAM, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}.",
        f"- Packages: {versions}.",
        f"- Training device reported by the training stages: {', '.join(devices) or 'n/a'}.",
    ]


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def render(comparison: Comparison, plan: Mapping[str, Mapping[str, Any]], devices: list[str], split: str = "test") -> str:
    """Return the whole Markdown document; ``split`` is the evaluation split (``eval.split``)."""
    lines = [
        "# Results: MCL-FIR against fine-tuning, LwF and joint training",
        "",
        "<!-- Written by `mclfir compare report` from metrics/compare.json; edits are overwritten. -->",
        "",
        "All four strategies train the same multi-head model (timm backbone, one head per increment) with the same data, "
        "splits, doublet InfoNCE loss, epochs and pairs per attribute, and are evaluated with the same retrieval mAP:",
        "",
        "- **mclfir**: sequential training with an EMA teacher that distils backbone features and earlier heads.",
        "- **finetune**: the same sequential training without distillation and without an EMA.",
        "- **lwf**: Learning without Forgetting; earlier heads distilled from a frozen copy of the parent increment.",
        "- **joint**: each increment retrained from the initial model on every attribute seen so far (the static reference).",
        "",
        *claim_section(comparison, len(plan)),
        *rival_lines(comparison),
        *strategy_table(comparison, len(plan), split),
        *progress_table(comparison),
        *first_increment_lines(comparison),
        *cost_table(comparison),
        *attribute_table(comparison),
        *plan_table(plan),
        "## Figures",
        "",
        *[f"![{caption}]({path})\n\n{caption}.\n" for path, caption in FIGURES.values()],
        "## Machine and commands",
        "",
        *machine_lines(devices),
        "",
        "Reproduce, from the project root, with the dataset named by `MCLFIR_DATA_ROOT`:",
        "",
        "```bash",
        "make compare          # dvc repro compare/dvc.yaml: resumable, one stage per strategy and increment",
        "make compare-report   # mclfir compare report: metrics/compare.json, this file and its figures",
        "```",
        "",
        "The raw figures are in `metrics/compare.json`; every training and evaluation run is in MLflow with the tag `mclfir.strategy`.",
        "",
    ]
    return "\n".join(lines)


def training_devices(train_dirs: list[Path]) -> list[str]:
    """Return the devices named by the training metrics files in ``train_dirs``."""
    devices = set()
    for folder in train_dirs:
        for path in sorted(Path(folder).glob("*.json")):
            device = json.loads(path.read_text(encoding="utf-8")).get("device")
            if device:
                devices.add(device)
    return sorted(devices)


def write_results(comparison: Comparison, plan: Mapping[str, Mapping[str, Any]], devices: list[str], out: Path, split: str = "test") -> Path:
    """Write the document to ``out`` and return the path."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(comparison, plan, devices, split), encoding="utf-8")
    return out
