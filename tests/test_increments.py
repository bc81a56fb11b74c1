"""Tests of the increment plan: parsing, validation, catalog checks, appending and the plan command."""

import argparse
import json
import logging
from pathlib import Path

import pandas as pd
import pytest
import yaml

from mclfir.config import load_params
from mclfir.data import increments
from mclfir.data.catalog import Catalog, write_catalog
from mclfir.data.increments import (
    PlanError,
    append_increment,
    check_against_catalog,
    load_plan,
    parse_plan,
)
from mclfir.paths import project_root

PLAN = {
    "inc0": {"attributes": ["gender", "masterCategory"], "parent": "init"},
    "inc1": {"attributes": ["articleType"], "parent": "inc0"},
    "inc2": {"attributes": ["baseColour"], "parent": "inc1"},
    "side": {"attributes": ["season"], "parent": "inc0"},
}
PARAMS_TEXT = """\
# Pipeline parameters.
data:
  source: fashion-products  # adapter name
# Increment plan: attributes and parent of each increment.
increments:
  inc0:
    attributes:
      - gender
    parent: init
  inc1:
    attributes:
      - articleType  # fine-grained
    parent: inc0  # starts from inc0

# Model section that follows the plan.
model:
  embed_dim: 128
"""


def make_catalog(attributes: dict[str, list[list[str]]]) -> Catalog:
    count = len(next(iter(attributes.values())))
    frame = pd.DataFrame(
        {
            "image_id": [str(index) for index in range(count)],
            "path": [f"images/{index}.jpg" for index in range(count)],
            "content_hash": [f"{index:064x}" for index in range(count)],
            "source_row": list(range(2, count + 2)),
            **attributes,
            "eval_exclude": [[] for _ in range(count)],
        }
    )
    return Catalog(frame, list(attributes), "synthetic", "/data/synthetic")


def with_increment(name: str, entry: object) -> dict:
    return {**PLAN, name: entry}


def test_plan_order_and_lookups():
    plan = parse_plan(PLAN)

    assert plan.order == ["inc0", "inc1", "inc2", "side"]
    assert plan.parent_of("inc0") == "init"
    assert plan.parent_of("inc2") == "inc1"
    assert plan.attributes_seen_until("inc0") == ["gender", "masterCategory"]
    assert plan.attributes_seen_until("inc2") == ["gender", "masterCategory", "articleType", "baseColour"]
    assert plan.attributes_seen_until("side") == ["gender", "masterCategory", "season"]
    assert plan.increment_of("baseColour") == "inc2"
    assert plan.increment_of("gender") == "inc0"


def test_plan_unknown_names_rejected():
    plan = parse_plan(PLAN)

    with pytest.raises(PlanError, match="Unknown increment 'inc7'.*inc0, inc1, inc2, side"):
        plan.parent_of("inc7")
    with pytest.raises(PlanError, match="'usage' is not in the increment plan"):
        plan.increment_of("usage")


def test_project_params_plan_valid():
    plan = load_plan(load_params(project_root() / "params.yaml"))

    assert plan.order[0] == "inc0"
    assert plan.parent_of(plan.order[0]) == "init"
    for name in plan.order[1:]:
        assert plan.order.index(plan.parent_of(name)) < plan.order.index(name)


@pytest.mark.parametrize(
    ("name", "entry", "message"),
    [
        ("inc3", {"attributes": ["usage"], "parent": "inc9"}, "'inc3' has unknown parent 'inc9'. Set 'parent' to one of: init, inc0, inc1, inc2, side"),
        ("inc3", {"attributes": ["usage"], "parent": "inc3"}, "'inc3' is its own parent"),
        ("inc3", {"attributes": ["season"], "parent": "inc2"}, "'inc3' introduces attribute 'season', which increment 'side' already introduces"),
        ("inc3", {"attributes": [], "parent": "inc2"}, "'inc3' must list at least one attribute"),
        ("inc3", {"attributes": "usage", "parent": "inc2"}, "'inc3' must list at least one attribute"),
        ("inc3", {"attributes": ["usage", "usage"], "parent": "inc2"}, "more than once"),
        ("inc3", {"attributes": ["us/age"], "parent": "inc2"}, "invalid attribute name 'us/age'"),
        ("inc3", {"attributes": ["usage"]}, "'inc3' has no 'parent'"),
        ("inc3", {"attributes": ["usage"], "parent": "inc2", "attribute": ["x"]}, "unknown keys \\['attribute'\\]"),
        ("inc3", ["usage"], "must be a mapping"),
        ("init", {"attributes": ["usage"], "parent": "inc2"}, "Invalid increment name 'init'"),
        ("3rd increment", {"attributes": ["usage"], "parent": "inc2"}, "Invalid increment name '3rd increment'"),
    ],
)
def test_plan_validation_errors(name, entry, message):
    with pytest.raises(PlanError, match=message):
        parse_plan(with_increment(name, entry))


def test_cycle_rejected():
    section = {
        "a": {"attributes": ["gender"], "parent": "b"},
        "b": {"attributes": ["season"], "parent": "a"},
    }

    with pytest.raises(PlanError, match="'a' has parent 'b', which comes later in the plan"):
        parse_plan(section)


