"""Tests of the deterministic per-attribute splits and their evaluation roles, on synthetic catalogs."""

import argparse
import hashlib
import json
import logging
import random
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from mclfir.config import SplitConfig
from mclfir.data import split
from mclfir.data.catalog import METADATA_KEY, Catalog, read_catalog, write_catalog
from mclfir.data.split import (
    SPLIT_COLUMNS,
    SplitError,
    assign_split,
    hash_fraction,
    read_split,
    role_fraction,
    split_attribute,
)

CONFIG = SplitConfig()
PARAMS_TEXT = """\
data:
  split:
    train: 0.8
    valid: 0.1
    test: 0.1
    query_fraction: 0.25
    salt: mclfir-split-v1
increments:
  inc0:
    attributes: [colour, size]
    parent: init
  inc1:
    attributes: [shape]
    parent: inc0
"""


def photo_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def find_photo(split: str, role: str | None = None, start: int = 0, skip: set[str] = frozenset()) -> str:
    """Return the content hash of the first synthetic photo at or after ``start`` that lands in ``split`` and ``role``."""
    index = start
    while True:
        content_hash = photo_hash(f"search-{index}")
        index += 1
        if content_hash in skip or assign_split(content_hash, CONFIG) != split:
            continue
        if role is None or (role_fraction(content_hash, CONFIG) < CONFIG.query_fraction) == (role == "query"):
            return content_hash


def make_catalog(records: list[dict], attributes: list[str], root: str = "/data/synthetic") -> Catalog:
    """Build a validated catalog; each record needs ``content_hash`` and one list per attribute."""
    rows = []
    for number, record in enumerate(records):
        image_id = record.get("image_id", f"{number:05d}")
        row = {
            "image_id": image_id,
            "path": f"images/{image_id}.jpg",
            "content_hash": record["content_hash"],
            "source_row": number + 2,
            "eval_exclude": record.get("eval_exclude", []),
        }
        for attribute in attributes:
            row[attribute] = record.get(attribute, [])
        rows.append(row)
    frame = pd.DataFrame(rows, columns=["image_id", "path", "content_hash", "source_row", *attributes, "eval_exclude"])
    return Catalog(frame, attributes, "synthetic", root)


def random_records(count: int, seed: int = 0, prefix: str = "photo") -> list[dict]:
    rng = random.Random(seed)
    records = []
    for index in range(count):
        records.append(
            {
                "image_id": f"{prefix}-{index:05d}",
                "content_hash": photo_hash(f"{prefix}-{index}"),
                "colour": [rng.choice(["red", "green", "blue", "black"])],
                "size": [rng.choice(["s", "m", "l"])] if index % 7 else [],
            }
        )
    return records


def write_params(tmp_path: Path) -> Path:
    params = tmp_path / "params.yaml"
    params.write_text(PARAMS_TEXT, encoding="utf-8")
    return params


def run_split(catalog_path: Path, params: Path, out: Path, *extra: str) -> int:
    """Run ``mclfir data split`` through its own parser, so the test needs no other command module."""
    parser = argparse.ArgumentParser()
    split.configure_parser(parser)
    args = parser.parse_args(["--catalog", str(catalog_path), "--params", str(params), "--out", str(out), *extra])
    return split.run(args)


def test_hash_fraction_in_unit_interval():
    fractions = [hash_fraction("salt", photo_hash(str(index))) for index in range(2000)]

    assert min(fractions) >= 0.0
    assert max(fractions) < 1.0
    assert hash_fraction("salt", "abc") == hash_fraction("salt", "abc")
    assert hash_fraction("salt", "abc") != hash_fraction("other-salt", "abc")


def test_fractions_roughly_respected():
    hashes = [photo_hash(f"fraction-{index}") for index in range(5000)]
    splits = pd.Series([assign_split(content_hash, CONFIG) for content_hash in hashes]).value_counts(normalize=True)
    queries = sum(role_fraction(content_hash, CONFIG) < CONFIG.query_fraction for content_hash in hashes) / len(hashes)

    assert 0.77 < splits["train"] < 0.83
    assert 0.08 < splits["valid"] < 0.12
    assert 0.08 < splits["test"] < 0.12
    assert 0.22 < queries < 0.28


