"""Tests of the strategy comparison report: metrics/compare.json, docs/results.md and its figures.

The per-increment evaluation and training files are written here in the formats that
``mclfir evaluate`` and ``mclfir train`` produce, with mAP values chosen per test.
"""

import json
import shutil
from pathlib import Path

import pytest
import yaml

from mclfir.cli import main
from mclfir.comparison.results_doc import forgetting_verdict, rival_lines
from mclfir.comparison.summary import CompareLayout, build_comparison

PLAN = {
    "inc0": {"attributes": ["colour", "shape"], "parent": "init"},
    "inc1": {"attributes": ["side"], "parent": "inc0"},
}
PLAN_ATTRIBUTES = {name: entry["attributes"] for name, entry in PLAN.items()}
PAIRS = 100


def _write_strategy(root: Path, strategy: str, maps: list[dict[str, float]], wall_s: list[float], plan: dict = PLAN) -> None:
    """Write evaluation and training files of ``strategy`` for the first ``len(maps)`` increments of ``plan``."""
    layout = CompareLayout(root / "compare")
    seen: list[str] = []
    for index, (name, row) in enumerate(zip(plan, maps)):
        seen += plan[name]["attributes"]
        trained = seen if strategy == "joint" else plan[name]["attributes"]
        attributes = {attribute: {"map": value, "chance": 10.0, "balanced": value, "map_at_k": value} for attribute, value in row.items()}
        evaluation = {"increment": name, "split": "test", "k": 10, "attributes": list(row), "student": {"attributes": attributes}}
        train = {"increment": name, "device": "cpu", "cost": {"wall_s": wall_s[index], "cpu_s": 2 * wall_s[index], "images_seen": 2 * PAIRS * len(trained), "steps": 10}}
        for folder, content in ((layout.increment_metrics(strategy), evaluation), (layout.train_metrics(strategy), train)):
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{name}.json").write_text(json.dumps(content))


def _rows(first: float, later_first: float, second: float) -> list[dict[str, float]]:
    return [{"colour": first, "shape": first}, {"colour": later_first, "shape": later_first, "side": second}]


def _report_text(project: Path) -> str:
    """Run `mclfir compare report` and return the results document it writes."""
    main(["compare", "report"])
    return (project / "docs" / "results.md").read_text()


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"increments": PLAN}))
    (tmp_path / "pyproject.toml").write_text("")
    monkeypatch.setenv("MCLFIR_PROJECT_ROOT", str(tmp_path))
    return tmp_path


def _write_all(project: Path, mclfir_later: float = 58.0) -> None:
    _write_strategy(project, "mclfir", _rows(60.0, mclfir_later, 50.0), [100.0, 60.0])
    _write_strategy(project, "finetune", _rows(60.0, 40.0, 52.0), [90.0, 50.0])
    _write_strategy(project, "lwf", _rows(60.0, 50.0, 51.0), [95.0, 55.0])
    _write_strategy(project, "joint", _rows(61.0, 61.0, 53.0), [100.0, 150.0])


def test_compare_json_entries_and_ratios(project):
    _write_all(project)
    assert main(["compare", "report"]) == 0

    comparison = json.loads((project / "metrics" / "compare.json").read_text())
    continual_keys = {"model", "increments", "increment_names", "R", "final_map", "forgetting", "bwt", "chance", "balanced", "map_at_k", "cost"}
    assert list(comparison) == ["mclfir", "finetune", "lwf", "joint"]
    for report in comparison.values():
        assert continual_keys | {"cost_ratio_to_joint", "images_ratio_to_joint", "cpu_ratio_to_joint"} <= set(report)

    ours = comparison["mclfir"]
    assert ours["cost_ratio_to_joint"] == pytest.approx(160.0 / 250.0)
    assert ours["cpu_ratio_to_joint"] == pytest.approx(320.0 / 500.0)
    # Joint trains 2 then 3 attributes, the others 2 then 1: 3 / 5 of the images.
    assert ours["images_ratio_to_joint"] == pytest.approx(3 / 5)
    assert comparison["joint"]["cost_ratio_to_joint"] == pytest.approx(1.0)
    assert ours["final_map"] == pytest.approx((58.0 + 58.0 + 50.0) / 3)
    assert comparison["finetune"]["forgetting"] == pytest.approx(20.0)

    for figure in ("compare_cost.png", "compare_forgetting.png"):
        assert (project / "docs" / "figures" / figure).stat().st_size > 0


