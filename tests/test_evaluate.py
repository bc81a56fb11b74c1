"""Tests of `mclfir evaluate`: row selection, embedding with a shared backbone pass, and runs end to end.

The end-to-end tests build a tiny project in tmp_path: JPEG images, split tables, an image
cache and a checkpoint of a small random `MultiHeadModel` (timm's `test_resnet`).
"""

import argparse
import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from mclfir.config import ModelConfig, to_dict
from mclfir.data.catalog import METADATA_KEY
from mclfir.data.split import SPLIT_COLUMNS, read_split
from mclfir.evaluate import (
    AttributeRows,
    FileImageSource,
    configure_parser,
    embed_attributes,
    eval_rows,
    evaluate_attribute,
    evaluate_increment,
    lookup_embed_fn,
    run,
)
from mclfir.metrics import retrieval_metrics
from mclfir.model.checkpoint import save_checkpoint
from mclfir.model.multihead import MultiHeadModel
from mclfir.paths import PROJECT_ROOT_ENV

PLAN = {"inc0": ["colour", "shape"], "inc1": ["size"]}
COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 210)}
NUM_IMAGES = 30


def split_frame():
    """Build a split table frame: 30 images, test and valid rows with every role, and train rows."""
    rows = []
    for i in range(NUM_IMAGES):
        split = ["train", "test", "test", "test", "valid"][i % 5]
        role = "train" if split == "train" else ["query", "candidate", "candidate", "excluded"][i % 4]
        rows.append(
            {
                "image_id": f"{i:03d}",
                "path": f"images/{i:03d}.jpg",
                "content_hash": f"{i:064x}",
                "value": list(COLOURS)[i % 3],
                "split": split,
                "role": role,
                "exclude_reason": "single_photo" if role == "excluded" else "",
            }
        )
    return pd.DataFrame(rows, columns=list(SPLIT_COLUMNS))


def test_eval_rows_selects_split_and_roles():
    frame = split_frame()

    rows = eval_rows(frame, "colour", "test")

    test_rows = frame[frame["split"] == "test"]
    assert rows.query_ids == test_rows.loc[test_rows["role"] == "query", "image_id"].tolist()
    assert rows.candidate_ids == test_rows.loc[test_rows["role"] == "candidate", "image_id"].tolist()
    assert not set(rows.query_ids) & set(frame.loc[frame["role"] == "excluded", "image_id"])
    assert list(rows.query_values) == test_rows.loc[test_rows["role"] == "query", "value"].tolist()


def test_eval_rows_rejects_unknown_role():
    frame = split_frame()
    frame.loc[1, "role"] = "gallery"

    with pytest.raises(ValueError, match="gallery"):
        eval_rows(frame, "colour", "test")


def one_hot_embed_fn(values_by_id):
    """Embed an image as the one-hot vector of its value, so retrieval is perfect."""
    names = sorted(set(values_by_id.values()))

    def embed(ids, attribute):
        return np.eye(len(names), dtype=np.float32)[[names.index(values_by_id[image_id]) for image_id in ids]]

    return embed


def test_evaluate_attribute_perfect_embedding():
    frame = split_frame()
    rows = eval_rows(frame, "colour", "test")
    embed_fn = one_hot_embed_fn(dict(zip(frame["image_id"], frame["value"])))

    metrics, embeddings = evaluate_attribute(embed_fn, rows, k=3)

    assert metrics.map == pytest.approx(100.0)
    assert metrics.queries == len(rows.query_ids)
    assert metrics.chance < 100.0
    assert embeddings.query_emb.shape == (len(rows.query_ids), 3)
    assert embeddings.candidate_emb.shape == (len(rows.candidate_ids), 3)


def test_evaluate_attribute_matches_metrics():
    rng = np.random.default_rng(0)
    frame = split_frame()
    rows = eval_rows(frame, "colour", "test")
    table = {image_id: rng.normal(size=4).astype(np.float32) for image_id in frame["image_id"]}

    def embed_fn(ids, attribute):
        return np.stack([table[image_id] for image_id in ids])

    metrics, embeddings = evaluate_attribute(embed_fn, rows, k=2)

    expected = retrieval_metrics(embed_fn(rows.query_ids, "colour"), rows.query_values, embed_fn(rows.candidate_ids, "colour"), rows.candidate_values, k=2)
    assert metrics == expected


