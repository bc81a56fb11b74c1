"""Tests of the comparison pipeline's lineage files: an increment's lineage and the sha256 of its split files."""

import json
from pathlib import Path

import pytest
import yaml

from mclfir.cli import main
from mclfir.comparison.lineage import lineage_record, write_lineage
from mclfir.data.increments import parse_plan

PLAN = {
    "inc0": {"attributes": ["colour", "shape"], "parent": "init"},
    "inc1": {"attributes": ["side"], "parent": "inc0"},
}


def _write_splits(splits: Path, plan: dict) -> None:
    """Write one small stand-in split file per attribute. The record only hashes their bytes."""
    for name, entry in plan.items():
        for attribute in entry["attributes"]:
            path = splits / name / f"{attribute}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(f"{name}/{attribute}".encode())


def test_record_lists_lineage_and_hashes(tmp_path):
    _write_splits(tmp_path, PLAN)
    record = lineage_record(parse_plan(PLAN), "inc1", tmp_path)

    assert record["increment"] == "inc1"
    assert record["lineage"] == {"inc0": ["colour", "shape"], "inc1": ["side"]}
    assert list(record["splits_sha256"]) == ["inc0/colour.parquet", "inc0/shape.parquet", "inc1/side.parquet"]
    assert len(set(record["splits_sha256"].values())) == 3


def test_record_follows_split_changes(tmp_path):
    _write_splits(tmp_path, PLAN)
    before = lineage_record(parse_plan(PLAN), "inc1", tmp_path)

    (tmp_path / "inc0" / "shape.parquet").write_bytes(b"new split")
    after = lineage_record(parse_plan(PLAN), "inc1", tmp_path)

    assert after["splits_sha256"]["inc0/shape.parquet"] != before["splits_sha256"]["inc0/shape.parquet"]
    assert after["splits_sha256"]["inc1/side.parquet"] == before["splits_sha256"]["inc1/side.parquet"]


def test_appended_increment_keeps_earlier_files(tmp_path):
    _write_splits(tmp_path / "splits", PLAN)
    first = write_lineage(lineage_record(parse_plan(PLAN), "inc1", tmp_path / "splits"), tmp_path / "before.json")

    longer = {**PLAN, "inc2": {"attributes": ["sleeve"], "parent": "inc1"}}
    _write_splits(tmp_path / "splits", longer)
    second = write_lineage(lineage_record(parse_plan(longer), "inc1", tmp_path / "splits"), tmp_path / "after.json")

    assert first.read_bytes() == second.read_bytes()


def test_missing_split_names_file_and_stage(tmp_path):
    _write_splits(tmp_path, PLAN)
    (tmp_path / "inc0" / "shape.parquet").unlink()

    with pytest.raises(FileNotFoundError) as error:
        lineage_record(parse_plan(PLAN), "inc1", tmp_path)
    assert "shape.parquet" in str(error.value)
    assert "dvc repro split@inc0" in str(error.value)


def test_cli_writes_lineage_file(tmp_path, monkeypatch):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"increments": PLAN}))
    (tmp_path / "pyproject.toml").write_text("")
    monkeypatch.setenv("MCLFIR_PROJECT_ROOT", str(tmp_path))
    _write_splits(tmp_path / "data" / "splits", PLAN)

    assert main(["compare", "lineage", "--increment", "inc0", "--out", "compare/lineage/inc0.json"]) == 0

    record = json.loads((tmp_path / "compare" / "lineage" / "inc0.json").read_text())
    assert record["lineage"] == {"inc0": ["colour", "shape"]}
    assert main(["compare", "lineage", "--increment", "inc5", "--out", "compare/lineage/inc5.json"]) == 1
