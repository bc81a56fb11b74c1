"""Tests of extra attributes from label files: reading, adding, merging, prepare --labels and add-attributes."""

import http.server
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from mclfir import events
from mclfir.cli import main
from mclfir.data import add_attributes as add_attributes_cli
from mclfir.data.catalog import Catalog, hash_file, read_catalog, write_catalog
from mclfir.data.labels import (
    LABEL_FILES_KEY,
    MAX_ATTRIBUTE_NAME_LENGTH,
    add_attributes,
    merge_label_files,
    merged_attributes,
    read_labels_file,
)
from mclfir.paths import DATA_ROOT_ENV, PROJECT_ROOT_ENV

REPOSITORY = Path(__file__).resolve().parents[1]
STYLES_HEADER = "id,gender,masterCategory,subCategory,articleType,baseColour,season,year,usage,productDisplayName"


@pytest.fixture(autouse=True)
def project(tmp_path, monkeypatch) -> Path:
    """A project root in tmp_path, so that default paths (data/labels, data/catalog) never reach the real project."""
    root = tmp_path / "project"
    root.mkdir()
    monkeypatch.setenv(PROJECT_ROOT_ENV, str(root))
    monkeypatch.delenv(DATA_ROOT_ENV, raising=False)
    return root


def write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def make_catalog(ids: list[str], extra: dict | None = None) -> Catalog:
    """A catalog of ``ids`` with one dataset attribute, season, and a plain name column."""
    frame = pd.DataFrame({
        "image_id": ids,
        "path": [f"images/{image_id}.jpg" for image_id in ids],
        "content_hash": [f"hash{image_id}" for image_id in ids],
        "source_row": list(range(2, len(ids) + 2)),
        "season": [["Summer"] for _ in ids],
        "productDisplayName": [f"Item {image_id}" for image_id in ids],
    })
    return Catalog(frame, ["season"], "test", "dataset", dict(extra or {}))


def saved_catalog(path: Path, ids: list[str], extra: dict | None = None) -> Path:
    write_catalog(make_catalog(ids, extra), path)
    return path


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture()
def prefect_api_url():
    """Set Prefect's API URL for the test, or unset it with None.

    Prefect reads the environment once, at import, so changing PREFECT_API_URL in os.environ has no effect.
    """
    from prefect.settings import PREFECT_API_URL, temporary_settings

    def apply(url: str | None):
        if url is None:
            return temporary_settings(restore_defaults={PREFECT_API_URL})
        return temporary_settings(updates={PREFECT_API_URL: url})

    return apply


# --- read_labels_file -------------------------------------------------------------------------


def test_read_labels_file_values(tmp_path):
    text = '\ufeffid , pattern,neck-line\n 12 , Striped ,V\n\n3,"Dots, big",\n4,"two\nlines",Round\n,,\n'
    path = write_text(tmp_path / "labels.csv", text)

    table = read_labels_file(path)

    assert table.attributes == ["pattern", "neck-line"]
    assert list(table.frame["image_id"]) == ["12", "3", "4"]
    assert list(table.frame["source_row"]) == [2, 4, 5]
    assert list(table.frame["pattern"]) == ["Striped", "Dots, big", "two\nlines"]
    assert list(table.frame["neck-line"]) == ["V", "", "Round"]


def test_read_labels_file_accepts_image_id_header(tmp_path):
    path = write_text(tmp_path / "labels.csv", "image_id,pattern\n1,Striped\n")

    assert read_labels_file(path).attributes == ["pattern"]


def test_name_at_length_limit_accepted(tmp_path):
    name = "p" * MAX_ATTRIBUTE_NAME_LENGTH
    path = write_text(tmp_path / "labels.csv", f"id,{name}\n1,Striped\n")

    assert read_labels_file(path).attributes == [name]


