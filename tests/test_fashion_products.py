"""Tests of the Fashion Product Images adapter on small generated datasets."""

import hashlib
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from mclfir.data.fashion_products import ATTRIBUTES, NAME_COLUMN, RECOVERED_ROWS_KEY, read_fashion_products, read_styles

HEADER = "id,gender,masterCategory,subCategory,articleType,baseColour,season,year,usage,productDisplayName"
SHIRT = "{id},Men,Apparel,Topwear,Shirts,Navy Blue,Fall,2011,Casual,{name}"
JEANS = "{id},Women,Apparel,Bottomwear,Jeans,Blue,Summer,2012,Ethnic,{name}"


def write_dataset(root: Path, lines: list[str], image_ids: list[str], newline: str = "\n", prefix: bytes = b"") -> Path:
    """Write styles.csv from ``lines`` (header included) and one 60x80 JPEG per id; return ``root``."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    text = newline.join(lines) + newline
    (root / "styles.csv").write_bytes(prefix + text.encode("utf-8"))
    for number, image_id in enumerate(image_ids):
        write_jpeg(root / "images" / f"{image_id}.jpg", number)
    return root


def write_jpeg(path: Path, number: int) -> None:
    """Write a 60x80 RGB JPEG whose colour depends on ``number``, so each file has its own bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    colour = (number * 37 % 256, number * 91 % 256, number * 13 % 256)
    Image.new("RGB", (60, 80), colour).save(path, format="JPEG")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def by_id(catalog, image_id: str):
    rows = catalog.frame[catalog.frame["image_id"] == image_id]
    assert len(rows) == 1, f"expected one row with id {image_id}, found {len(rows)}"
    return rows.iloc[0]


def problems_of(problems, check: str):
    return [problem for problem in problems if problem.check == check]


def test_catalog_columns_and_values(tmp_path):
    lines = [
        HEADER,
        SHIRT.format(id="1", name="Turtle Check Men Navy Blue Shirt"),
        "2,Women,Apparel,Bottomwear,Jeans,,Summer,2012,NA,Blue Jeans",
        JEANS.format(id="3", name="No Photo Jeans"),
    ]
    root = write_dataset(tmp_path / "data", lines, ["1", "2"])

    catalog, problems = read_fashion_products(root)

    assert problems == []
    assert catalog.source == "fashion-products"
    assert catalog.attributes == list(ATTRIBUTES)
    assert list(catalog.frame["image_id"]) == ["1", "2", "3"]
    assert list(catalog.frame["path"]) == ["images/1.jpg", "images/2.jpg", "images/3.jpg"]
    assert list(catalog.frame["source_row"]) == [2, 3, 4]
    assert "year" not in catalog.frame.columns

    shirt = by_id(catalog, "1")
    assert shirt["gender"] == ["Men"]
    assert shirt["articleType"] == ["Shirts"]
    assert shirt["baseColour"] == ["Navy Blue"]
    assert shirt["usage"] == ["Casual"]
    assert shirt[NAME_COLUMN] == "Turtle Check Men Navy Blue Shirt"
    assert shirt["content_hash"] == sha256(root / "images" / "1.jpg")


def test_empty_and_na_values_kept(tmp_path):
    lines = [HEADER, "2,Women,Apparel,Bottomwear,Jeans,,Summer,2012,NA,Blue Jeans"]
    root = write_dataset(tmp_path / "data", lines, ["2"])

    catalog, _ = read_fashion_products(root)

    jeans = by_id(catalog, "2")
    assert jeans["baseColour"] == [""]
    assert jeans["usage"] == ["NA"]


def test_missing_image_has_null_hash(tmp_path):
    lines = [HEADER, SHIRT.format(id="1", name="A"), SHIRT.format(id="2", name="B")]
    root = write_dataset(tmp_path / "data", lines, ["1"])

    catalog, problems = read_fashion_products(root)

    assert by_id(catalog, "1")["content_hash"] == sha256(root / "images" / "1.jpg")
    assert pd.isna(by_id(catalog, "2")["content_hash"])
    assert problems == []


def test_unquoted_comma_in_name_recovered(tmp_path):
    lines = [
        HEADER,
        SHIRT.format(id="1", name="Plain Shirt"),
        JEANS.format(id="2", name="Plain Jeans"),
        SHIRT.format(id="3", name="Shirt, Slim Fit, Navy"),
        JEANS.format(id="4", name='Quoted "Jeans"'),
    ]
    root = write_dataset(tmp_path / "data", lines, ["1", "2", "3"])

    catalog, problems = read_fashion_products(root)

    assert problems == []
    recovered = by_id(catalog, "3")
    assert recovered[NAME_COLUMN] == "Shirt, Slim Fit, Navy"
    assert recovered["usage"] == ["Casual"]
    assert recovered["source_row"] == 4
    assert catalog.extra[RECOVERED_ROWS_KEY] == [4]