def test_evaluate_attribute_without_queries_is_nan():
    rows = AttributeRows("colour", [], np.array([], dtype=object), ["a"], np.array(["red"], dtype=object))

    metrics, embeddings = evaluate_attribute(lambda ids, attribute: np.ones((len(ids), 2), dtype=np.float32), rows)

    assert np.isnan(metrics.map)
    assert embeddings.query_emb.shape == (0, 2)


class ConstantImages:
    """An image source whose image of id "007" is filled with 7, counting the images it serves."""

    def __init__(self):
        self.served = []

    def read(self, image_ids):
        self.served.extend(image_ids)
        return torch.stack([torch.full((4, 3, 3), int(image_id), dtype=torch.uint8) for image_id in image_ids])


class SignedMeanModel:
    """Features: the mean pixel; embedding: [mean, +1] for attribute "a" and [mean, -1] otherwise."""

    def features(self, images):
        return images.float().mean(dim=(1, 2, 3))[:, None, None, None]

    def embed(self, features, attributes):
        sign = torch.tensor([1.0 if attribute == "a" else -1.0 for attribute in attributes])
        return torch.stack([features.flatten(), sign], dim=1)


def test_embed_attributes_runs_backbone_once_per_image():
    images = ConstantImages()
    ids = {"a": ["003", "001", "005", "003"], "b": ["005", "002"]}

    embeddings = embed_attributes(SignedMeanModel(), images, ids, batch_size=2)

    assert sorted(images.served) == ["001", "002", "003", "005"]
    np.testing.assert_array_equal(embeddings["a"], [[3, 1], [1, 1], [5, 1], [3, 1]])
    np.testing.assert_array_equal(embeddings["b"], [[5, -1], [2, -1]])


def test_lookup_embed_fn_returns_rows_in_request_order():
    embed_fn = lookup_embed_fn({"a": ["x", "y"]}, {"a": np.array([[1.0], [2.0]])})

    np.testing.assert_array_equal(embed_fn(["y", "x", "y"], "a"), [[2.0], [1.0], [2.0]])


# --- End to end on a tiny project ----------------------------------------------------------------


def write_split_table(path, frame, attribute, root):
    metadata = {"attribute": attribute, "root": root, "source": "test"}
    schema = pa.schema([pa.field(name, pa.string(), nullable=False) for name in SPLIT_COLUMNS], metadata={METADATA_KEY: json.dumps(metadata).encode()})
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pandas(frame, schema=schema, preserve_index=False), path)


