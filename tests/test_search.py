"""Tests of the per-attribute index and of `mclfir search`, on the tiny generated catalogue.

A two-increment model (colour, then side) is trained once for the module. Each test works in a
project root of its own, with its own MLflow store where a test needs the registry.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from mclfir import registry
from mclfir.cli import main
from mclfir.search.grid import write_grid
from mclfir.search.index import IndexMismatchError, read_manifest
from mclfir.search.models import default_reference, load_search_model
from mclfir.search.query import search
from mclfir.train import train_increment
from registry_store import empty_store, project, write_report  # noqa: F401 (fixtures)
from tiny_training import build_tiny_data, tiny_params, tiny_paths

TOP_K = 5


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """Tiny data and a model trained on colour (inc0) then side (inc1), in one folder."""
    root = tmp_path_factory.mktemp("search")
    data = build_tiny_data(root)
    params = tiny_params(epochs=3, pairs_per_epoch=12)
    for increment in ("inc0", "inc1"):
        train_increment(increment, params, tiny_paths(data, root), device=torch.device("cpu"))
    return root


@pytest.fixture
def indexed(project, trained) -> Path:
    """A project root with params.yaml, a copy of the tiny data and models, and the index of inc1's model."""
    (project / "params.yaml").write_text(yaml.safe_dump({**tiny_params(), "registry": {"model_name": "mclfir"}}))
    (project / "pyproject.toml").write_text("")
    for name in ("models", "cache", "images", "catalog.parquet"):
        source = trained / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, project / name)
    assert main(["index", "build", "--model", "models/inc1/checkpoint.pt", "--catalog", "catalog.parquet", "--cache", "cache", "--out", "index"]) == 0
    return project


def _search(root: Path, image: str, attribute: str, model: str = "models/inc1/checkpoint.pt"):
    params = yaml.safe_load((root / "params.yaml").read_text())
    return search(load_search_model(model), image, attribute, root / "index", params, TOP_K, root / "cache")


def _same_image(first: str, second: str) -> bool:
    """Return whether two tiny-catalogue ids name byte-identical images (same colour and side)."""
    return first.rsplit("-", 1)[0] == second.rsplit("-", 1)[0]


def test_index_manifest_and_files(indexed):
    manifest = read_manifest(indexed / "index")
    assert manifest["attributes"] == ["colour", "side"]
    assert manifest["images"] == 24
    assert manifest["dtype"] == "float32"
    assert manifest["model"]["label"] == "models/inc1/checkpoint.pt"
    with np.load(indexed / "index" / "side.npz") as arrays:
        assert arrays["embeddings"].dtype == np.float32
        assert arrays["embeddings"].shape == (24, 16)
        assert sorted(arrays["value_names"]) == ["left", "right"]


def test_search_by_id_finds_itself(indexed):
    result = _search(indexed, "red-left-0", "colour")
    first = result.hits[0]
    assert _same_image(first.image_id, "red-left-0")
    assert first.score >= 0.99
    assert result.query_value == "red"
    assert len(result.hits) == TOP_K


def test_search_by_file_finds_itself(indexed):
    result = _search(indexed, str(indexed / "images" / "blue-right-2.png"), "side")
    assert _same_image(result.hits[0].image_id, "blue-right-2")
    assert result.hits[0].score >= 0.99
    assert result.query_id is None


def test_search_ranks_same_value_first(indexed):
    # The model learned colour: the 8 red images (4 per side) lead the colour ranking of a red query.
    params = yaml.safe_load((indexed / "params.yaml").read_text())
    result = search(load_search_model("models/inc1/checkpoint.pt"), "red-left-0", "colour", indexed / "index", params, 8, indexed / "cache")
    assert [hit.value for hit in result.hits] == ["red"] * 8


def test_search_cli_prints_and_draws(indexed, capsys):
    grid = indexed / "grid.png"
    code = main(["search", "--image", "green-left-1", "--attribute", "colour", "--top-k", str(TOP_K),
                 "--model", "models/inc1/checkpoint.pt", "--grid", str(grid), "--cache", "cache"])
    lines = capsys.readouterr().out.splitlines()
    assert code == 0
    assert lines[0].startswith("Query green-left-1 (item green-left-1, colour = green)")
    assert lines[1].split() == ["rank", "item", "id", "score", "value"]
    ranks = [line.split()[0] for line in lines[2 : 2 + TOP_K]]
    assert ranks == [str(rank) for rank in range(1, TOP_K + 1)]
    with Image.open(grid) as picture:
        # One tile for the query and one per result, each 32 px images drawn 160 px wide plus margins.
        assert picture.width == (TOP_K + 1) * (160 + 16)