@pytest.mark.parametrize(
    ("text", "row", "value"),
    [
        pytest.param("name,pattern\n1,Striped\n", ":1:", "'name'", id="missing-id-column"),
        pytest.param("id\n1\n", ":1:", "'id'", id="no-attribute-column"),
        pytest.param("id,pattern\n1,Striped\n,Dotted\n", ":3:", "',Dotted'", id="empty-id"),
        pytest.param("id,pattern\n1,Striped\n2,Dotted\n1,Plain\n", ":4:", "'1' repeats row 2", id="repeated-id"),
        pytest.param("id,pattern,Pattern\n1,Striped,Plain\n", ":1:", "'Pattern'", id="repeated-column"),
        pytest.param("id,neck line\n1,V\n", ":1:", "'neck line'", id="name-with-space"),
        pytest.param("id,1st\n1,V\n", ":1:", "'1st'", id="name-starting-with-digit"),
        pytest.param("id,colour/tone\n1,V\n", ":1:", "'colour/tone'", id="name-with-slash"),
        pytest.param("id,path\n1,V\n", ":1:", "'path'", id="reserved-name"),
        pytest.param("id,Con\n1,V\n", ":1:", "'Con' is a device name", id="windows-device-name"),
        pytest.param("id," + "p" * 65 + "\n1,V\n", ":1:", "65 characters long", id="name-too-long"),
        pytest.param("id;pattern\n1;Striped\n", ":1:", "'id;pattern' has one column with semicolons", id="semicolons"),
        pytest.param("id\tpattern\n1\tStriped\n", ":1:", "with tabs", id="tabs"),
        pytest.param("id,pattern\n1,Striped\n2,Dots,big\n", ":3:", "'2,Dots,big'", id="unquoted-comma"),
        pytest.param('id,pattern\n1,Striped\n2,"Dots\n', ":3:", '\'2,"Dots\'', id="unterminated-quote"),
        pytest.param("id,pattern,colour\n1,Striped,\n", ":1:", "'colour' has no values", id="empty-column"),
        pytest.param("id,pattern\n", "no label rows", "", id="no-rows"),
        pytest.param("", "the file is empty", "", id="empty-file"),
    ],
)
def test_read_labels_file_errors(tmp_path, text, row, value):
    path = write_text(tmp_path / "labels.csv", text)

    with pytest.raises(ValueError) as raised:
        read_labels_file(path)

    message = str(raised.value)
    assert str(path) in message
    assert row in message
    assert value in message


def test_read_labels_file_rejects_bad_utf8(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_bytes(b"id,pattern\n1,Striped\n2,Caf\xe9\n")

    with pytest.raises(ValueError) as raised:
        read_labels_file(path)

    message = str(raised.value)
    assert f"{path}:3:" in message
    assert "\\xe9" in message
    assert "UTF-8" in message


def test_read_labels_file_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="labels.csv"):
        read_labels_file(tmp_path / "labels.csv")


# --- add_attributes ---------------------------------------------------------------------------


def test_add_attributes_writes_one_file_per_attribute(tmp_path, project):
    labels_csv = write_text(tmp_path / "labels.csv", 'id,pattern,sleeve\n10,Striped,Long\n9,"Dots, big",\n100,Plain,Short\n')
    labels_dir = project / "data" / "labels"

    attributes = add_attributes(labels_csv, labels_dir)

    assert attributes == ["pattern", "sleeve"]
    assert (labels_dir / "pattern.csv").read_text(encoding="utf-8") == 'image_id,pattern\n9,"Dots, big"\n10,Striped\n100,Plain\n'
    assert (labels_dir / "sleeve.csv").read_text(encoding="utf-8") == "image_id,sleeve\n10,Long\n100,Short\n"
    assert sorted(path.name for path in labels_dir.iterdir()) == ["pattern.csv", "sleeve.csv"]


def test_add_attributes_relative_dir_from_project_root(tmp_path, project):
    labels_csv = write_text(tmp_path / "labels.csv", "id,pattern\n1,Striped\n")

    add_attributes(labels_csv, Path("data/labels"))

    assert (project / "data" / "labels" / "pattern.csv").is_file()


def test_add_attributes_existing_file_needs_replace(tmp_path, project):
    labels_dir = project / "data" / "labels"
    first = write_text(tmp_path / "first.csv", "id,pattern\n1,Striped\n")
    second = write_text(tmp_path / "second.csv", "id,pattern\n1,Plain\n2,Dotted\n")
    add_attributes(first, labels_dir)

    with pytest.raises(ValueError) as raised:
        add_attributes(second, labels_dir)
    assert "--replace" in str(raised.value)
    assert str(second) in str(raised.value)
    assert (labels_dir / "pattern.csv").read_text() == "image_id,pattern\n1,Striped\n"

    assert add_attributes(second, labels_dir, replace=True) == ["pattern"]
    assert (labels_dir / "pattern.csv").read_text() == "image_id,pattern\n1,Plain\n2,Dotted\n"