def test_split_and_role_hashes_independent():
    hashes = [photo_hash(f"independent-{index}") for index in range(4000)]
    test_hashes = [content_hash for content_hash in hashes if assign_split(content_hash, CONFIG) == "test"]
    queries = sum(role_fraction(content_hash, CONFIG) < CONFIG.query_fraction for content_hash in test_hashes)

    assert len(test_hashes) > 300
    assert 0.17 < queries / len(test_hashes) < 0.33


def test_split_columns_and_sorting():
    records = random_records(400)
    random.Random(1).shuffle(records)
    result = split_attribute(make_catalog(records, ["colour", "size"]), "colour", CONFIG)

    assert list(result.frame.columns) == list(SPLIT_COLUMNS)
    assert result.frame["image_id"].tolist() == sorted(result.frame["image_id"])
    assert set(result.frame["split"]) == {"train", "valid", "test"}
    assert set(result.frame["role"]) <= {"train", "query", "candidate", "excluded"}
    assert (result.frame.loc[result.frame["split"] == "train", "role"] == "train").all()
    assert (result.frame.loc[result.frame["split"] != "train", "role"] != "train").all()
    assert (result.frame.loc[result.frame["role"] != "excluded", "exclude_reason"] == "").all()


def test_empty_value_lists_left_out():
    catalog = make_catalog(random_records(350), ["colour", "size"])
    result = split_attribute(catalog, "size", CONFIG)
    unlabelled = catalog.frame["size"].map(len).eq(0).sum()

    assert unlabelled == 50
    assert result.unlabelled == 50
    assert len(result.frame) == 300
    assert result.summary()["unlabelled"] == 50


def test_multi_valued_value_sorted_joined():
    records = [{"content_hash": photo_hash("multi"), "colour": ["red", "blue", "red"]}]
    result = split_attribute(make_catalog(records, ["colour"]), "colour", CONFIG)

    assert result.frame["value"].tolist() == ["blue|red"]


def test_value_with_separator_rejected():
    records = [{"content_hash": photo_hash("pipe"), "colour": ["red|blue"]}]

    with pytest.raises(SplitError, match="red\\|blue"):
        split_attribute(make_catalog(records, ["colour"]), "colour", CONFIG)


def test_duplicates_share_split_and_role():
    records = random_records(300)
    for copy in range(40):
        original = records[copy * 5]
        records.append({**original, "image_id": f"copy-{copy:03d}"})
    result = split_attribute(make_catalog(records, ["colour", "size"]), "colour", CONFIG)

    groups = result.frame.groupby("content_hash")
    assert (groups["split"].nunique() == 1).all()
    assert (groups["role"].nunique() == 1).all()
    assert (groups.size() == 2).sum() == 40


def test_every_query_has_candidate():
    records = random_records(3000, seed=3)
    for record in records[::3]:
        record["colour"] = [f"rare-{record['image_id'][-3:]}"]
    result = split_attribute(make_catalog(records, ["colour", "size"]), "colour", CONFIG)

    for split in ("valid", "test"):
        rows = result.frame[result.frame["split"] == split]
        query_values = set(rows.loc[rows["role"] == "query", "value"])
        candidate_values = set(rows.loc[rows["role"] == "candidate", "value"])
        assert query_values
        assert query_values <= candidate_values
        assert candidate_values <= query_values


