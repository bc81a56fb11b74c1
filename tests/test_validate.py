"""Tests of `mclfir data validate` on small catalogs built in tmp_path, and on the real data."""

import json
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image, ImageDraw

from mclfir.cli import main
from mclfir.data.catalog import Catalog, hash_file, read_catalog, write_catalog

ATTRIBUTES = ["colour", "season"]
COLOURS = ["Red", "Blue", "Green"]


def write_photo(path: Path, index: int, mode: str = "RGB", blank: bool = False) -> None:
    """Write a 60x80 JPEG whose pixels depend on ``index``, so that different indexes hash differently."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", (60, 80), "white")
    if not blank:
        draw = ImageDraw.Draw(image)
        draw.rectangle([5 + index % 20, 5 + index % 30, 40 + index % 15, 70], fill=(index * 7 % 256, index * 13 % 256, 90))
    image.convert(mode).save(path, format="JPEG")


def build_catalog(tmp_path: Path, count: int, labels: dict[int, dict[str, list[str]]] | None = None) -> tuple[Path, Path]:
    """Write ``count`` photos and their catalog; ``labels`` overrides the labels of some rows."""
    root = tmp_path / "dataset"
    rows = []
    for index in range(count):
        relative = f"images/{index}.jpg"
        write_photo(root / relative, index)
        row = {
            "image_id": str(index),
            "path": relative,
            "content_hash": hash_file(root / relative),
            "source_row": index + 2,
            "colour": [COLOURS[index % 3]],
            "season": ["Summer" if index % 2 else "Winter"],
        }
        row.update((labels or {}).get(index, {}))
        rows.append(row)

    catalog_path = tmp_path / "catalog.parquet"
    write_catalog(Catalog(pd.DataFrame(rows), ATTRIBUTES, "test", str(root)), catalog_path)
    return catalog_path, root


def run_validate(tmp_path: Path, catalog_path: Path, *extra: str) -> tuple[int, Path]:
    report = tmp_path / "validated" / "report.json"
    status = main([
        "data", "validate", "--catalog", str(catalog_path), "--report", str(report),
        "--gx-dir", str(tmp_path / "gx"), "--workers", "1", *extra,
    ])
    return status, report


def refresh_hash(catalog_path: Path, root: Path, image_id: str) -> None:
    def change(frame):
        frame.loc[frame["image_id"] == image_id, "content_hash"] = hash_file(root / f"images/{image_id}.jpg")

    rewrite_catalog(catalog_path, change)


def rewrite_catalog(catalog_path: Path, change) -> None:
    catalog = read_catalog(catalog_path)
    change(catalog.frame)
    write_catalog(catalog, catalog_path)


def test_clean_catalog_passes(tmp_path, capsys):
    catalog_path, _ = build_catalog(tmp_path, 30)

    status, report_path = run_validate(tmp_path, catalog_path, "--min-images", "20", "--min-images-per-value", "5")
    output = capsys.readouterr().out
    report = json.loads(report_path.read_text())
    validated = tmp_path / "validated" / "catalog.parquet"

    assert status == 0, output
    assert report["passed"] is True
    assert report["counts"]["usable_images"] == 30
    assert report["problems"] == []
    assert validated.is_file()
    assert (tmp_path / "validated" / "set_aside.parquet").is_file()
    assert Path(report["data_docs"]).is_file()
    assert all(result["success"] for result in report["expectations"]["results"])
    assert pq.read_schema(validated).field("eval_exclude").type.value_type == pa.string()


def test_rerun_reuses_gx_context(tmp_path, capsys):
    catalog_path, _ = build_catalog(tmp_path, 25)

    first, _ = run_validate(tmp_path, catalog_path, "--min-images", "20", "--min-images-per-value", "1")
    rewrite_catalog(catalog_path, lambda frame: frame.__setitem__("season", [["Spring"]] * len(frame)))
    second, report_path = run_validate(tmp_path, catalog_path, "--min-images", "20", "--min-images-per-value", "1")
    capsys.readouterr()

    suite = json.loads((tmp_path / "gx" / "expectations" / "mclfir_values.json").read_text())
    value_sets = [item["kwargs"]["value_set"] for item in suite["expectations"] if item["type"] == "expect_column_values_to_be_in_set"]
    assert first == 0
    assert second == 0
    assert ["Spring"] in value_sets
    assert json.loads(report_path.read_text())["passed"] is True


def test_label_and_image_defects_set_aside(tmp_path, capsys):
    labels = {
        3: {"colour": ["NA"]},
        4: {"season": [""]},
        5: {"season": ["  "]},
    }
    catalog_path, root = build_catalog(tmp_path, 40, labels)
    write_photo(root / "images/6.jpg", 6, blank=True)
    (root / "images/7.jpg").write_bytes(b"not a jpeg")
    (root / "images/8.jpg").unlink()
    write_photo(root / "images/9.jpg", 9, mode="L")
    refresh_hash(catalog_path, root, "9")
    write_photo(root / "images/10.jpg", 99)

    status, report_path = run_validate(tmp_path, catalog_path, "--min-images", "20", "--min-images-per-value", "5")
    output = capsys.readouterr().out
    report = json.loads(report_path.read_text())
    by_check = {(problem["check"], problem["image_id"]) for problem in report["problems"]}
    validated = read_catalog(tmp_path / "validated" / "catalog.parquet").frame.set_index("image_id")
    set_aside = pd.read_parquet(tmp_path / "validated" / "set_aside.parquet")

    assert status == 0, output
    assert ("unknown_value", "3") in by_check
    assert ("empty_value", "4") in by_check
    assert ("empty_value", "5") in by_check
    assert ("blank_image", "6") in by_check
    assert ("undecodable_image", "7") in by_check
    assert ("missing_image", "8") in by_check
    assert ("content_hash_mismatch", "10") in by_check
    assert validated.loc["3", "colour"] == []
    assert validated.loc["3", "season"] == ["Summer"]
    assert validated.loc["4", "season"] == []
    assert validated.loc["5", "season"] == []
    assert not {"6", "7", "8", "10"} & set(validated.index)
    assert "9" in validated.index
    assert report["images"]["converted_to_rgb"]["count"] == 1
    assert report["images"]["modes"] == {"RGB": 37, "L": 1}
    assert {"6", "7", "8", "10"} <= set(set_aside["image_id"])
    assert "images/7.jpg" in output
    assert "id 8" in output


def test_conflicting_duplicates_guarded(tmp_path, capsys):
    catalog_path, root = build_catalog(tmp_path, 30)
    # Photo 1 is copied to 2 (a different colour label) and to 4 (the same labels as 1).
    for copy in ("2", "4"):
        (root / f"images/{copy}.jpg").write_bytes((root / "images/1.jpg").read_bytes())
    labels = {"1": (["Blue"], ["Summer"]), "2": (["Red"], ["Summer"]), "4": (["Blue"], ["Summer"])}

    def copy_labels(frame):
        for image_id, (colour, season) in labels.items():
            index = frame.index[frame["image_id"] == image_id][0]
            frame.at[index, "colour"] = colour
            frame.at[index, "season"] = season
            frame.at[index, "content_hash"] = hash_file(root / "images/1.jpg")

    rewrite_catalog(catalog_path, copy_labels)
    status, report_path = run_validate(tmp_path, catalog_path, "--min-images", "20", "--min-images-per-value", "1")
    output = capsys.readouterr().out
    report = json.loads(report_path.read_text())
    validated = read_catalog(tmp_path / "validated" / "catalog.parquet").frame.set_index("image_id")
    guarded = {problem["image_id"] for problem in report["problems"] if problem["check"] == "conflicting_duplicate"}

    assert status == 0, output
    assert list(validated.loc["1", "eval_exclude"]) == ["colour"]
    assert list(validated.loc["2", "eval_exclude"]) == ["colour"]
    assert list(validated.loc["4", "eval_exclude"]) == ["colour"]
    assert list(validated.loc["3", "eval_exclude"]) == []
    assert guarded == {"1", "2", "4"}
    assert report["duplicates"]["groups"] == 1
    assert report["duplicates"]["conflicting_groups_per_attribute"] == {"colour": 1, "season": 0}


def test_stop_problems_leave_no_outputs(tmp_path, capsys):
    catalog_path, root = build_catalog(tmp_path, 30, {11: {"colour": ["Purple"]}})
    outside = tmp_path / "outside.jpg"
    write_photo(outside, 77)
    (root / "images/link.jpg").symlink_to(outside)

    def break_rows(frame):
        frame.loc[frame["image_id"] == "5", "image_id"] = "4"
        frame.loc[frame["image_id"] == "6", "path"] = "../outside.jpg"
        frame.loc[frame["image_id"] == "7", "path"] = "images/link.jpg"

    rewrite_catalog(catalog_path, break_rows)
    validated = tmp_path / "validated" / "catalog.parquet"
    validated.parent.mkdir(parents=True)
    validated.write_bytes(b"stale output of an earlier run")

    status, report_path = run_validate(tmp_path, catalog_path, "--min-images", "20", "--min-images-per-value", "5")
    output = capsys.readouterr().out
    report = json.loads(report_path.read_text())
    checks = {(problem["check"], problem["image_id"]) for problem in report["problems"]}

    assert status == 1
    assert ("duplicate_id", "4") in checks
    assert ("path_outside_root", "6") in checks
    assert ("path_outside_root", "7") in checks
    assert ("rare_value", "") in checks
    assert "../outside.jpg" in output
    assert "colour='Purple'" in output
    assert report["passed"] is False
    assert not validated.exists()
    assert not (tmp_path / "validated" / "set_aside.parquet").exists()


def test_missing_column_stops(tmp_path, capsys):
    catalog_path, _ = build_catalog(tmp_path, 25)
    table = pq.read_table(catalog_path)
    pq.write_table(table.drop_columns(["season"]), catalog_path)

    status, report_path = run_validate(tmp_path, catalog_path, "--min-images", "20")
    output = capsys.readouterr().out
    report = json.loads(report_path.read_text())

    assert status == 1
    assert "missing_column" in output
    assert "season" in output
    assert report["counts"]["problems_by_check"]["missing_column"]["count"] == 1


def test_too_few_images_stops(tmp_path, capsys):
    catalog_path, root = build_catalog(tmp_path, 12)
    for index in range(4):
        (root / f"images/{index}.jpg").unlink()

    status, report_path = run_validate(tmp_path, catalog_path, "--min-images", "10", "--min-images-per-value", "1")
    output = capsys.readouterr().out

    assert status == 1
    assert "too_few_images" in output
    assert json.loads(report_path.read_text())["counts"]["usable_images"] == 8


@pytest.mark.realdata
def test_real_data_defects_reported(real_data_root, tmp_path, capsys):
    catalog_path = tmp_path / "catalog.parquet"
    prepared = main(["data", "prepare", "--source", "fashion-products", "--root", str(real_data_root), "--out", str(catalog_path)])
    started = time.perf_counter()
    status, report_path = run_validate(tmp_path, catalog_path)
    elapsed = time.perf_counter() - started
    output = capsys.readouterr().out
    with capsys.disabled():
        print(f"\nvalidate wall time on the real data: {elapsed:.1f} s")
    report = json.loads(report_path.read_text())
    problems = pd.DataFrame(report["problems"])

    styles = pd.read_csv(real_data_root / "styles.csv", keep_default_na=False, dtype=str)
    photographed = styles[styles["id"].map(lambda image_id: (real_data_root / "images" / f"{image_id}.jpg").is_file())].copy()
    hashes = photographed["id"].map(lambda image_id: hash_file(real_data_root / "images" / f"{image_id}.jpg"))
    photographed["hash"] = hashes
    shared = photographed[photographed["hash"].map(photographed["hash"].value_counts()) > 1]
    conflicting_colour = (shared.groupby("hash")["baseColour"].nunique() > 1).sum()

    def count(check, column):
        return int(((problems["check"] == check) & (problems["column"] == column)).sum())

    assert prepared == 0
    assert status == 0, output
    assert count("unknown_value", "baseColour") == int((photographed["baseColour"] == "NA").sum())
    assert count("unknown_value", "usage") == int((photographed["usage"] == "NA").sum())
    assert count("empty_value", "season") == int((photographed["season"] == "").sum())
    assert count("empty_value", "usage") == int((photographed["usage"] == "").sum())
    assert int((problems["check"] == "missing_image").sum()) == len(styles) - len(photographed)
    assert report["duplicates"]["groups"] == int(shared["hash"].nunique())
    assert report["duplicates"]["images_in_groups"] == len(shared)
    assert report["duplicates"]["conflicting_groups_per_attribute"]["baseColour"] == int(conflicting_colour)
    assert "unknown_value" in output
    assert "conflicting_duplicate" in output