def test_add_attributes_rejects_case_variant_of_file(tmp_path, project):
    labels_dir = project / "data" / "labels"
    write_text(labels_dir / "Pattern.csv", "image_id,Pattern\n1,Striped\n")
    labels_csv = write_text(tmp_path / "labels.csv", "id,pattern\n1,Plain\n")

    with pytest.raises(ValueError, match="differs only in letter case"):
        add_attributes(labels_csv, labels_dir, replace=True)


@pytest.mark.parametrize("name", ["season", "Season", "productDisplayName"])
def test_add_attributes_rejects_catalog_column(tmp_path, project, name):
    catalog_path = saved_catalog(tmp_path / "catalog.parquet", ["1", "2"])
    labels_csv = write_text(tmp_path / "labels.csv", f"id,{name}\n1,Winter\n")

    with pytest.raises(ValueError) as raised:
        add_attributes(labels_csv, project / "data" / "labels", catalog_path=catalog_path, replace=True)

    message = str(raised.value)
    assert repr(name) in message
    assert str(catalog_path) in message
    assert not (project / "data" / "labels").exists()


def test_add_attributes_replaces_merged_attribute(tmp_path, project):
    labels_dir = project / "data" / "labels"
    merged = {LABEL_FILES_KEY: [{"attribute": "pattern", "file": "data/labels/pattern.csv", "sha256": "", "labelled_images": 1}]}
    catalog = make_catalog(["1", "2"], merged)
    catalog.frame["pattern"] = [["Striped"], []]
    catalog.attributes.append("pattern")
    catalog_path = tmp_path / "catalog.parquet"
    write_catalog(catalog, catalog_path)
    labels_csv = write_text(tmp_path / "labels.csv", "id,pattern\n2,Dotted\n")

    with pytest.raises(ValueError, match="--replace"):
        add_attributes(labels_csv, labels_dir, catalog_path=catalog_path)

    assert add_attributes(labels_csv, labels_dir, catalog_path=catalog_path, replace=True) == ["pattern"]


def test_add_attributes_rejects_unknown_ids(tmp_path, project):
    catalog_path = saved_catalog(tmp_path / "catalog.parquet", ["1", "2", "3"])
    labels_csv = write_text(tmp_path / "labels.csv", "id,pattern\n1,Striped\n77,Plain\n2,Dotted\n78,Plain\n")

    with pytest.raises(ValueError) as raised:
        add_attributes(labels_csv, project / "data" / "labels", catalog_path=catalog_path)

    message = str(raised.value)
    assert f"{labels_csv}:3:" in message
    assert "'77'" in message
    assert "2 of 4 ids are unknown" in message
    assert "id column" in message
    assert not (project / "data" / "labels").exists()


def test_add_attributes_subsample_hint(tmp_path, project):
    catalog_path = saved_catalog(tmp_path / "catalog.parquet", ["1"], {"max_images": 1})
    labels_csv = write_text(tmp_path / "labels.csv", "id,pattern\n2,Striped\n")

    with pytest.raises(ValueError, match="--max-images 1"):
        add_attributes(labels_csv, project / "data" / "labels", catalog_path=catalog_path)


def test_add_attributes_uses_default_catalog(tmp_path, project):
    saved_catalog(project / "data" / "catalog" / "catalog.parquet", ["1", "2"])
    labels_csv = write_text(tmp_path / "labels.csv", "id,pattern\n5,Striped\n")

    with pytest.raises(ValueError, match="'5' is not in the catalog"):
        add_attributes(labels_csv, project / "data" / "labels")


def test_add_attributes_missing_catalog(tmp_path, project):
    labels_csv = write_text(tmp_path / "labels.csv", "id,pattern\n1,Striped\n")

    with pytest.raises(FileNotFoundError, match="nowhere.parquet"):
        add_attributes(labels_csv, project / "data" / "labels", catalog_path=tmp_path / "nowhere.parquet")


# --- merge_label_files ------------------------------------------------------------------------