def test_rare_value_excluded_with_reason():
    common = [find_photo("test", start=1000 * index) for index in range(6)]
    lone = find_photo("test", start=50_000)
    records = [{"content_hash": content_hash, "colour": ["red"]} for content_hash in common]
    records.append({"image_id": "lone", "content_hash": lone, "colour": ["violet"]})
    result = split_attribute(make_catalog(records, ["colour"]), "colour", CONFIG)

    lone_row = result.frame.set_index("image_id").loc["lone"]
    assert lone_row["role"] == "excluded"
    assert lone_row["exclude_reason"] == "rare_value: 1 image in test"
    assert result.excluded_values["test"] == {
        "violet": {"images": 1, "photos": 1, "reason": "rare_value: 1 image in test"}
    }
    assert result.summary()["excluded_values"]["test"]["violet"]["images"] == 1
    assert (result.frame.loc[result.frame["value"] == "red", "role"] != "excluded").all()


def test_rare_value_of_one_photo_excluded():
    photo = find_photo("valid")
    records = [
        {"image_id": "first", "content_hash": photo, "colour": ["teal"]},
        {"image_id": "second", "content_hash": photo, "colour": ["teal"]},
    ]
    result = split_attribute(make_catalog(records, ["colour"]), "colour", CONFIG)

    assert (result.frame["role"] == "excluded").all()
    assert (result.frame["exclude_reason"] == "rare_value: 2 images in valid, all of one photo").all()


def test_rare_train_value_stays_trainable():
    lone = find_photo("train")
    records = [{"image_id": "lone", "content_hash": lone, "colour": ["violet"]}]
    result = split_attribute(make_catalog(records, ["colour"]), "colour", CONFIG)

    assert result.frame["role"].tolist() == ["train"]
    assert result.train_values_without_pair == ["violet"]
    assert result.summary()["train_values_without_pair"] == {"count": 1, "values": ["violet"]}


def test_all_query_value_gets_candidate():
    first = find_photo("test", "query")
    second = find_photo("test", "query", skip={first})
    records = [
        {"image_id": "a", "content_hash": first, "colour": ["red"]},
        {"image_id": "b", "content_hash": second, "colour": ["red"]},
    ]
    result = split_attribute(make_catalog(records, ["colour"]), "colour", CONFIG)
    roles = result.frame.set_index("image_id")["role"]
    moved = "a" if role_fraction(first, CONFIG) > role_fraction(second, CONFIG) else "b"

    assert sorted(roles) == ["candidate", "query"]
    assert roles[moved] == "candidate"
    assert result.rebalanced == {"valid": 0, "test": 1}


def test_all_candidate_value_gets_query():
    photos = []
    for _ in range(3):
        photos.append(find_photo("valid", "candidate", skip=set(photos)))
    records = [{"content_hash": photo, "colour": ["red"]} for photo in photos]
    result = split_attribute(make_catalog(records, ["colour"]), "colour", CONFIG)
    lowest = min(photos, key=lambda photo: role_fraction(photo, CONFIG))

    assert (result.frame["role"] == "query").sum() == 1
    assert result.frame.set_index("content_hash").loc[lowest, "role"] == "query"
    assert result.rebalanced == {"valid": 1, "test": 0}


def test_conflicting_duplicates_excluded():
    records = random_records(400)
    for index in range(0, 400, 4):
        records[index]["eval_exclude"] = ["colour"]
    result = split_attribute(make_catalog(records, ["colour", "size"]), "colour", CONFIG)
    frame = result.frame.set_index("image_id")
    flagged = [record["image_id"] for record in records if record.get("eval_exclude")]
    flagged_rows = frame.loc[flagged]

    evaluated = flagged_rows[flagged_rows["split"] != "train"]
    assert len(evaluated) > 0
    assert (evaluated["role"] == "excluded").all()
    assert (evaluated["exclude_reason"] == "conflicting_duplicate").all()
    assert (flagged_rows.loc[flagged_rows["split"] == "train", "role"] == "train").all()
    assert sum(result.summary()["conflicting_duplicates"].values()) == len(evaluated)


def test_conflict_on_other_attribute_ignored():
    records = random_records(200)
    for record in records:
        record["eval_exclude"] = ["size"]
    result = split_attribute(make_catalog(records, ["colour", "size"]), "colour", CONFIG)

    assert not (result.frame["exclude_reason"] == "conflicting_duplicate").any()


