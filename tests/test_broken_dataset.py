"""End to end: prepare and validate a small Fashion Products dataset with one defect of each kind."""

import json
from pathlib import Path

from PIL import Image, ImageDraw

from mclfir.cli import main

HEADER = "id,gender,masterCategory,subCategory,articleType,baseColour,season,year,usage,productDisplayName"
GOOD_IMAGES = 110
CORRUPT_ID = "9001"
MISSING_ID = "9002"
DUPLICATE_ID = "9003"
EMPTY_VALUE_ID = "9004"
OUTSIDE_ID = "../../outside"


def style_row(image_id: str, index: int, season: str = "Summer") -> str:
    colour = ("Black", "White", "Blue")[index % 3]
    gender = ("Men", "Women")[index % 2]
    return f"{image_id},{gender},Apparel,Topwear,Tshirts,{colour},{season},2012,Casual,Test {colour} Tshirt {index}"


def write_photo(path: Path, index: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", (60, 80), "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle([5 + index % 20, 5 + index % 30, 40 + index % 15, 70], fill=(index * 7 % 256, index * 13 % 256, 90))
    image.save(path, format="JPEG")


def build_dataset(root: Path, broken: bool) -> dict[str, int]:
    """Write styles.csv and images/ under ``root``; return the CSV line of each defect when ``broken``."""
    lines = [HEADER]
    for index in range(GOOD_IMAGES):
        image_id = str(1000 + index)
        lines.append(style_row(image_id, index))
        write_photo(root / "images" / f"{image_id}.jpg", index)
    if not broken:
        (root / "styles.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
        return {}

    defect_lines = {}
    for name, row in (
        ("corrupt", style_row(CORRUPT_ID, 1)),
        ("missing", style_row(MISSING_ID, 2)),
        ("duplicate_first", style_row(DUPLICATE_ID, 3)),
        ("duplicate_second", style_row(DUPLICATE_ID, 4)),
        ("empty", style_row(EMPTY_VALUE_ID, 5, season="")),
        ("bad_row", "9005,Men,Apparel"),
        ("outside", style_row(OUTSIDE_ID, 6)),
    ):
        lines.append(row)
        defect_lines[name] = len(lines)

    (root / "images" / f"{CORRUPT_ID}.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a complete JPEG")
    write_photo(root / "images" / f"{DUPLICATE_ID}.jpg", 3)
    write_photo(root / "images" / f"{EMPTY_VALUE_ID}.jpg", 5)
    write_photo(root.parent / "outside.jpg", 6)
    (root / "styles.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return defect_lines


def prepare_and_validate(tmp_path: Path) -> tuple[int, int, Path]:
    catalog = tmp_path / "work" / "catalog.parquet"
    prepared = main(["data", "prepare", "--source", "fashion-products", "--root", str(tmp_path / "dataset"), "--out", str(catalog)])
    validated = main([
        "data", "validate", "--catalog", str(catalog), "--report", str(tmp_path / "validated" / "report.json"),
        "--gx-dir", str(tmp_path / "gx"), "--min-images-per-value", "1", "--workers", "1",
    ])
    return prepared, validated, tmp_path / "validated"


def test_broken_dataset_named(tmp_path, capsys):
    defect_lines = build_dataset(tmp_path / "dataset", broken=True)

    prepared, validated, out = prepare_and_validate(tmp_path)
    output = capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())

    assert max(prepared, validated) == 1
    assert validated == 1
    assert f"images/{CORRUPT_ID}.jpg" in output
    assert f"images/{MISSING_ID}.jpg" in output
    assert f"styles.csv:{defect_lines['duplicate_first']}" in output
    assert f"styles.csv:{defect_lines['duplicate_second']}" in output
    assert f"row {defect_lines['empty']} id {EMPTY_VALUE_ID} season=''" in output
    assert f"styles.csv:{defect_lines['bad_row']}" in output
    assert OUTSIDE_ID in output
    assert report["passed"] is False
    assert not (out / "catalog.parquet").exists()
    assert not (out / "set_aside.parquet").exists()


def test_good_dataset_passes(tmp_path, capsys):
    build_dataset(tmp_path / "dataset", broken=False)

    prepared, validated, out = prepare_and_validate(tmp_path)
    output = capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())

    assert prepared == 0
    assert validated == 0, output
    assert (out / "catalog.parquet").is_file()
    assert (out / "set_aside.parquet").is_file()
    assert (tmp_path / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html").is_file()
    assert report["counts"]["usable_images"] == GOOD_IMAGES
