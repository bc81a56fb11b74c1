"""Tests of the FashionAI challenge reader: label decoding, problems, meta lookup and image hashes."""

import csv
import hashlib
import json
from pathlib import Path

import pytest
from PIL import Image

from mclfir.data.fashionai import FASHIONAI_VALUE_COUNTS, read_fashionai

SKIRT_NAMES = ["Invisible", "Short Length", "Knee Length", "Midi Length", "Ankle Length", "Floor Length"]


def _write_label_csv(root: Path, text: str, newline: str = "\n") -> Path:
    path = root / "Annotations" / "label.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.replace("\n", newline).encode())
    return path


def _write_meta(path: Path) -> None:
    meta = {
        "ATTRIBUTES": list(FASHIONAI_VALUE_COUNTS),
        "ATTRIBUTES_NUM": FASHIONAI_VALUE_COUNTS,
        "ATTRIBUTES_VALUES": {"skirt_length": SKIRT_NAMES},
    }
    path.write_text(json.dumps(meta))


def _row_by_path(catalog, path: str) -> dict:
    rows = catalog.frame[catalog.frame["path"] == path]
    assert len(rows) == 1, f"expected one catalog row for {path}, found {len(rows)}"
    return rows.iloc[0].to_dict()


def test_label_code_decodes_y_position(tmp_path):
    _write_label_csv(tmp_path, "Images/skirt_length_labels/a.jpg,skirt_length_labels,nnynnn\n")

    catalog, problems = read_fashionai(tmp_path)

    assert problems == []
    assert _row_by_path(catalog, "Images/skirt_length_labels/a.jpg")["skirt_length"] == ["2"]


def test_maybe_positions_are_ignored(tmp_path):
    _write_label_csv(tmp_path, "Images/skirt_length_labels/a.jpg,skirt_length_labels,mnnnym\n")

    catalog, problems = read_fashionai(tmp_path)

    assert problems == []
    assert _row_by_path(catalog, "Images/skirt_length_labels/a.jpg")["skirt_length"] == ["4"]


def test_meta_names_from_parent_folder(tmp_path):
    root = tmp_path / "valid"
    _write_label_csv(root, "Images/skirt_length_labels/a.jpg,skirt_length_labels,nnnynn\n")
    _write_meta(tmp_path / "meta.json")

    catalog, _ = read_fashionai(root)

    assert _row_by_path(catalog, "Images/skirt_length_labels/a.jpg")["skirt_length"] == ["Midi Length"]
    assert catalog.extra["meta"] == str(tmp_path / "meta.json")


def test_meta_in_root_wins_over_parent(tmp_path):
    root = tmp_path / "valid"
    _write_label_csv(root, "Images/skirt_length_labels/a.jpg,skirt_length_labels,nnnynn\n")
    _write_meta(root / "meta.json")
    (tmp_path / "meta.json").write_text("not json")

    catalog, _ = read_fashionai(root)

    assert catalog.extra["meta"] == str(root / "meta.json")


def test_explicit_meta_path(tmp_path):
    _write_label_csv(tmp_path / "data", "Images/skirt_length_labels/a.jpg,skirt_length_labels,ynnnnn\n")
    meta_path = tmp_path / "elsewhere.json"
    _write_meta(meta_path)

    catalog, _ = read_fashionai(tmp_path / "data", meta_path=meta_path)

    assert _row_by_path(catalog, "Images/skirt_length_labels/a.jpg")["skirt_length"] == ["Invisible"]


def test_image_with_several_attribute_rows(tmp_path):
    _write_label_csv(
        tmp_path,
        "Images/mixed/a.jpg,skirt_length_labels,nynnnn\n"
        "Images/mixed/b.jpg,neck_design_labels,nnnny\n"
        "Images/mixed/a.jpg,neck_design_labels,nnynn\n",
    )

    catalog, problems = read_fashionai(tmp_path)

    assert problems == []
    assert len(catalog.frame) == 2
    row = _row_by_path(catalog, "Images/mixed/a.jpg")
    assert row["skirt_length"] == ["1"]
    assert row["neck_design"] == ["2"]
    assert row["source_row"] == 1
    assert row["sleeve_length"] == []


def test_crlf_and_stray_cr_end_lines(tmp_path):
    content = (
        b"Images/skirt_length_labels/a.jpg,skirt_length_labels,ynnnnn\r\n"
        b"Images/skirt_length_labels/b.jpg,skirt_length_labels,nynnnn\r"
        b"Images/skirt_length_labels/c.jpg,skirt_length_labels,nnynnn\r\n"
    )
    label_path = tmp_path / "Annotations" / "label.csv"
    label_path.parent.mkdir()
    label_path.write_bytes(content)

    catalog, problems = read_fashionai(tmp_path)

    assert problems == []
    assert list(catalog.frame["source_row"]) == [1, 2, 3]
    assert list(catalog.frame["skirt_length"]) == [["0"], ["1"], ["2"]]
    assert not any(path.endswith("\r") for path in catalog.frame["path"])