def test_merge_adds_attribute_columns(tmp_path):
    labels_dir = tmp_path / "labels"
    write_text(labels_dir / "sleeve.csv", "image_id,sleeve\n3,Short\n")
    write_text(labels_dir / "pattern.csv", 'image_id,pattern\n1,"Dots, big"\n3,Plain\n2,\n')
    write_text(labels_dir / "notes.txt", "not a label file\n")
    catalog = make_catalog(["1", "2", "3", "4"])

    merged, problems = merge_label_files(catalog, labels_dir)

    assert problems == []
    assert merged.attributes == ["season", "pattern", "sleeve"]
    assert list(merged.frame["pattern"]) == [["Dots, big"], [], ["Plain"], []]
    assert list(merged.frame["sleeve"]) == [[], [], ["Short"], []]
    assert merged_attributes(merged) == ["pattern", "sleeve"]
    recorded = merged.extra[LABEL_FILES_KEY][0]
    assert recorded["file"] == (labels_dir / "pattern.csv").as_posix()
    assert recorded["sha256"] == hash_file(labels_dir / "pattern.csv")
    assert recorded["labelled_images"] == 2
    assert catalog.attributes == ["season"]
    assert "pattern" not in catalog.frame.columns


def test_merge_round_trips_through_parquet(tmp_path):
    labels_dir = tmp_path / "labels"
    write_text(labels_dir / "pattern.csv", "image_id,pattern\n2,Plain\n")
    merged, _ = merge_label_files(make_catalog(["1", "2"]), labels_dir)

    write_catalog(merged, tmp_path / "catalog.parquet")
    read = read_catalog(tmp_path / "catalog.parquet")

    assert read.attributes == ["season", "pattern"]
    assert list(read.frame["pattern"]) == [[], ["Plain"]]
    assert merged_attributes(read) == ["pattern"]


def test_merge_sets_aside_unknown_ids(tmp_path):
    labels_dir = tmp_path / "labels"
    write_text(labels_dir / "pattern.csv", "image_id,pattern\n1,Striped\n8,Plain\n9,Dotted\n")

    merged, problems = merge_label_files(make_catalog(["1", "2"]), labels_dir)

    assert list(merged.frame["pattern"]) == [["Striped"], []]
    assert [problem.action for problem in problems] == ["set_aside", "set_aside"]
    assert [problem.check for problem in problems] == ["label_image_unknown", "label_image_unknown"]
    assert [problem.row for problem in problems] == [3, 4]
    assert [problem.image_id for problem in problems] == ["8", "9"]
    assert [problem.value for problem in problems] == ["Plain", "Dotted"]
    assert all(problem.file == (labels_dir / "pattern.csv").as_posix() for problem in problems)


@pytest.mark.parametrize(
    ("file_name", "text", "check"),
    [
        pytest.param("season.csv", "image_id,season\n1,Winter\n", "label_file_invalid", id="dataset-attribute"),
        pytest.param("productDisplayName.csv", "image_id,productDisplayName\n1,Shirt\n", "label_file_invalid", id="catalog-column"),
        pytest.param("bad name.csv", "image_id,bad name\n1,x\n", "label_file_invalid", id="invalid-name"),
        pytest.param("pattern.csv", "id,pattern\n1,Striped\n", "label_file_header", id="wrong-header"),
        pytest.param("pattern.csv", "image_id,pattern\n1,Striped\n2,Plain\n1,Dotted\n", "label_image_repeated", id="repeated-id"),
        pytest.param("pattern.csv", "image_id,pattern\n1,Dots,big\n", "label_row_invalid", id="unquoted-comma"),
    ],
)
def test_merge_stops_on_unusable_file(tmp_path, file_name, text, check):
    labels_dir = tmp_path / "labels"
    write_text(labels_dir / file_name, text)
    catalog = make_catalog(["1", "2"])

    merged, problems = merge_label_files(catalog, labels_dir)

    assert [problem.check for problem in problems] == [check]
    assert problems[0].action == "stop"
    assert problems[0].file == (labels_dir / file_name).as_posix()
    assert merged.attributes == ["season"]
    assert LABEL_FILES_KEY not in merged.extra


def test_merge_repeated_id_names_row(tmp_path):
    labels_dir = tmp_path / "labels"
    write_text(labels_dir / "pattern.csv", "image_id,pattern\n1,Striped\n2,Plain\n1,Dotted\n")

    _, problems = merge_label_files(make_catalog(["1", "2"]), labels_dir)

    assert problems[0].row == 4
    assert problems[0].image_id == "1"
    assert "row 2" in problems[0].message