def test_grid_frames_matching_values(indexed, tmp_path):
    result = _search(indexed, "red-left-0", "colour")
    pixels = [np.zeros((32, 32, 3), dtype=np.uint8) for _ in result.hits]
    out = write_grid(result, pixels, tmp_path / "grid.png")
    with Image.open(out) as picture:
        tile_width = picture.width // (TOP_K + 1)
        # The pixel on the frame of the first result: green, because its value is the query's.
        assert picture.getpixel((tile_width + 6, 40)) == (40, 150, 60)


def test_unknown_attribute_lists_served(indexed, caplog):
    code = main(["search", "--image", "red-left-0", "--attribute", "sleeve", "--model", "models/inc1/checkpoint.pt"])
    assert code == 1
    assert "Unknown attribute 'sleeve'" in caplog.text
    assert "serves colour, side" in caplog.text


def test_missing_image_names_path(indexed, caplog):
    code = main(["search", "--image", "no/such/photo.jpg", "--attribute", "colour", "--model", "models/inc1/checkpoint.pt"])
    assert code == 1
    assert "no/such/photo.jpg" in caplog.text


def test_unreadable_image_names_path(indexed, caplog):
    broken = indexed / "broken.jpg"
    broken.write_bytes(b"not an image")
    code = main(["search", "--image", str(broken), "--attribute", "colour", "--model", "models/inc1/checkpoint.pt"])
    assert code == 1
    assert str(broken) in caplog.text


def test_index_of_other_model_rejected(indexed):
    with pytest.raises(IndexMismatchError, match="built by models/inc1/checkpoint.pt.*models/inc0/checkpoint.pt"):
        _search(indexed, "red-left-0", "colour", model="models/inc0/checkpoint.pt")


def test_version_serving_attribute_named(indexed):
    report = write_report(indexed / "report.json", {"colour": 60.0, "side": 55.0})
    version = registry.register(indexed / "models" / "inc1" / "checkpoint.pt", report, {"registry": {"model_name": "mclfir"}})

    with pytest.raises(ValueError, match=f"registry version {version} does: pass --model models:/mclfir/{version}"):
        _search(indexed, "red-left-0", "side", model="models/inc0/checkpoint.pt")


def test_default_model_is_champion(indexed):
    params = yaml.safe_load((indexed / "params.yaml").read_text())
    assert default_reference(params).endswith("models/inc1/checkpoint.pt")

    report = write_report(indexed / "report.json", {"colour": 60.0, "side": 55.0})
    registry.register(indexed / "models" / "inc1" / "checkpoint.pt", report, params)
    assert default_reference(params) == "models:/mclfir@champion"

    # The registered artifact is the same checkpoint, so the local index serves it.
    result = _search(indexed, "red-left-0", "colour", model="models:/mclfir@champion")
    assert result.model_label == "models:/mclfir@champion"
    assert load_search_model("models:/mclfir@champion").identity.registry_version == "1"
    assert json.loads((indexed / "index" / "manifest.json").read_text())["model"]["checkpoint_sha256"] == registry.file_sha256(
        indexed / "models" / "inc1" / "checkpoint.pt"
    )


def test_top_k_zero_rejected(indexed, capsys):
    with pytest.raises(SystemExit):
        main(["search", "--image", "red-left-0", "--attribute", "colour", "--top-k", "0"])
    assert "invalid value '0'" in capsys.readouterr().err


def test_grid_without_picture_suffix_rejected(indexed, caplog):
    code = main(["search", "--image", "red-left-0", "--attribute", "colour", "--model", "models/inc1/checkpoint.pt", "--grid", "out"])
    assert code == 1
    assert "Invalid --grid out" in caplog.text


def test_corrupt_index_file_names_it(indexed):
    (indexed / "index" / "colour.npz").write_bytes(b"junk")
    with pytest.raises(ValueError, match=r"colour\.npz.*mclfir index build"):
        _search(indexed, "red-left-0", "colour")