def test_every_broken_row_reported_in_one_pass(tmp_path):
    label_path = _write_label_csv(
        tmp_path,
        "Images/skirt_length_labels/good.jpg,skirt_length_labels,nynnnn\n"  # 1: fine
        "Images/skirt_length_labels/none.jpg,skirt_length_labels,nnnnnn\n"  # 2: no y
        "Images/skirt_length_labels/two.jpg,skirt_length_labels,nyynnn\n"  # 3: two y
        "Images/skirt_length_labels/short.jpg,skirt_length_labels,nyn\n"  # 4: wrong length
        "Images/hat_labels/hat.jpg,hat_labels,ny\n"  # 5: unknown attribute
        "../outside/x.jpg,skirt_length_labels,ynnnnn\n"  # 6: outside the root
        "/abs/x.jpg,skirt_length_labels,ynnnnn\n"  # 7: absolute
        "Images/skirt_length_labels/few.jpg,nnnnny\n"  # 8: too few fields
        "Images/skirt_length_labels/bad.jpg,skirt_length_labels,nyxnnn\n"  # 9: invalid letter
        "Images/skirt_length_labels/good.jpg,skirt_length_labels,nnnnny\n",  # 10: repeated label
    )

    catalog, problems = read_fashionai(tmp_path)

    found = {(problem.check, problem.row, problem.value) for problem in problems}
    expected = {
        ("fashionai_code", 2, "nnnnnn"),
        ("fashionai_code", 3, "nyynnn"),
        ("fashionai_code_length", 4, "nyn"),
        ("fashionai_unknown_attribute", 5, "hat_labels"),
        ("fashionai_path", 6, "../outside/x.jpg"),
        ("fashionai_path", 7, "/abs/x.jpg"),
        ("fashionai_field_count", 8, "Images/skirt_length_labels/few.jpg,nnnnny"),
        ("fashionai_code", 9, "nyxnnn"),
        ("fashionai_duplicate_label", 10, "nnnnny"),
    }
    assert found == expected
    assert all(problem.file == str(label_path) for problem in problems)
    assert all(f"label.csv:{problem.row}" in problem.message for problem in problems)
    assert list(catalog.frame["path"]) == ["Images/skirt_length_labels/good.jpg"]
    assert _row_by_path(catalog, "Images/skirt_length_labels/good.jpg")["skirt_length"] == ["1"]


def test_present_image_hashed_missing_null(tmp_path):
    _write_label_csv(
        tmp_path,
        "Images/skirt_length_labels/here.jpg,skirt_length_labels,nynnnn\n"
        "Images/skirt_length_labels/gone.jpg,skirt_length_labels,nnynnn\n",
    )
    image_path = tmp_path / "Images" / "skirt_length_labels" / "here.jpg"
    image_path.parent.mkdir(parents=True)
    Image.new("RGB", (60, 80), (200, 30, 30)).save(image_path)

    catalog, problems = read_fashionai(tmp_path)

    assert problems == []
    assert _row_by_path(catalog, "Images/skirt_length_labels/here.jpg")["content_hash"] == hashlib.sha256(image_path.read_bytes()).hexdigest()
    assert _row_by_path(catalog, "Images/skirt_length_labels/gone.jpg")["content_hash"] is None
    assert catalog.extra["missing_images"] == 1


def test_missing_label_file_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="label.csv"):
        read_fashionai(tmp_path)


@pytest.mark.realdata
@pytest.mark.parametrize("split", ["valid", "test"])
def test_real_labels_match_meta_names(asen_root, split):
    root = asen_root / "asen" / "fashionAI" / split
    meta = json.loads((asen_root / "asen" / "fashionAI" / "meta.json").read_text())
    with (root / "Annotations" / "label.csv").open(newline="") as handle:
        rows = [row for row in csv.reader(handle) if row]

    catalog, problems = read_fashionai(root)

    assert problems == []
    assert len(catalog.frame) == len({row[0] for row in rows})
    by_path = dict(zip(catalog.frame["path"], catalog.frame.to_dict("records")))
    for path, attribute_field, code in rows:
        attribute = attribute_field[: -len("_labels")]
        expected_name = meta["ATTRIBUTES_VALUES"][attribute][code.index("y")]
        assert by_path[path][attribute] == [expected_name], f"{path} {attribute} {code}"


@pytest.mark.realdata
def test_real_images_absent_hash_null(asen_root):
    root = asen_root / "asen" / "fashionAI" / "valid"

    catalog, _ = read_fashionai(root)

    assert catalog.frame["content_hash"].isna().all()
    assert catalog.extra["missing_images"] == len(catalog.frame)