def test_unflagged_conflict_excluded(caplog):
    photo = find_photo("test")
    records = [{"content_hash": find_photo("test", start=100 * index), "colour": ["red"]} for index in range(1, 5)]
    records += [
        {"image_id": "x1", "content_hash": photo, "colour": ["red"]},
        {"image_id": "x2", "content_hash": photo, "colour": ["blue"]},
    ]
    with caplog.at_level(logging.WARNING):
        result = split_attribute(make_catalog(records, ["colour"]), "colour", CONFIG)
    rows = result.frame.set_index("image_id").loc[["x1", "x2"]]

    assert (rows["role"] == "excluded").all()
    assert (rows["exclude_reason"] == "conflicting_duplicate").all()
    assert "not in eval_exclude" in caplog.text


def test_missing_content_hash_rejected():
    records = [{"content_hash": None, "colour": ["red"]}]

    with pytest.raises(SplitError, match="no content hash"):
        split_attribute(make_catalog(records, ["colour"]), "colour", CONFIG)


def test_unvalidated_catalog_rejected():
    catalog = make_catalog(random_records(10), ["colour"])
    catalog.frame = catalog.frame.drop(columns=["eval_exclude"])

    with pytest.raises(SplitError, match="mclfir data validate"):
        split_attribute(catalog, "colour", CONFIG)


def test_cli_writes_tables_and_summary(tmp_path, capsys):
    params = write_params(tmp_path)
    catalog_path = write_catalog(make_catalog(random_records(500), ["colour", "size"]), tmp_path / "catalog.parquet")
    out = tmp_path / "splits" / "inc0"

    assert run_split(catalog_path, params, out, "--increment", "inc0") == 0

    assert sorted(path.name for path in out.iterdir()) == ["colour.parquet", "size.parquet", "summary.json"]
    table = read_split(out / "colour.parquet")
    assert table.attribute == "colour"
    assert table.root == "/data/synthetic"
    assert table.source == "synthetic"
    assert list(table.frame.columns) == list(SPLIT_COLUMNS)
    assert len(table.frame) == 500

    summary = json.loads((out / "summary.json").read_text())
    assert summary["increment"] == "inc0"
    assert summary["split_params"] == {"train": 0.8, "valid": 0.1, "test": 0.1, "query_fraction": 0.25, "salt": "mclfir-split-v1"}
    assert set(summary["attributes"]) == {"colour", "size"}
    counts = summary["attributes"]["colour"]["counts"]
    assert sum(sum(roles.values()) for roles in counts.values()) == 500
    assert counts["train"]["train"] == (table.frame["split"] == "train").sum()
    assert "colour: 4 values" in capsys.readouterr().out


def test_cli_attributes_override(tmp_path):
    params = write_params(tmp_path)
    catalog_path = write_catalog(make_catalog(random_records(50), ["colour", "size"]), tmp_path / "catalog.parquet")
    out = tmp_path / "custom"

    assert run_split(catalog_path, params, out, "--increment", "inc0", "--attributes", "size") == 0

    assert sorted(path.name for path in out.iterdir()) == ["size.parquet", "summary.json"]


def test_split_metadata_has_provenance(tmp_path):
    params = write_params(tmp_path)
    catalog_path = write_catalog(make_catalog(random_records(50), ["colour", "size"]), tmp_path / "catalog.parquet")
    out = tmp_path / "out"
    run_split(catalog_path, params, out, "--increment", "inc0")

    metadata = json.loads(pq.read_schema(out / "size.parquet").metadata[METADATA_KEY])
    assert metadata == {"attribute": "size", "root": "/data/synthetic", "source": "synthetic"}


def test_unknown_attribute_lists_catalog(tmp_path, caplog):
    params = write_params(tmp_path)
    catalog_path = write_catalog(make_catalog(random_records(50), ["colour", "size"]), tmp_path / "catalog.parquet")

    status = run_split(catalog_path, params, tmp_path / "out", "--increment", "inc1")

    assert status == 1
    assert "Unknown attribute 'shape'" in caplog.text
    assert "colour, size" in caplog.text
    assert not (tmp_path / "out").exists()