def test_quoted_comma_parsed_normally(tmp_path):
    lines = [HEADER, SHIRT.format(id="1", name='"Shirt, Slim Fit"')]
    root = write_dataset(tmp_path / "data", lines, ["1"])

    catalog, problems = read_fashion_products(root)

    assert problems == []
    assert by_id(catalog, "1")[NAME_COLUMN] == "Shirt, Slim Fit"
    assert catalog.extra[RECOVERED_ROWS_KEY] == []


def test_unrecoverable_rows_set_aside(tmp_path):
    too_few = "5,Men,Apparel,Topwear,Shirts,Navy Blue,Fall,2011"
    comma_in_colour = "6,Men,Apparel,Topwear,Shirts,Navy, Blue,Fall,2011,Casual,Shirt"
    comma_in_usage = "7,Men,Apparel,Topwear,Shirts,Navy Blue,Fall,2011,Smart, Casual,Shirt"
    text_id = "x8,Men,Apparel,Topwear,Shirts,Navy Blue,Fall,2011,Casual,Shirt, Navy"
    lines = [
        HEADER,
        SHIRT.format(id="1", name="Plain Shirt"),
        JEANS.format(id="2", name="Plain Jeans"),
        too_few,
        comma_in_colour,
        comma_in_usage,
        text_id,
        SHIRT.format(id="9", name="Last Shirt"),
    ]
    root = write_dataset(tmp_path / "data", lines, ["1", "2", "9"])

    catalog, problems = read_fashion_products(root)

    set_aside = problems_of(problems, "csv_row_unrecoverable")
    assert [problem.row for problem in set_aside] == [4, 5, 6, 7]
    assert [problem.value for problem in set_aside] == [too_few, comma_in_colour, comma_in_usage, text_id]
    assert all(problem.action == "set_aside" for problem in set_aside)
    assert all(problem.file == "styles.csv" for problem in set_aside)
    assert [problem.image_id for problem in set_aside] == ["5", "6", "7", "x8"]
    assert len(problems) == 4
    assert list(catalog.frame["image_id"]) == ["1", "2", "9"]
    assert by_id(catalog, "9")["source_row"] == 8
    assert catalog.extra[RECOVERED_ROWS_KEY] == []


def test_comma_in_colour_message_names_year(tmp_path):
    lines = [HEADER, SHIRT.format(id="1", name="A"), "6,Men,Apparel,Topwear,Shirts,Navy, Blue,Fall,2011,Casual,Shirt"]
    root = write_dataset(tmp_path / "data", lines, ["1"])

    _, problems = read_fashion_products(root)

    assert len(problems) == 1
    assert "year 'Fall'" in problems[0].message


def test_multiline_field_keeps_line_numbers(tmp_path):
    lines = [
        HEADER,
        SHIRT.format(id="1", name='"Two line\nname"'),
        SHIRT.format(id="2", name="After"),
        "",
        SHIRT.format(id="3", name="After blank line"),
    ]
    root = write_dataset(tmp_path / "data", lines, ["1", "2", "3"])

    catalog, problems = read_fashion_products(root)

    assert problems == []
    assert list(catalog.frame["source_row"]) == [2, 4, 6]
    assert by_id(catalog, "1")[NAME_COLUMN] == "Two line\nname"


def test_crlf_and_bom_read(tmp_path):
    lines = [HEADER, SHIRT.format(id="1", name="A"), JEANS.format(id="2", name="B")]
    root = write_dataset(tmp_path / "data", lines, ["1", "2"], newline="\r\n", prefix=b"\xef\xbb\xbf")

    catalog, problems = read_fashion_products(root)

    assert problems == []
    assert list(catalog.frame["image_id"]) == ["1", "2"]
    assert by_id(catalog, "2")[NAME_COLUMN] == "B"


def test_invalid_utf8_row_set_aside(tmp_path):
    root = write_dataset(tmp_path / "data", [HEADER, SHIRT.format(id="1", name="A")], ["1"])
    with (root / "styles.csv").open("ab") as handle:
        handle.write(b"2,Men,Apparel,Topwear,Shirts,Navy Blue,Fall,2011,Casual,Caf\xe9 Shirt\n")

    catalog, problems = read_fashion_products(root)

    assert list(catalog.frame["image_id"]) == ["1"]
    assert len(problems) == 1
    assert problems[0].check == "csv_row_unrecoverable"
    assert problems[0].row == 3
    assert problems[0].value.endswith("Caf\\xe9 Shirt")