def test_merge_keeps_other_files_when_one_stops(tmp_path):
    labels_dir = tmp_path / "labels"
    write_text(labels_dir / "pattern.csv", "image_id,pattern\n1,Striped\n")
    write_text(labels_dir / "season.csv", "image_id,season\n1,Winter\n")

    merged, problems = merge_label_files(make_catalog(["1", "2"]), labels_dir)

    assert merged.attributes == ["season", "pattern"]
    assert [problem.value for problem in problems] == ["season"]


@pytest.mark.parametrize("layout", ["missing", "empty", "no-csv"])
def test_merge_without_labels_leaves_catalog_unchanged(tmp_path, layout):
    labels_dir = tmp_path / "labels"
    if layout != "missing":
        labels_dir.mkdir()
    if layout == "no-csv":
        write_text(labels_dir / "README.md", "label files go here\n")
    catalog = make_catalog(["1", "2", "3"], {"recovered_rows": [4]})
    before = write_catalog(catalog, tmp_path / "before.parquet").read_bytes()

    merged, problems = merge_label_files(catalog, labels_dir)
    after = write_catalog(merged, tmp_path / "after.parquet").read_bytes()

    assert problems == []
    assert merged is catalog
    assert after == before


# --- mclfir data prepare --labels ------------------------------------------------------------


