"""Command-line behaviour on bad input: one clear line and exit status 1, no traceback."""

import re

import pandas as pd
import pytest

from mclfir.cli import main
from mclfir.data.catalog import Catalog, read_catalog, write_catalog
from mclfir.data.problems import Problem, problems_frame, summarize


def test_unknown_increment_reported_without_traceback(tmp_path, monkeypatch, caplog):
    (tmp_path / "params.yaml").write_text("increments:\n  inc0:\n    attributes: [colour]\n    parent: init\n")
    (tmp_path / "pyproject.toml").write_text("")
    monkeypatch.chdir(tmp_path)

    status = main(["train", "--increment", "nope"])

    assert status == 1
    assert "Unknown increment 'nope'" in caplog.text
    assert "Traceback" not in caplog.text


def test_missing_catalog_reported(tmp_path, caplog):
    status = main(["data", "split", "--catalog", str(tmp_path / "missing.parquet"), "--increment", "inc0", "--out", str(tmp_path / "out")])

    assert status == 1
    assert "missing.parquet" in caplog.text


def test_invalid_params_yaml_reported(tmp_path, monkeypatch, caplog):
    (tmp_path / "params.yaml").write_text("data:\n  split: [\n")
    (tmp_path / "pyproject.toml").write_text("")
    monkeypatch.chdir(tmp_path)

    status = main(["train", "--increment", "inc0"])

    assert status == 1
    assert "Invalid YAML in parameters file" in caplog.text


def test_empty_catalog_round_trip(tmp_path):
    frame = pd.DataFrame({"image_id": [], "path": [], "content_hash": [], "source_row": [], "colour": []})
    path = write_catalog(Catalog(frame, ["colour"], "fashion-products", "data/raw"), tmp_path / "catalog.parquet")

    catalog = read_catalog(path)

    assert len(catalog.frame) == 0
    assert catalog.attributes == ["colour"]


def test_problems_with_undecodable_bytes_written(tmp_path):
    header = b"id,g\xe9nder".decode("utf-8", "surrogateescape")
    frame = problems_frame([Problem("csv_columns_missing", "stop", "Missing gender.", file="styles.csv", row=1, value=header)])

    frame.to_parquet(tmp_path / "problems.parquet")

    assert frame.loc[0, "value"] == "id,g\\xe9nder"


def test_summary_shows_fix_for_stops():
    problems = [Problem("duplicate_id", "stop", "Id 7 appears on rows 2 and 3; make ids unique.", file="styles.csv", row=2, image_id="7")]

    lines = summarize(problems)

    assert lines[0].startswith("[stop] duplicate_id: 1 (styles.csv:2 id 7)")
    assert lines[1].strip() == "Id 7 appears on rows 2 and 3; make ids unique."


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"split": {"train": "abc"}}, "Invalid data.split.train 'abc'"),
        ({"split": {"tets": 0.1}}, "Unknown keys data.split.tets"),
        ({"split": {"train": 0.7}}, "= 0.9; set them so that they sum to 1"),
        ({"max_images": "many"}, "Invalid data.max_images 'many'"),
    ],
)
def test_data_config_errors_name_key(section, message):
    from mclfir.config import DataConfig

    with pytest.raises(ValueError, match=re.escape(message)):
        DataConfig.from_dict(section)