def test_results_document_claim_not_met(project):
    _write_all(project, mclfir_later=58.0)
    text = _report_text(project)

    # Gap to joint: (61 + 61 + 53) / 3 - (58 + 58 + 50) / 3 = 3 points; wall ratio 64%.
    assert "a gap of +3.00 points: **not met**" in text
    assert "64% of joint's" in text
    assert "**not met**: the measured wall time and CPU time ratios are above 40%" in text
    # Forgetting 2 against fine-tuning's 20: 10%.
    assert "Forgetting is 2.00 points for MCL-FIR and 20.00 for fine-tuning" in text
    assert "(backward transfer -2.00 against -20.00): **met**." in text
    assert "| side | 10.00 | 50.00 | 52.00 | 51.00 | 53.00 |" in text
    assert "| inc1 | side | inc0 |" in text
    assert "figures/compare_cost.png" in text
    assert "make compare" in text


def test_results_document_progress_and_cost_tables(project):
    _write_all(project, mclfir_later=58.0)
    text = _report_text(project)

    # Mean over the attributes seen: 60 after inc0, (58 + 58 + 50) / 3 after inc1.
    assert "| mclfir | 60.00 | 55.33 |" in text
    assert "| joint | 100 / 200 | 150 / 300 |" in text
    # Joint ends the first increment 1 point above the others.
    assert "differ by up to 1.00 points (colour)" in text


def test_results_document_same_first_increment(project):
    _write_all(project)
    _write_strategy(project, "joint", _rows(60.0, 61.0, 53.0), [100.0, 150.0])
    text = _report_text(project)
    assert "After the first increment every strategy has the same mAP on every attribute." in text


def test_results_document_claim_met(project):
    _write_all(project, mclfir_later=61.0)
    text = _report_text(project)
    # (61 + 61 + 53) / 3 - (61 + 61 + 50) / 3 = 1 point.
    assert "a gap of +1.00 points: **met**." in text


def test_rival_strategies_set_against_mclfir(project):
    _write_all(project, mclfir_later=58.0)
    text = _report_text(project)

    # lwf ends at (50 + 50 + 51) / 3 with forgetting 10 and 60% of joint's wall time; MCL-FIR 55.33, 2 and 64%.
    assert (
        "- **lwf**: final mAP 50.33 (55.33), forgetting 10.00 (2.00), wall time 60% of joint's (64%), "
        "CPU time 60% of joint's (64%). lwf is ahead on wall time and CPU time; "
        "MCL-FIR is ahead on final mAP and forgetting."
    ) in text
    assert "- **joint**: final mAP" not in text


def test_rival_ahead_on_every_figure(project):
    _write_all(project, mclfir_later=58.0)
    _write_strategy(project, "lwf", _rows(60.0, 59.0, 52.0), [80.0, 40.0])
    text = _report_text(project)

    assert "lwf is ahead of MCL-FIR on every figure here: final mAP, forgetting, wall time and CPU time." in text


def test_rival_level_when_figures_print_alike():
    figures = {"complete": True, "final_map": 60.001, "forgetting": 1.0, "cost_ratio_to_joint": 0.441, "cpu_ratio_to_joint": None}
    lines = rival_lines({"mclfir": figures, "lwf": {**figures, "final_map": 59.999, "cost_ratio_to_joint": 0.439}})

    assert lines[-2] == "- **lwf**: final mAP 60.00 (60.00), forgetting 1.00 (1.00), wall time 44% of joint's (44%). lwf and MCL-FIR are level."