def write_dataset(root: Path, count: int) -> Path:
    """Write a Fashion-Product-Images-style dataset of ``count`` shirts with ids 1000, 1001, ..."""
    (root / "images").mkdir(parents=True)
    lines = [STYLES_HEADER]
    for index in range(count):
        image_id = 1000 + index
        gender = "Men" if index % 2 else "Women"
        lines.append(f"{image_id},{gender},Apparel,Topwear,Shirts,Blue,Summer,2012,Casual,Shirt {index}")
        # A plain one-colour photo counts as blank in validation, so each gets a white patch.
        image = Image.new("RGB", (60, 80), (index * 37 % 256, index * 91 % 256, 90))
        image.paste((255, 255, 255), (5, 5 + index % 20, 30, 40 + index % 20))
        image.save(root / "images" / f"{image_id}.jpg")
    (root / "styles.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def run_prepare(root: Path, out: Path, *options: str) -> int:
    return main(["data", "prepare", "--source", "fashion-products", "--root", str(root), "--out", str(out), *options])


def test_prepare_merges_labels(tmp_path, capsys):
    root = write_dataset(tmp_path / "dataset", 6)
    labels_dir = tmp_path / "labels"
    write_text(labels_dir / "pattern.csv", "image_id,pattern\n1000,Striped\n1003,Plain\n4242,Dotted\n")
    out = tmp_path / "out" / "catalog.parquet"

    status = run_prepare(root, out, "--labels", str(labels_dir))

    output = capsys.readouterr().out
    assert status == 0, output
    catalog = read_catalog(out)
    assert catalog.attributes[-1] == "pattern"
    assert len(catalog.attributes) == 8
    labels = dict(zip(catalog.frame["image_id"], catalog.frame["pattern"]))
    assert labels["1000"] == ["Striped"]
    assert labels["1003"] == ["Plain"]
    assert labels["1001"] == []
    assert merged_attributes(catalog) == ["pattern"]

    problems = pd.read_parquet(tmp_path / "out" / "catalog.problems.parquet")
    assert list(problems["check"]) == ["label_image_unknown"]
    assert list(problems["row"]) == [4]
    assert list(problems["image_id"]) == ["4242"]
    assert "[set_aside] label_image_unknown: 1" in output


def test_prepare_labels_before_subsample(tmp_path, capsys):
    root = write_dataset(tmp_path / "dataset", 8)
    labels_dir = tmp_path / "labels"
    write_text(labels_dir / "pattern.csv", "image_id,pattern\n" + "".join(f"{1000 + index},P{index}\n" for index in range(8)))
    out = tmp_path / "catalog.parquet"

    status = run_prepare(root, out, "--labels", str(labels_dir), "--max-images", "3")

    capsys.readouterr()
    catalog = read_catalog(out)
    assert status == 0
    assert len(catalog.frame) == 3
    for image_id, values in zip(catalog.frame["image_id"], catalog.frame["pattern"]):
        assert values == [f"P{int(image_id) - 1000}"]
    assert pd.read_parquet(tmp_path / "catalog.problems.parquet").empty


def test_prepare_stops_on_clashing_label_file(tmp_path, capsys):
    root = write_dataset(tmp_path / "dataset", 3)
    labels_dir = tmp_path / "labels"
    write_text(labels_dir / "gender.csv", "image_id,gender\n1000,Unisex\n")

    status = run_prepare(root, tmp_path / "catalog.parquet", "--labels", str(labels_dir))

    assert status == 1
    assert "[stop] label_file_invalid: 1" in capsys.readouterr().out


def test_prepare_without_label_files_writes_same_catalog(tmp_path, capsys):
    root = write_dataset(tmp_path / "dataset", 4)
    (tmp_path / "labels").mkdir()

    assert run_prepare(root, tmp_path / "plain.parquet") == 0
    assert run_prepare(root, tmp_path / "labelled.parquet", "--labels", str(tmp_path / "labels")) == 0
    capsys.readouterr()

    assert (tmp_path / "labelled.parquet").read_bytes() == (tmp_path / "plain.parquet").read_bytes()


# --- mclfir data validate on a catalog with a label attribute ---------------------------------


def test_validate_accepts_label_attribute(tmp_path, project, capsys):
    shutil.copy(REPOSITORY / "params.yaml", project / "params.yaml")
    root = write_dataset(tmp_path / "dataset", 24)
    labels_dir = tmp_path / "labels"
    write_text(labels_dir / "pattern.csv", "image_id,pattern\n" + "".join(f"{1000 + index},{'Striped' if index % 2 else 'Plain'}\n" for index in range(20)))
    catalog_path = tmp_path / "catalog" / "catalog.parquet"
    assert run_prepare(root, catalog_path, "--labels", str(labels_dir)) == 0

    report_path = tmp_path / "validated" / "report.json"
    status = main([
        "data", "validate", "--catalog", str(catalog_path), "--report", str(report_path),
        "--gx-dir", str(tmp_path / "gx"), "--workers", "1", "--min-images", "10", "--min-images-per-value", "2",
    ])

    output = capsys.readouterr().out
    report = json.loads(report_path.read_text())
    assert status == 0, output
    assert report["attributes"][-1] == "pattern"
    assert report["counts"]["labelled_images_per_attribute"]["pattern"] == 20
    assert report["counts"]["values_per_attribute"]["pattern"] == 2
    validated = read_catalog(tmp_path / "validated" / "catalog.parquet")
    assert "pattern" in validated.attributes
    assert merged_attributes(validated) == ["pattern"]


# --- mclfir data add-attributes ---------------------------------------------------------------


def test_cli_add_attributes_without_dvc_and_event(tmp_path, project, capsys):
    labels_csv = write_text(tmp_path / "labels.csv", "id,pattern,sleeve\n1,Striped,Long\n2,Plain,\n")

    status = main(["data", "add-attributes", str(labels_csv), "--no-dvc", "--no-event"])

    output = capsys.readouterr().out
    assert status == 0, output
    assert (project / "data" / "labels" / "pattern.csv").read_text() == "image_id,pattern\n1,Striped\n2,Plain\n"
    assert (project / "data" / "labels" / "sleeve.csv").read_text() == "image_id,sleeve\n1,Long\n"
    assert "Added 2 attributes (pattern, sleeve)" in output
    assert "data/labels/pattern.csv data/labels/sleeve.csv" in output
    assert "dvc add data/labels/pattern.csv data/labels/sleeve.csv" in output
    assert "python -m flows.new_attributes" in output


def test_cli_add_attributes_rejected_file(tmp_path, project, capsys, caplog):
    labels_csv = write_text(tmp_path / "labels.csv", "name,pattern\n1,Striped\n")

    status = main(["data", "add-attributes", str(labels_csv), "--no-dvc", "--no-event"])

    assert status == 1
    assert f"{labels_csv}:1:" in caplog.text
    assert not (project / "data" / "labels").exists()


@pytest.mark.parametrize("configured", [False, True])
def test_cli_add_attributes_without_server(tmp_path, project, capsys, prefect_api_url, configured):
    url = f"http://127.0.0.1:{unused_port()}/api" if configured else None
    labels_csv = write_text(tmp_path / "labels.csv", "id,pattern\n1,Striped\n")

    with prefect_api_url(url):
        status = main(["data", "add-attributes", str(labels_csv), "--no-dvc"])

    output = capsys.readouterr().out
    assert status == 0, output
    if configured:
        assert f"No Prefect server is running at {url}" in output
    else:
        assert "PREFECT_API_URL is not set" in output
    assert "python -m flows.new_attributes" in output
    assert "make serve" in output


def test_cli_add_attributes_url_without_api(tmp_path, project, capsys, prefect_api_url):
    url = f"http://127.0.0.1:{unused_port()}"
    labels_csv = write_text(tmp_path / "labels.csv", "id,pattern\n1,Striped\n")

    with prefect_api_url(url):
        status = main(["data", "add-attributes", str(labels_csv), "--no-dvc"])

    output = capsys.readouterr().out
    assert status == 0, output
    assert f"PREFECT_API_URL is usually {url}/api" in output


def test_cli_add_attributes_reports_dvc_failure(tmp_path, project, capsys, monkeypatch):
    fake_dvc = tmp_path / "bin" / "dvc"
    write_text(fake_dvc, "#!/bin/sh\necho 'ERROR: failed to lock the repository' >&2\nexit 1\n")
    fake_dvc.chmod(fake_dvc.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setattr(add_attributes_cli, "dvc_executable", lambda: str(fake_dvc))
    labels_csv = write_text(tmp_path / "labels.csv", "id,pattern\n1,Striped\n")

    status = main(["data", "add-attributes", str(labels_csv), "--no-event"])

    output = capsys.readouterr().out
    assert status == 1
    assert "failed to lock the repository" in output
    assert "written but not recorded" in output
    assert "dvc add data/labels/pattern.csv" in output
    assert (project / "data" / "labels" / "pattern.csv").is_file()


@pytest.mark.integration
def test_cli_add_attributes_records_in_dvc(tmp_path, project, capsys):
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    for command in (["git", "init", "-q"], ["dvc", "init", "-q"]):
        subprocess.run(command, cwd=project, env=env, check=True, capture_output=True, timeout=120)
    labels_csv = write_text(tmp_path / "labels.csv", "id,pattern\n1,Striped\n")

    status = main(["data", "add-attributes", str(labels_csv), "--no-event"])

    output = capsys.readouterr().out
    assert status == 0, output
    assert (project / "data" / "labels" / "pattern.csv.dvc").is_file()
    assert "/pattern.csv" in (project / "data" / "labels" / ".gitignore").read_text()
    assert "git add data/labels/pattern.csv.dvc data/labels/.gitignore" in output


# --- mclfir.events ----------------------------------------------------------------------------


class _HealthHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/api/health" else 404)
        self.end_headers()
        self.wfile.write(b"true")

    def log_message(self, *args):
        pass


@pytest.fixture()
def health_server():
    """A local HTTP server that returns 200 on /api/health and 404 on every other path."""
    server = http.server.HTTPServer(("127.0.0.1", 0), _HealthHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_server_reachable(health_server):
    assert events.server_reachable(f"{health_server}/api")
    assert not events.server_reachable(f"{health_server}/other")
    assert not events.server_reachable(f"http://127.0.0.1:{unused_port()}/api", timeout=1.0)
    assert not events.server_reachable("not a url")


def test_server_url_follows_settings(prefect_api_url):
    with prefect_api_url("http://127.0.0.1:4200/api"):
        assert events.server_url() == "http://127.0.0.1:4200/api"
    with prefect_api_url(None):
        assert events.server_url() is None


def test_emit_attributes_added_sends_event(monkeypatch, prefect_api_url, project):
    from prefect.events.clients import AssertingEventsClient
    from prefect.events.worker import EventsWorker

    url = f"http://127.0.0.1:{unused_port()}/api"
    monkeypatch.setattr(events, "server_reachable", lambda checked_url: checked_url == url)
    EventsWorker.set_client_override(AssertingEventsClient)
    try:
        with prefect_api_url(url):
            message = events.emit_attributes_added(["pattern"], ["data/labels/pattern.csv"])
    finally:
        EventsWorker.set_client_override(None)

    sent = AssertingEventsClient.last.events
    assert len(sent) == 1
    assert sent[0].event == events.ATTRIBUTES_ADDED
    assert sent[0].resource.id == f"mclfir.labels.{project.name}"
    assert sent[0].payload == {"attributes": ["pattern"], "files": ["data/labels/pattern.csv"]}
    assert str(sent[0].id) in message
    assert url in message