def test_unknown_increment_lists_plan(tmp_path, caplog):
    params = write_params(tmp_path)
    catalog_path = write_catalog(make_catalog(random_records(50), ["colour", "size"]), tmp_path / "catalog.parquet")

    assert run_split(catalog_path, params, tmp_path / "out", "--increment", "inc9") == 1
    assert "inc0, inc1" in caplog.text


def test_same_input_identical_bytes(tmp_path):
    params = write_params(tmp_path)
    catalog_path = write_catalog(make_catalog(random_records(600), ["colour", "size"]), tmp_path / "catalog.parquet")

    run_split(catalog_path, params, tmp_path / "first", "--increment", "inc0")
    run_split(catalog_path, params, tmp_path / "second", "--increment", "inc0")

    for name in ("colour.parquet", "size.parquet", "summary.json"):
        assert (tmp_path / "first" / name).read_bytes() == (tmp_path / "second" / name).read_bytes(), name


def test_adding_attribute_keeps_table_bytes(tmp_path):
    params = write_params(tmp_path)
    records = random_records(600)
    narrow = write_catalog(make_catalog(records, ["colour"]), tmp_path / "narrow.parquet")
    for index, record in enumerate(records):
        record["shape"] = ["round" if index % 2 else "square"]
    wide = write_catalog(make_catalog(records, ["colour", "size", "shape"]), tmp_path / "wide.parquet")

    run_split(narrow, params, tmp_path / "narrow", "--increment", "inc0", "--attributes", "colour")
    run_split(wide, params, tmp_path / "wide", "--increment", "inc0", "--attributes", "colour")

    assert (tmp_path / "narrow" / "colour.parquet").read_bytes() == (tmp_path / "wide" / "colour.parquet").read_bytes()


def test_adding_images_keeps_splits():
    records = random_records(1000)
    before = split_attribute(make_catalog(records, ["colour", "size"]), "colour", CONFIG)
    grown = records + random_records(700, seed=9, prefix="extra")
    random.Random(2).shuffle(grown)
    after = split_attribute(make_catalog(grown, ["colour", "size"]), "colour", CONFIG)

    merged = before.frame.merge(after.frame, on="image_id", suffixes=("_before", "_after"))
    assert len(merged) == 1000
    assert (merged["split_before"] == merged["split_after"]).all()
    assert (after.frame["split"] == "valid").sum() > (before.frame["split"] == "valid").sum()


def test_catalog_round_trip_keeps_splits(tmp_path):
    catalog = make_catalog(random_records(300), ["colour", "size"])
    direct = split_attribute(catalog, "colour", CONFIG)
    read_back = split_attribute(read_catalog(write_catalog(catalog, tmp_path / "catalog.parquet")), "colour", CONFIG)

    pd.testing.assert_frame_equal(direct.frame, read_back.frame)


def test_salt_changes_assignment():
    records = random_records(500)
    catalog = make_catalog(records, ["colour"])
    first = split_attribute(catalog, "colour", CONFIG)
    second = split_attribute(catalog, "colour", SplitConfig(salt="another-salt"))

    assert (first.frame["split"] != second.frame["split"]).sum() > 50


def test_unlabelled_attribute_empty_table(tmp_path):
    params = write_params(tmp_path)
    records = [{"content_hash": photo_hash(f"bare-{index}"), "colour": ["red"]} for index in range(20)]
    catalog_path = write_catalog(make_catalog(records, ["colour", "size"]), tmp_path / "catalog.parquet")

    assert run_split(catalog_path, params, tmp_path / "out", "--increment", "inc0", "--attributes", "size") == 0

    table = read_split(tmp_path / "out" / "size.parquet")
    assert len(table.frame) == 0
    assert list(table.frame.columns) == list(SPLIT_COLUMNS)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["attributes"]["size"]["unlabelled"] == 20