def test_unfinished_comparison_reported(project):
    _write_strategy(project, "mclfir", _rows(60.0, 58.0, 50.0), [100.0, 60.0])
    _write_strategy(project, "joint", _rows(61.0, 61.0, 53.0)[:1], [100.0])

    comparison = build_comparison(PLAN_ATTRIBUTES, CompareLayout(project / "compare"))
    assert list(comparison) == ["mclfir", "joint"]
    assert comparison["mclfir"]["complete"]
    assert not comparison["joint"]["complete"]
    # Over the one increment both finished.
    assert comparison["mclfir"]["ratio_increments"] == 1
    assert comparison["mclfir"]["cost_ratio_to_joint"] == pytest.approx(1.0)

    text = _report_text(project)
    assert "The comparison is not finished: finetune, joint lack increments" in text


def test_report_without_results_fails(project, caplog):
    assert main(["compare", "report"]) == 1
    assert "make compare" in caplog.text


def test_missing_cost_is_not_measurable(project):
    _write_all(project)
    (project / "compare" / "metrics" / "mclfir" / "train" / "inc1.json").unlink()
    text = _report_text(project)
    assert "**not measurable**: a training cost is missing" in text


def _set_cpu_seconds(project: Path, strategy: str, cpu_s: list[float]) -> None:
    folder = CompareLayout(project / "compare").train_metrics(strategy)
    for name, seconds in zip(PLAN, cpu_s):
        path = folder / f"{name}.json"
        content = json.loads(path.read_text())
        content["cost"]["cpu_s"] = seconds
        path.write_text(json.dumps(content))


def test_cost_verdict_needs_both_ratios(project):
    _write_all(project)
    # Wall time 90 s against joint's 250 s (36%), CPU time 300 s against 500 s (60%).
    _write_strategy(project, "mclfir", _rows(60.0, 58.0, 50.0), [40.0, 50.0])
    _set_cpu_seconds(project, "mclfir", [150.0, 150.0])
    text = _report_text(project)
    assert "**depends on the measure**: wall time 36%, CPU time 60% against the 40% limit." in text


def test_forgetting_verdict_missing_values():
    assert "not measurable**: a forgetting figure is missing" in forgetting_verdict({"forgetting": None}, {"forgetting": 3.0})
    assert "not measurable**: a forgetting figure is missing" in forgetting_verdict({"forgetting": 1.0}, {"forgetting": None})
    assert "fine-tuning did not forget" in forgetting_verdict({"forgetting": 1.0}, {"forgetting": 0.0})
    assert forgetting_verdict({"forgetting": 1.0}, {"forgetting": 4.0}) == "**met**."
    assert "forgets 75% as much" in forgetting_verdict({"forgetting": 3.0}, {"forgetting": 4.0})


def test_report_follows_branching_plan(project):
    branching = {**PLAN, "inc2": {"attributes": ["size"], "parent": "inc0"}}
    (project / "params.yaml").write_text(yaml.safe_dump({"increments": branching}))
    lineage = {name: branching[name] for name in ("inc0", "inc2")}
    rows = [{"colour": 60.0, "shape": 60.0}, {"colour": 55.0, "shape": 55.0, "size": 40.0}]
    for strategy in ("mclfir", "finetune", "lwf", "joint"):
        _write_strategy(project, strategy, rows, [100.0, 50.0], plan=lineage)

    assert main(["compare", "report"]) == 0
    comparison = json.loads((project / "metrics" / "compare.json").read_text())
    assert comparison["mclfir"]["increment_names"] == ["inc0", "inc2"]
    assert comparison["mclfir"]["complete"]


def test_verdicts_without_lwf(project):
    _write_all(project)
    shutil.rmtree(project / "compare" / "metrics" / "lwf")
    text = _report_text(project)
    assert "Not finished yet: lwf (0 of 2 increments)." in text
    assert "a gap of +3.00 points" in text