def test_missing_columns_stop(tmp_path):
    lines = ["id,gender,masterCategory,articleType,season,year", "1,Men,Apparel,Shirts,Fall,2011"]
    root = write_dataset(tmp_path / "data", lines, ["1"])

    catalog, problems = read_fashion_products(root)

    assert catalog is None
    assert len(problems) == 1
    stop = problems[0]
    assert stop.check == "csv_columns_missing"
    assert stop.action == "stop"
    assert stop.file == "styles.csv"
    assert stop.column == "subCategory, baseColour, usage"
    assert "subCategory" in stop.message
    assert "'year'" in stop.message


def test_empty_file_stops(tmp_path):
    root = write_dataset(tmp_path / "data", [], [])
    (root / "styles.csv").write_bytes(b"")

    catalog, problems = read_fashion_products(root)

    assert catalog is None
    assert [problem.check for problem in problems] == ["csv_columns_missing"]


def test_duplicate_ids_stop(tmp_path):
    lines = [
        HEADER,
        SHIRT.format(id="1", name="First"),
        JEANS.format(id="2", name="Other"),
        JEANS.format(id="1", name="Second"),
    ]
    root = write_dataset(tmp_path / "data", lines, ["1", "2"])

    catalog, problems = read_fashion_products(root)

    duplicates = problems_of(problems, "duplicate_id")
    assert [problem.row for problem in duplicates] == [2, 4]
    assert all(problem.action == "stop" for problem in duplicates)
    assert all(problem.image_id == "1" for problem in duplicates)
    assert "lines 2, 4" in duplicates[0].message
    assert list(catalog.frame["image_id"]) == ["1", "2", "1"]


def test_path_outside_root_stop(tmp_path):
    root = tmp_path / "data"
    outside_file = tmp_path / "secret.jpg"
    write_jpeg(outside_file, 5)
    lines = [HEADER, SHIRT.format(id="1", name="A"), SHIRT.format(id="../../secret", name="B")]
    write_dataset(root, lines, ["1"])

    catalog, problems = read_fashion_products(root)

    assert len(problems) == 1
    outside = problems[0]
    assert outside.check == "path_outside_root"
    assert outside.action == "stop"
    assert outside.row == 3
    assert outside.image_id == "../../secret"
    assert outside.value == "images/../../secret.jpg"
    assert pd.isna(by_id(catalog, "../../secret")["content_hash"])


def test_dotdot_id_inside_root_allowed(tmp_path):
    root = tmp_path / "data"
    write_jpeg(root / "inner.jpg", 3)
    lines = [HEADER, SHIRT.format(id="../inner", name="A")]
    write_dataset(root, lines, [])

    catalog, problems = read_fashion_products(root)

    assert problems == []
    assert by_id(catalog, "../inner")["content_hash"] == sha256(root / "inner.jpg")


def test_empty_id_set_aside(tmp_path):
    lines = [HEADER, SHIRT.format(id="1", name="A"), SHIRT.format(id="", name="B")]
    root = write_dataset(tmp_path / "data", lines, ["1"])

    catalog, problems = read_fashion_products(root)

    assert [problem.check for problem in problems] == ["id_missing"]
    assert problems[0].row == 3
    assert problems[0].action == "set_aside"
    assert list(catalog.frame["image_id"]) == ["1"]


@pytest.mark.parametrize("missing", ["root", "styles.csv", "images"])
def test_missing_layout_raises(tmp_path, missing):
    root = write_dataset(tmp_path / "data", [HEADER, SHIRT.format(id="1", name="A")], ["1"])
    if missing == "root":
        root = tmp_path / "absent"
    elif missing == "styles.csv":
        (root / "styles.csv").unlink()
    else:
        (root / "images" / "1.jpg").unlink()
        (root / "images").rmdir()

    with pytest.raises(FileNotFoundError) as raised:
        read_fashion_products(root)

    assert str(root) in str(raised.value)
    assert "mclfir data import" in str(raised.value)


def test_read_styles_line_numbers(tmp_path):
    lines = [HEADER, SHIRT.format(id="1", name="A"), SHIRT.format(id="2", name="B, C")]
    write_dataset(tmp_path, lines, [])

    table, recovered, problems = read_styles(tmp_path / "styles.csv")

    assert problems == []
    assert recovered == [3]
    assert list(table["source_row"]) == [2, 3]
    assert list(table["productDisplayName"]) == ["A", "B, C"]
    assert list(table["year"]) == ["2011", "2011"]