def build_project(root):
    """Write images, split tables of every planned attribute and an image cache under ``root``."""
    images_dir = root / "dataset" / "images"
    images_dir.mkdir(parents=True)
    frame = split_frame()
    for i, value in enumerate(frame["value"]):
        pixels = np.zeros((80, 60, 3), dtype=np.uint8)
        pixels[:] = COLOURS[value]
        pixels[: 10 + i, :20] = 255  # a white block whose height differs per image
        Image.fromarray(pixels).save(images_dir / f"{i:03d}.jpg", quality=95)

    for increment, attributes in PLAN.items():
        for offset, attribute in enumerate(attributes):
            table = frame.copy()
            # Only the first attribute follows the colour; the others group images by index.
            table["value"] = [list(COLOURS)[(i // (offset + 1)) % 3] for i in range(NUM_IMAGES)]
            write_split_table(root / "data" / "splits" / increment / f"{attribute}.parquet", table, attribute, str(root / "dataset"))

    cache = root / "data" / "cache"
    cache.mkdir(parents=True)
    decoded = np.stack([np.asarray(Image.open(images_dir / f"{i:03d}.jpg").convert("RGB")) for i in range(NUM_IMAGES)])
    np.save(cache / "images.npy", decoded)
    pq.write_table(pa.table({"image_id": frame["image_id"].tolist(), "row": np.arange(NUM_IMAGES)}), cache / "index.parquet")
    return frame


MODEL_CONFIG = ModelConfig(backbone="test_resnet", feature_index=2, image_size=[64, 48], embed_dim=16, attention_dim=16)


def write_checkpoint(path, increments):
    torch.manual_seed(0)
    student = MultiHeadModel(MODEL_CONFIG)
    teacher = MultiHeadModel(MODEL_CONFIG)
    for name in increments:
        student.add_increment(name, PLAN[name])
        teacher.add_increment(name, PLAN[name])
    payload = {
        "model": student.state_dict(),
        "ema": {"module": teacher.state_dict(), "step": 0, "decay": 0.9},
        "config": {"model": to_dict(MODEL_CONFIG)},
        "structure": student.structure(),
        "increment": increments[-1],
    }
    save_checkpoint(path, payload)
    return student.eval(), teacher.eval()


def params_for(root):
    return {
        "increments": {"inc0": {"attributes": PLAN["inc0"], "parent": "init"}, "inc1": {"attributes": PLAN["inc1"], "parent": "inc0"}},
        "eval": {"split": "test", "k": 3, "batch_size": 7, "which": "both", "report_model": "student", "device": "cpu"},
    }


def direct_embeddings(model, image_ids, attribute, root):
    pixels = np.stack([np.asarray(Image.open(root / "dataset" / "images" / f"{image_id}.jpg").convert("RGB")) for image_id in image_ids])
    with torch.inference_mode():
        return model(torch.from_numpy(pixels).permute(0, 3, 1, 2), [attribute] * len(image_ids)).numpy()


def test_evaluate_increment_end_to_end(tmp_path):
    build_project(tmp_path)
    student, teacher = write_checkpoint(tmp_path / "models" / "inc1" / "checkpoint.pt", ["inc0", "inc1"])

    result = evaluate_increment(
        "inc1",
        params=params_for(tmp_path),
        checkpoint=tmp_path / "models" / "inc1" / "checkpoint.pt",
        splits_dir=tmp_path / "data" / "splits",
        cache_dir=tmp_path / "data" / "cache",
        out=tmp_path / "metrics" / "increments" / "inc1.json",
        export_dir=tmp_path / "embeddings",
    )

    written = json.loads((tmp_path / "metrics" / "increments" / "inc1.json").read_text())
    assert written == result
    assert result["attributes"] == ["colour", "shape", "size"]
    assert set(result["student"]["attributes"]) == {"colour", "shape", "size"}
    assert set(result["ema"]["attributes"]) == {"colour", "shape", "size"}
    assert result["student"]["attributes"]["size"]["k"] == 3
    assert 0.0 <= result["student"]["mean"]["map"] <= 100.0

    exported = np.load(tmp_path / "embeddings" / "size.npz")
    rows = eval_rows(read_split(tmp_path / "data" / "splits" / "inc1" / "size.parquet").frame, "size", "test")
    assert exported["query_emb"].shape == (len(rows.query_ids), 16)
    assert exported["cand_emb"].shape == (len(rows.candidate_ids), 16)
    assert exported["query_values"].tolist() == list(rows.query_values)
    assert exported["cand_values"].dtype.kind == "U"
    np.testing.assert_allclose(exported["query_emb"], direct_embeddings(student, rows.query_ids, "size", tmp_path), atol=1e-5)

    exported_ema = np.load(tmp_path / "embeddings" / "ema" / "size.npz")
    np.testing.assert_allclose(exported_ema["cand_emb"], direct_embeddings(teacher, rows.candidate_ids, "size", tmp_path), atol=1e-5)
    assert not np.allclose(exported_ema["cand_emb"], exported["cand_emb"])


def test_evaluate_file_fallback_matches_cache(tmp_path):
    build_project(tmp_path)
    write_checkpoint(tmp_path / "models" / "inc0" / "checkpoint.pt", ["inc0"])
    common = dict(
        params=params_for(tmp_path),
        checkpoint=tmp_path / "models" / "inc0" / "checkpoint.pt",
        splits_dir=tmp_path / "data" / "splits",
        which="student",
    )

    cached = evaluate_increment("inc0", cache_dir=tmp_path / "data" / "cache", out=tmp_path / "cached.json", **common)
    from_files = evaluate_increment("inc0", cache_dir=None, out=tmp_path / "files.json", **common)

    assert "ema" not in cached
    assert set(cached["student"]["attributes"]) == {"colour", "shape"}
    for attribute in ("colour", "shape"):
        assert from_files["student"]["attributes"][attribute]["map"] == pytest.approx(cached["student"]["attributes"][attribute]["map"])


def test_evaluate_rejects_model_missing_attribute(tmp_path):
    build_project(tmp_path)
    write_checkpoint(tmp_path / "inc0.pt", ["inc0"])

    with pytest.raises(ValueError, match="does not serve attributes"):
        evaluate_increment(
            "inc1",
            params=params_for(tmp_path),
            checkpoint=tmp_path / "inc0.pt",
            splits_dir=tmp_path / "data" / "splits",
            cache_dir=tmp_path / "data" / "cache",
            out=tmp_path / "out.json",
            which="student",
        )


def test_file_image_source_rejects_unknown_id(tmp_path):
    source = FileImageSource(tmp_path, {"001": "images/001.jpg"})

    with pytest.raises(KeyError, match="002"):
        source.read(["002"])


def write_params(root):
    import yaml

    (root / "params.yaml").write_text(yaml.safe_dump(params_for(root)))
    (root / "pyproject.toml").write_text("")


def cli(argv):
    parser = argparse.ArgumentParser()
    configure_parser(parser)
    return run(parser.parse_args(argv))


def test_cli_evaluates_and_aggregates(tmp_path, monkeypatch):
    build_project(tmp_path)
    write_params(tmp_path)
    monkeypatch.setenv(PROJECT_ROOT_ENV, str(tmp_path))
    write_checkpoint(tmp_path / "models" / "inc0" / "checkpoint.pt", ["inc0"])
    write_checkpoint(tmp_path / "models" / "inc1" / "checkpoint.pt", ["inc0", "inc1"])
    (tmp_path / "metrics" / "train").mkdir(parents=True)
    (tmp_path / "metrics" / "train" / "inc1.json").write_text(json.dumps({"cost": {"wall_s": 2.0, "images_seen": 60, "steps": 3}}))

    assert cli(["--increment", "inc0", "--which", "student"]) == 0
    assert cli(["--increment", "inc1", "--which", "student"]) == 0
    assert cli(["--aggregate"]) == 0

    report = json.loads((tmp_path / "metrics" / "continual.json").read_text())
    inc1 = json.loads((tmp_path / "metrics" / "increments" / "inc1.json").read_text())
    assert report["increments"] == [["colour", "shape"], ["size"]]
    assert report["R"][1] == {attribute: figures["map"] for attribute, figures in inc1["student"]["attributes"].items()}
    assert report["cost"][1]["steps"] == 3
    assert report["cost"][0]["steps"] is None
    assert (tmp_path / "plots" / "map_heatmap.png").is_file()
    assert (tmp_path / "plots" / "map_per_increment.csv").is_file()


def test_cli_runs_tracked_in_mlflow(tmp_path, monkeypatch):
    import mlflow

    build_project(tmp_path)
    write_params(tmp_path)
    monkeypatch.setenv(PROJECT_ROOT_ENV, str(tmp_path))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    write_checkpoint(tmp_path / "models" / "inc0" / "checkpoint.pt", ["inc0"])

    assert cli(["--increment", "inc0", "--which", "student"]) == 0
    assert cli(["--aggregate", "--increment", "inc0"]) == 0

    evaluate_runs = mlflow.search_runs(experiment_names=["mclfir"], filter_string="tags.`mclfir.kind` = 'evaluate'", output_format="list")
    report_runs = mlflow.search_runs(experiment_names=["mclfir"], filter_string="tags.`mclfir.kind` = 'report'", output_format="list")
    assert len(evaluate_runs) == 1
    assert "student/map/colour" in evaluate_runs[0].data.metrics
    assert evaluate_runs[0].data.tags["mclfir.increment"] == "inc0"
    assert len(report_runs) == 1
    assert "final_map" in report_runs[0].data.metrics
    artifacts = mlflow.MlflowClient().list_artifacts(report_runs[0].info.run_id, "plots")
    assert sorted(artifact.path for artifact in artifacts) == ["plots/map_heatmap.png", "plots/map_per_increment.png"]


def test_cli_reports_missing_checkpoint(tmp_path, monkeypatch, caplog):
    build_project(tmp_path)
    write_params(tmp_path)
    monkeypatch.setenv(PROJECT_ROOT_ENV, str(tmp_path))

    assert cli(["--increment", "inc0"]) == 1
    assert "Checkpoint not found" in caplog.text


def test_cli_requires_increment(tmp_path, monkeypatch):
    write_params(tmp_path)
    monkeypatch.setenv(PROJECT_ROOT_ENV, str(tmp_path))

    assert cli([]) == 1


@pytest.mark.parametrize(("k", "batch_size"), [(0, None), (None, 0), (None, -1)])
def test_evaluate_rejects_non_positive_options(k, batch_size):
    from mclfir.evaluate import evaluate_increment

    params = {"eval": {}, "increments": {"inc0": {"attributes": ["colour"], "parent": "init"}}}

    with pytest.raises(ValueError, match="both must be positive"):
        evaluate_increment("inc0", params=params, k=k, batch_size=batch_size)
