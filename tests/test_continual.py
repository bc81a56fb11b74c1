"""Tests of the continual-learning figures, the report and its plots, on small hand-computed R matrices."""

import csv
import json

import pytest

from mclfir.continual import (
    aggregate,
    backward_transfer,
    build_report,
    final_map,
    forgetting,
    introduced_at,
)

PLAN = {"inc0": ["a", "b"], "inc1": ["c"], "inc2": ["d"]}
R = [
    {"a": 50.0, "b": 40.0},
    {"a": 60.0, "b": 30.0, "c": 70.0},
    {"a": 45.0, "b": 35.0, "c": 50.0, "d": 80.0},
]


def test_final_map_is_mean_of_last_row():
    assert final_map(R) == pytest.approx((45 + 35 + 50 + 80) / 4)


def test_forgetting_hand_computed():
    # a: max(50, 60) - 45 = 15; b: max(40, 30) - 35 = 5; c: 70 - 50 = 20; d is the newest.
    assert forgetting(R, PLAN) == pytest.approx((15 + 5 + 20) / 3)


def test_backward_transfer_hand_computed():
    # a: 45 - 50 = -5; b: 35 - 40 = -5; c: 50 - 70 = -20.
    assert backward_transfer(R, PLAN) == pytest.approx((-5 - 5 - 20) / 3)


def test_figures_after_two_increments():
    r_two = R[:2]

    # a: 50 - 60 = -10 (gained), b: 40 - 30 = 10.
    assert forgetting(r_two, PLAN) == pytest.approx(0.0)
    assert backward_transfer(r_two, PLAN) == pytest.approx((10 - 10) / 2)


def test_one_increment_has_no_forgetting():
    r_one = R[:1]

    assert forgetting(r_one, PLAN) == 0.0
    assert backward_transfer(r_one, PLAN) == 0.0
    assert final_map(r_one) == pytest.approx(45.0)


def test_nan_entries_left_out():
    r_nan = [{"a": 50.0, "b": None}, {"a": 40.0, "b": 20.0, "c": 10.0}]

    assert forgetting(r_nan, PLAN) == pytest.approx(10.0)
    assert final_map([{"a": 10.0, "b": None}]) == pytest.approx(10.0)


def test_missing_attribute_in_row_rejected():
    r_bad = [{"a": 50.0}, {"a": 40.0, "b": 20.0, "c": 10.0}]

    with pytest.raises(ValueError, match="lacks attributes"):
        forgetting(r_bad, PLAN)


def test_introduced_at_rejects_repeated_attribute():
    with pytest.raises(ValueError, match="more than one increment"):
        introduced_at({"inc0": ["a"], "inc1": ["a"]})


def increment_result(name, row):
    """Build per-increment results in the format that `mclfir evaluate` writes."""
    attributes = {
        attribute: {"map": value, "map_at_k": value + 1, "chance": 5.0, "balanced": value - 1}
        for attribute, value in row.items()
    }
    return {"increment": name, "student": {"attributes": attributes}}


def test_build_report_keys_and_values():
    results = [increment_result(name, row) for name, row in zip(PLAN, R)]
    costs = [{"increment": name, "wall_s": 1.0, "images_seen": 10, "steps": 2} for name in PLAN]

    report = build_report(PLAN, results, costs)

    assert report["increments"] == [["a", "b"], ["c"], ["d"]]
    assert report["R"] == R
    assert report["forgetting"] == pytest.approx(40 / 3)
    assert report["bwt"] == pytest.approx(-10.0)
    assert report["map_at_k"] == {"a": 46.0, "b": 36.0, "c": 51.0, "d": 81.0}
    assert report["balanced"]["d"] == 79.0
    assert report["chance"]["a"] == 5.0
    assert [cost["steps"] for cost in report["cost"]] == [2, 2, 2]


def test_build_report_rejects_out_of_order():
    results = [increment_result("inc1", R[1])]

    with pytest.raises(ValueError, match="inc0"):
        build_report(PLAN, results, [])


def test_aggregate_writes_report_and_plots(tmp_path):
    increments_dir = tmp_path / "metrics" / "increments"
    train_dir = tmp_path / "metrics" / "train"
    increments_dir.mkdir(parents=True)
    train_dir.mkdir(parents=True)
    for name, row in zip(PLAN, R):
        (increments_dir / f"{name}.json").write_text(json.dumps(increment_result(name, row)))
    (train_dir / "inc0.json").write_text(json.dumps({"cost": {"wall_s": 3.5, "images_seen": 100, "steps": 4}}))

    aggregate(PLAN, increments_dir, train_dir, tmp_path / "metrics" / "continual.json", tmp_path / "plots")

    report = json.loads((tmp_path / "metrics" / "continual.json").read_text())
    assert report["final_map"] == pytest.approx(52.5)
    assert report["cost"][0]["wall_s"] == 3.5
    assert report["cost"][1]["steps"] is None
    assert (tmp_path / "plots" / "map_heatmap.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "plots" / "map_per_increment.png").read_bytes()[:4] == b"\x89PNG"

    with (tmp_path / "plots" / "map_per_increment.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [row["increment"] for row in rows] == ["inc0", "inc1", "inc2"]
    assert rows[0]["c"] == ""
    assert float(rows[1]["c"]) == pytest.approx(70.0)
    assert float(rows[0]["mean_map"]) == pytest.approx(45.0)


def test_aggregate_stops_at_last_increment(tmp_path):
    for name, row in zip(PLAN, R):
        (tmp_path / f"{name}.json").write_text(json.dumps(increment_result(name, row)))

    report = aggregate(PLAN, tmp_path, tmp_path / "train", tmp_path / "out.json", tmp_path / "plots", last_increment="inc1")

    assert len(report["R"]) == 2
    assert report["final_map"] == pytest.approx(160 / 3)


def test_aggregate_names_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="mclfir evaluate --increment inc0"):
        aggregate(PLAN, tmp_path, tmp_path, tmp_path / "out.json", tmp_path / "plots")