def test_missing_section_rejected():
    with pytest.raises(PlanError, match="Missing or empty 'increments'"):
        load_plan({"data": {}})


def test_catalog_check_unknown_attribute():
    plan = parse_plan(PLAN)
    catalog = make_catalog({"gender": [["Men"]], "masterCategory": [["Apparel"]], "articleType": [["Shirts"]], "season": [["Fall"]]})

    with pytest.raises(PlanError) as error:
        check_against_catalog(plan, catalog)

    assert "'baseColour' (increment 'inc2')" in str(error.value)
    assert "Catalog attributes: gender, masterCategory, articleType, season" in str(error.value)


def test_catalog_check_warns_unlabelled(caplog):
    plan = parse_plan({"inc0": {"attributes": ["gender", "season"], "parent": "init"}})
    catalog = make_catalog({"gender": [["Men"], ["Women"]], "season": [[], []]})

    with caplog.at_level(logging.WARNING):
        check_against_catalog(plan, catalog)

    assert "'season' of increment 'inc0' has no labelled image" in caplog.text


def test_append_increment_keeps_comments(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(PARAMS_TEXT, encoding="utf-8")

    name = append_increment(params, ["baseColour", "season"])
    text = params.read_text(encoding="utf-8")

    assert name == "inc2"
    for line in PARAMS_TEXT.splitlines():
        assert line in text.splitlines()
    assert text.index("parent: inc0  # starts from inc0") < text.index("  inc2:") < text.index("# Model section")
    plan = load_plan(yaml.safe_load(text))
    assert plan.order == ["inc0", "inc1", "inc2"]
    assert plan.get("inc2").attributes == ("baseColour", "season")
    assert plan.parent_of("inc2") == "inc1"
    assert yaml.safe_load(text)["model"] == {"embed_dim": 128}


def test_append_increment_explicit_parent_and_name(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(PARAMS_TEXT, encoding="utf-8")

    name = append_increment(params, ["usage"], parent="inc0", name="usage-only")
    plan = load_plan(yaml.safe_load(params.read_text(encoding="utf-8")))

    assert name == "usage-only"
    assert plan.parent_of("usage-only") == "inc0"


@pytest.mark.parametrize(
    ("attributes", "parent", "message"),
    [
        (["articleType"], None, "'articleType', which increment 'inc1' already introduces"),
        (["usage"], "inc5", "unknown parent 'inc5'"),
        ([], None, "must list at least one attribute"),
    ],
)
def test_append_increment_invalid_unchanged(tmp_path, attributes, parent, message):
    params = tmp_path / "params.yaml"
    params.write_text(PARAMS_TEXT, encoding="utf-8")

    with pytest.raises(PlanError, match=message):
        append_increment(params, attributes, parent=parent)

    assert params.read_text(encoding="utf-8") == PARAMS_TEXT
    assert [path.name for path in tmp_path.iterdir()] == ["params.yaml"]


def test_plan_command_writes_counts(tmp_path, capsys):
    params = tmp_path / "params.yaml"
    params.write_text(PARAMS_TEXT, encoding="utf-8")
    catalog = make_catalog(
        {
            "gender": [["Men"], ["Women"], ["Men"], []],
            "articleType": [["Shirts"], ["Shirts"], ["Tops", "Shirts"], ["Jeans"]],
        }
    )
    catalog_path = write_catalog(catalog, tmp_path / "catalog.parquet")
    out = tmp_path / "increments" / "plan.json"

    parser = argparse.ArgumentParser()
    increments.configure_parser(parser)
    status = increments.run(parser.parse_args(["--catalog", str(catalog_path), "--out", str(out), "--params", str(params)]))

    assert status == 0
    written = json.loads(out.read_text())
    assert written["order"] == ["inc0", "inc1"]
    first, second = written["increments"]
    assert first["parent"] == "init"
    assert first["attributes"]["gender"] == {"images": 3, "values": 2, "value_counts": {"Men": 2, "Women": 1}}
    assert second["parent"] == "inc0"
    assert second["attributes_seen"] == ["gender", "articleType"]
    assert second["attributes"]["articleType"] == {
        "images": 4,
        "values": 3,
        "value_counts": {"Shirts": 3, "Jeans": 1, "Tops": 1},
    }
    assert "inc1 <- inc0: articleType (3 values, 4 images)" in capsys.readouterr().out


def test_plan_command_unknown_attribute(tmp_path, caplog):
    params = tmp_path / "params.yaml"
    params.write_text(PARAMS_TEXT, encoding="utf-8")
    catalog_path = write_catalog(make_catalog({"gender": [["Men"]]}), tmp_path / "catalog.parquet")
    out = tmp_path / "plan.json"

    parser = argparse.ArgumentParser()
    increments.configure_parser(parser)
    status = increments.run(parser.parse_args(["--catalog", str(catalog_path), "--out", str(out), "--params", str(params)]))

    assert status == 1
    assert "'articleType' (increment 'inc1')" in caplog.text
    assert not out.exists()
