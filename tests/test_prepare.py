"""Tests of ``mclfir data prepare`` on small generated datasets, and one run on the real data."""

import hashlib
import logging
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from mclfir.cli import main
from mclfir.data import prepare
from mclfir.data.catalog import read_catalog
from mclfir.paths import DATA_ROOT_ENV, PROJECT_ROOT_ENV

HEADER = "id,gender,masterCategory,subCategory,articleType,baseColour,season,year,usage,productDisplayName"
SHIRT = "{id},Men,Apparel,Topwear,Shirts,Navy Blue,Fall,2011,Casual,{name}"
JEANS = "{id},Women,Apparel,Bottomwear,Jeans,Blue,Summer,2012,Ethnic,{name}"


def write_dataset(root: Path, lines: list[str], image_ids: list[str]) -> Path:
    """Write styles.csv from ``lines`` (header included) and one 60x80 JPEG per id; return ``root``."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "styles.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    for number, image_id in enumerate(image_ids):
        colour = (number * 37 % 256, number * 91 % 256, number * 13 % 256)
        Image.new("RGB", (60, 80), colour).save(root / "images" / f"{image_id}.jpg", format="JPEG")
    return root


def shirt_lines(count: int, first_id: int = 1) -> list[str]:
    return [SHIRT.format(id=str(first_id + number), name=f"Shirt {number}") for number in range(count)]


def run_prepare(root: Path, out: Path, *options: str) -> int:
    return main(["data", "prepare", "--source", "fashion-products", "--root", str(root), "--out", str(out), *options])


def test_prepare_writes_catalog_and_problems(tmp_path, capsys):
    lines = [HEADER, *shirt_lines(3), SHIRT.format(id="9", name="Shirt, Navy")]
    root = write_dataset(tmp_path / "data", lines, ["1", "2", "9"])
    out = tmp_path / "out" / "catalog.parquet"

    status = run_prepare(root, out)

    assert status == 0
    catalog = read_catalog(out)
    assert list(catalog.frame["image_id"]) == ["1", "2", "3", "9"]
    assert int(catalog.frame["content_hash"].notna().sum()) == 3
    assert catalog.source == "fashion-products"
    assert catalog.root == root.as_posix()
    assert catalog.extra["recovered_rows"] == [5]

    problems = pd.read_parquet(tmp_path / "out" / "catalog.problems.parquet")
    assert len(problems) == 0
    assert list(problems.columns) == ["check", "action", "message", "file", "row", "image_id", "column", "value"]

    printed = capsys.readouterr().out
    assert "4 images, 3 with an image file" in printed
    assert "1 rows recovered" in printed


def test_prepare_reports_set_aside_rows(tmp_path, capsys):
    lines = [HEADER, *shirt_lines(2), "3,Men,Apparel", JEANS.format(id="4", name="Jeans")]
    root = write_dataset(tmp_path / "data", lines, ["1", "2", "4"])
    out = tmp_path / "catalog.parquet"
    problems_out = tmp_path / "report" / "problems.parquet"

    status = run_prepare(root, out, "--problems", str(problems_out))

    assert status == 0
    problems = pd.read_parquet(problems_out)
    assert list(problems["check"]) == ["csv_row_unrecoverable"]
    assert list(problems["row"]) == [4]
    assert list(problems["value"]) == ["3,Men,Apparel"]
    assert not (tmp_path / "catalog.problems.parquet").exists()
    assert "[set_aside] csv_row_unrecoverable: 1 (styles.csv:4 id 3)" in capsys.readouterr().out


def test_prepare_exits_1_on_duplicate_ids(tmp_path, capsys):
    lines = [HEADER, *shirt_lines(2), SHIRT.format(id="1", name="Again")]
    root = write_dataset(tmp_path / "data", lines, ["1", "2"])
    out = tmp_path / "catalog.parquet"

    status = run_prepare(root, out)

    assert status == 1
    assert len(read_catalog(out).frame) == 3
    problems = pd.read_parquet(tmp_path / "catalog.problems.parquet")
    assert list(problems["check"]) == ["duplicate_id", "duplicate_id"]
    assert list(problems["row"]) == [2, 4]
    assert "[stop] duplicate_id: 2" in capsys.readouterr().out


def test_prepare_exits_1_on_missing_columns(tmp_path):
    lines = ["id,gender,articleType", "1,Men,Shirts"]
    root = write_dataset(tmp_path / "data", lines, ["1"])
    out = tmp_path / "catalog.parquet"
    out.write_bytes(b"stale catalog of an earlier run")

    status = run_prepare(root, out)

    assert status == 1
    assert not out.exists()
    problems = pd.read_parquet(tmp_path / "catalog.problems.parquet")
    assert list(problems["check"]) == ["csv_columns_missing"]
    assert list(problems["action"]) == ["stop"]


def test_prepare_missing_root_message(tmp_path, caplog):
    missing = tmp_path / "absent"

    with caplog.at_level(logging.ERROR):
        status = run_prepare(missing, tmp_path / "catalog.parquet")

    assert status == 1
    assert str(missing) in caplog.text
    assert "MCLFIR_DATA_ROOT" in caplog.text
    assert not (tmp_path / "catalog.parquet").exists()


def test_prepare_missing_styles_message(tmp_path, caplog):
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)

    with caplog.at_level(logging.ERROR):
        status = run_prepare(root, tmp_path / "catalog.parquet")

    assert status == 1
    assert "styles.csv not found" in caplog.text
    assert str(root) in caplog.text


def test_prepare_root_from_environment(tmp_path, monkeypatch):
    root = write_dataset(tmp_path / "data", [HEADER, *shirt_lines(2)], ["1", "2"])
    monkeypatch.setenv(DATA_ROOT_ENV, str(root))
    out = tmp_path / "catalog.parquet"

    status = main(["data", "prepare", "--out", str(out)])

    assert status == 0
    assert read_catalog(out).root == root.as_posix()


def test_prepare_without_root_fails(tmp_path, monkeypatch, caplog):
    monkeypatch.delenv(DATA_ROOT_ENV, raising=False)

    with caplog.at_level(logging.ERROR):
        status = main(["data", "prepare", "--out", str(tmp_path / "catalog.parquet")])

    assert status == 1
    assert "No dataset root given" in caplog.text


def test_root_stored_relative_to_project(tmp_path, monkeypatch):
    project = tmp_path / "project"
    root = write_dataset(project / "data" / "raw" / "fashion-products", [HEADER, *shirt_lines(2)], ["1", "2"])
    monkeypatch.setenv(PROJECT_ROOT_ENV, str(project))
    monkeypatch.chdir(tmp_path)

    relative_status = run_prepare(Path("data/raw/fashion-products"), Path("data/prepared/catalog.parquet"))
    absolute_status = run_prepare(root, tmp_path / "absolute.parquet")

    assert relative_status == 0
    assert absolute_status == 0
    relative_catalog = read_catalog(project / "data" / "prepared" / "catalog.parquet")
    assert relative_catalog.root == "data/raw/fashion-products"
    assert len(relative_catalog.frame) == 2
    assert read_catalog(tmp_path / "absolute.parquet").root == "data/raw/fashion-products"


def test_max_images_keeps_lowest_id_hashes(tmp_path):
    root = write_dataset(tmp_path / "data", [HEADER, *shirt_lines(20)], [str(number) for number in range(1, 21)])
    first_out = tmp_path / "first.parquet"
    second_out = tmp_path / "second.parquet"

    assert run_prepare(root, first_out, "--max-images", "5") == 0
    assert run_prepare(root, second_out, "--max-images", "5") == 0

    first = read_catalog(first_out).frame
    second = read_catalog(second_out).frame
    expected = sorted((str(number) for number in range(1, 21)), key=lambda image_id: hashlib.sha256(image_id.encode()).hexdigest())[:5]
    assert sorted(first["image_id"]) == sorted(expected)
    assert list(first["image_id"]) == list(second["image_id"])
    assert list(first["source_row"]) == sorted(first["source_row"])
    assert read_catalog(first_out).extra["max_images"] == 5


def test_max_images_stable_when_images_added(tmp_path):
    small = write_dataset(tmp_path / "small", [HEADER, *shirt_lines(20)], [])
    large = write_dataset(tmp_path / "large", [HEADER, *shirt_lines(20), *shirt_lines(20, first_id=100)], [])

    assert run_prepare(small, tmp_path / "small.parquet", "--max-images", "8") == 0
    assert run_prepare(large, tmp_path / "large.parquet", "--max-images", "8") == 0

    kept_small = set(read_catalog(tmp_path / "small.parquet").frame["image_id"])
    kept_large = set(read_catalog(tmp_path / "large.parquet").frame["image_id"])
    original_ids = {str(number) for number in range(1, 21)}
    assert len(kept_large) == 8
    assert kept_large & original_ids <= kept_small


def test_max_images_rejects_negative(tmp_path):
    with pytest.raises(SystemExit) as raised:
        run_prepare(tmp_path, tmp_path / "catalog.parquet", "--max-images", "-1")

    assert raised.value.code == 2


def test_unavailable_adapter_message(tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(prepare.ADAPTER_MODULES, "fashion-products", "mclfir.data.no_such_adapter")

    with caplog.at_level(logging.ERROR):
        status = run_prepare(tmp_path, tmp_path / "catalog.parquet")

    assert status == 1
    assert "mclfir.data.no_such_adapter" in caplog.text
    assert "not available" in caplog.text


def test_problems_path_beside_catalog():
    assert prepare.default_problems_path(Path("data/prepared/catalog.parquet")) == Path("data/prepared/catalog.problems.parquet")


def test_prepare_fashionai_source(tmp_path):
    root = tmp_path / "fashionai"
    (root / "Annotations").mkdir(parents=True)
    (root / "Annotations" / "label.csv").write_text(
        "Images/skirt_length_labels/a.jpg,skirt_length_labels,nnynnn\n", encoding="utf-8"
    )
    out = tmp_path / "catalog.parquet"

    status = main(["data", "prepare", "--source", "fashionai", "--root", str(root), "--out", str(out)])

    assert status == 0
    catalog = read_catalog(out)
    assert catalog.source == "fashionai"
    assert list(catalog.frame["image_id"]) == ["Images/skirt_length_labels/a.jpg"]
    assert catalog.root == root.as_posix()


def test_prepare_asen_needs_dataset(tmp_path, caplog):
    with caplog.at_level(logging.ERROR):
        status = main(["data", "prepare", "--source", "asen", "--root", str(tmp_path), "--out", str(tmp_path / "c.parquet")])

    assert status == 1
    assert "--dataset" in caplog.text


def test_prepare_asen_subsample_protocol(asen_root, tmp_path):
    out = tmp_path / "catalog.parquet"
    image_root = tmp_path / "images"
    image_root.mkdir()

    status = main([
        "data", "prepare", "--source", "asen", "--dataset", "FashionAI", "--root", str(asen_root),
        "--image-root", str(image_root), "--out", str(out), "--max-images", "50",
    ])

    assert status == 0
    catalog = read_catalog(out)
    assert len(catalog.frame) == 50
    assert catalog.root == image_root.as_posix()
    protocol = pd.read_parquet(tmp_path / "protocol.parquet")
    assert len(protocol) > 0
    assert set(protocol["image_id"]) <= set(catalog.frame["image_id"])


@pytest.mark.realdata
def test_prepare_real_data(real_data_root, tmp_path):
    out = tmp_path / "catalog.parquet"

    status = run_prepare(real_data_root, out)

    assert status == 0
    catalog = read_catalog(out)
    frame = catalog.frame
    assert len(frame) == 44446
    assert int(frame["content_hash"].notna().sum()) == 43177
    assert len(catalog.attributes) == 7
    assert not frame["image_id"].duplicated().any()
    problems = pd.read_parquet(tmp_path / "catalog.problems.parquet")
    assert "duplicate_id" not in set(problems["check"])
    assert not (problems["action"] == "stop").any()
