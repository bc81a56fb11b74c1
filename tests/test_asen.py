"""Tests of the ASEN split-file reader: real split files, the protocol, DeepFashion ranks and problems."""

import hashlib
import json
from collections import defaultdict
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from mclfir.data.asen import PROTOCOL_COLUMNS, read_asen, read_protocol, write_protocol
from mclfir.data.catalog import read_catalog, write_catalog

REAL_DATASETS = ["FashionAI", "DARN", "DeepFashion"]


@pytest.fixture(scope="module")
def read_real():
    """Return a reader of the real split files that parses each (folder, dataset) once per module."""
    results = {}

    def read(root: Path, dataset: str):
        key = (root, dataset)
        if key not in results:
            results[key] = read_asen(root, dataset)
        return results[key]

    return read


def _lines(path: Path) -> list[bytes]:
    """Split a file's bytes into lines, treating CRLF, LF and a lone CR each as one line end."""
    data = path.read_bytes().replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return lines


def _nonempty_lines(path: Path) -> list[bytes]:
    return [line for line in _lines(path) if line.strip()]


def _expected_protocol(split_dir: Path, attributes: list[str]) -> pd.DataFrame:
    """Build the protocol table straight from the query and candidate files."""
    records = []
    for split in ("valid", "test"):
        for role in ("query", "candidate"):
            for line_number, line in enumerate(_lines(split_dir / f"{role}_{split}.txt"), start=1):
                image_index, attribute_index, value_index = (int(token) for token in line.split())
                records.append((split, role, f"{split}/{image_index}", attributes[attribute_index], value_index, line_number))
    return pd.DataFrame.from_records(records, columns=list(PROTOCOL_COLUMNS))


def _write_lines(path: Path, lines: list[str], newline: str = "\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes("".join(line + newline for line in lines).encode())
    return path


def _make_asenpp(root: Path, dataset: str = "DARN", attributes: dict[str, int] | None = None) -> Path:
    """Write an asenpp meta.json for one dataset and return the dataset's split folder."""
    attributes = attributes or {"colour": 3, "length": 2}
    meta = {dataset: {"ATTRIBUTES": list(attributes), "ATTRIBUTES_NUM": attributes}}
    root.mkdir(parents=True, exist_ok=True)
    (root / "meta.json").write_text(json.dumps(meta))
    split_dir = root / dataset
    split_dir.mkdir()
    return split_dir


def _write_split(split_dir: Path, split: str, filenames: list[str], query: list[str], candidate: list[str]) -> None:
    _write_lines(split_dir / f"filenames_{split}.txt", filenames)
    _write_lines(split_dir / f"query_{split}.txt", query)
    _write_lines(split_dir / f"candidate_{split}.txt", candidate)


@pytest.mark.realdata
@pytest.mark.parametrize("dataset", REAL_DATASETS)
def test_real_counts_match_files(asen_root, read_real, dataset):
    split_dir = asen_root / "asenpp" / dataset

    catalog, protocol, problems = read_real(asen_root, dataset)

    assert problems == []
    for split in ("valid", "test"):
        filenames = _nonempty_lines(split_dir / f"filenames_{split}.txt")
        split_rows = catalog.frame[catalog.frame["asen_split"] == split]
        assert len(split_rows) == len(filenames)
        assert list(split_rows["path"]) == [line.strip().decode() for line in filenames]

        for role in ("query", "candidate"):
            lines = _nonempty_lines(split_dir / f"{role}_{split}.txt")
            selected = protocol[(protocol["split"] == split) & (protocol["role"] == role)]
            assert len(selected) == len(lines), f"{role}_{split}.txt"
            indices = {int(line.split()[0]) for line in lines}
            assert set(selected["image_id"]) == {f"{split}/{index}" for index in indices}


@pytest.mark.realdata
@pytest.mark.parametrize("dataset", REAL_DATASETS)
def test_real_protocol_order_preserved(asen_root, read_real, dataset):
    meta = json.loads((asen_root / "asenpp" / "meta.json").read_text())

    _, protocol, _ = read_real(asen_root, dataset)

    expected = _expected_protocol(asen_root / "asenpp" / dataset, meta[dataset]["ATTRIBUTES"])
    pd.testing.assert_frame_equal(protocol.reset_index(drop=True), expected, check_dtype=False)


@pytest.mark.realdata
@pytest.mark.parametrize("dataset", REAL_DATASETS)
def test_real_catalog_holds_protocol_values(asen_root, read_real, dataset):
    catalog, protocol, _ = read_real(asen_root, dataset)

    values = catalog.frame.set_index("image_id")
    for entry in protocol.itertuples(index=False):
        assert str(entry.value_index) in values.at[entry.image_id, entry.attribute], f"{entry}"


@pytest.mark.realdata
def test_real_crlf_files_match_lf_copies(asen_root, read_real):
    crlf_catalog, crlf_protocol, crlf_problems = read_real(asen_root / "asenpp", "FashionAI")
    lf_catalog, lf_protocol, lf_problems = read_real(asen_root / "asen", "FashionAI")

    assert crlf_problems == []
    assert lf_problems == []
    pd.testing.assert_frame_equal(crlf_protocol, lf_protocol)
    assert not any("\r" in path for path in crlf_catalog.frame["path"])
    crlf_suffixes = [path.split("/", 1)[1] for path in crlf_catalog.frame["path"]]
    lf_suffixes = [path.split("/", 1)[1] for path in lf_catalog.frame["path"]]
    assert crlf_suffixes == lf_suffixes


@pytest.mark.realdata
def test_real_deepfashion_value_is_rank(asen_root, read_real):
    split_dir = asen_root / "asenpp" / "DeepFashion"
    labels: dict[str, dict[int, list[tuple[int, int]]]] = {}
    ids_by_type: dict[int, set[int]] = defaultdict(set)
    for split in ("valid", "test"):
        labels[split] = {}
        for line in _nonempty_lines(split_dir / f"label_{split}.txt"):
            fields = [int(field) for field in line.decode().split("\t") if field.strip()]
            pairs = list(zip(fields[1::2], fields[2::2]))
            labels[split][fields[0]] = pairs
            for type_number, global_id in pairs:
                ids_by_type[type_number].add(global_id)
    rank = {type_number: {global_id: position for position, global_id in enumerate(sorted(ids))} for type_number, ids in ids_by_type.items()}
    attributes = json.loads((asen_root / "asenpp" / "meta.json").read_text())["DeepFashion"]["ATTRIBUTES"]

    catalog, protocol, problems = read_real(asen_root, "DeepFashion")

    assert problems == []
    assert len(protocol) == sum(len(_nonempty_lines(split_dir / f"{role}_{split}.txt")) for role in ("query", "candidate") for split in ("valid", "test"))
    mismatches = []
    for entry in protocol.itertuples(index=False):
        split, index = entry.image_id.split("/")
        type_number = attributes.index(entry.attribute) + 1
        ranks = {rank[type_number][global_id] for pair_type, global_id in labels[split][int(index)] if pair_type == type_number}
        if entry.value_index not in ranks:
            mismatches.append(entry)
    assert mismatches == []

    values = catalog.frame.set_index("image_id")
    for split, by_index in labels.items():
        for index, pairs in list(by_index.items())[:500]:
            for type_number, global_id in pairs:
                assert str(rank[type_number][global_id]) in values.at[f"{split}/{index}", attributes[type_number - 1]]


@pytest.mark.realdata
@pytest.mark.parametrize("split", ["valid", "test"])
def test_real_asen_values_match_label_csv(asen_root, read_real, split):
    folder = asen_root / "asen"
    meta = json.loads((folder / "fashionAI" / "meta.json").read_text())
    label_rows = [line.decode().split(",") for line in _nonempty_lines(folder / "fashionAI" / split / "Annotations" / "label.csv")]
    filenames = [line.decode().strip() for line in _nonempty_lines(folder / f"filenames_{split}.txt")]

    catalog, protocol, _ = read_real(folder, "FashionAI")

    assert filenames == [f"{split}/{row[0]}" for row in label_rows]
    values = catalog.frame.set_index("image_id")
    selected = protocol[protocol["split"] == split]
    for entry in selected.itertuples(index=False):
        path, attribute_field, code = label_rows[int(entry.image_id.split("/")[1])]
        assert attribute_field == f"{entry.attribute}_labels"
        assert entry.value_index == code.index("y")
        assert values.at[entry.image_id, entry.attribute] == [meta["ATTRIBUTES_VALUES"][entry.attribute][entry.value_index]]


@pytest.mark.realdata
def test_real_train_without_filenames_skipped(asen_root, read_real):
    train_lines = _nonempty_lines(asen_root / "asenpp" / "FashionAI" / "label_train.txt")

    catalog, _, problems = read_real(asen_root, "FashionAI")

    assert len(train_lines) > 0
    assert problems == []
    assert "train" in catalog.extra["skipped_splits"]
    assert "train" not in set(catalog.frame["asen_split"])


def test_broken_lines_reported_with_file_and_line(tmp_path):
    split_dir = _make_asenpp(tmp_path)
    _write_split(split_dir, "test", ["a.jpg", "b.jpg"], ["0 0 1"], ["1 1 0"])
    filenames_path = _write_lines(split_dir / "filenames_valid.txt", ["a.jpg", "", "../up.jpg", "d.jpg"])
    query_path = _write_lines(
        split_dir / "query_valid.txt",
        [
            "0 0 2",  # 1: fine
            "0 1",  # 2: two fields
            "x 0 1",  # 3: not an integer
            "3 5 0",  # 4: attribute index out of range
            "3 1 2",  # 5: value index out of range
            "9 0 0",  # 6: image index beyond filenames
            "",  # 7: blank
            "1 0 0",  # 8: image index with a blank filenames line
            "2 0 0",  # 9: image index with a path outside the root
            "3 1 1",  # 10: fine
        ],
    )
    candidate_path = _write_lines(split_dir / "candidate_valid.txt", ["3 0 0", "0 0 1"])

    catalog, protocol, problems = read_asen(tmp_path, "DARN")

    found = {(problem.check, problem.file, problem.row, problem.action) for problem in problems}
    expected = {
        ("asen_filename", str(filenames_path), 2, "set_aside"),
        ("asen_filename", str(filenames_path), 3, "set_aside"),
        ("asen_malformed_line", str(query_path), 2, "stop"),
        ("asen_malformed_line", str(query_path), 3, "stop"),
        ("asen_attribute_index", str(query_path), 4, "stop"),
        ("asen_value_index", str(query_path), 5, "stop"),
        ("asen_image_index", str(query_path), 6, "stop"),
        ("asen_blank_line", str(query_path), 7, "set_aside"),
        ("asen_image_index", str(query_path), 8, "stop"),
        ("asen_image_index", str(query_path), 9, "stop"),
        ("asen_conflicting_value", str(candidate_path), 2, "guard"),
    }
    assert found == expected
    assert all(f"{Path(problem.file).name}:{problem.row}" in problem.message for problem in problems)

    valid = protocol[protocol["split"] == "valid"]
    assert list(valid["line"]) == [1, 10, 1, 2]
    assert list(valid["role"]) == ["query", "query", "candidate", "candidate"]
    assert list(valid["image_id"]) == ["valid/0", "valid/3", "valid/3", "valid/0"]
    assert sorted(catalog.frame["image_id"]) == ["test/0", "test/1", "valid/0", "valid/3"]


def test_value_out_of_range_names_meta(tmp_path):
    split_dir = _make_asenpp(tmp_path)
    _write_split(split_dir, "valid", ["a.jpg"], ["0 0 3"], [])
    _write_split(split_dir, "test", ["a.jpg"], [], [])

    _, protocol, problems = read_asen(tmp_path, "DARN")

    assert len(problems) == 1
    assert problems[0].column == "colour"
    assert problems[0].value == "3"
    assert "3 values" in problems[0].message
    assert protocol.empty


def test_missing_protocol_file_stops(tmp_path):
    split_dir = _make_asenpp(tmp_path)
    _write_split(split_dir, "valid", ["a.jpg"], ["0 0 1"], ["0 0 1"])
    _write_lines(split_dir / "filenames_test.txt", ["a.jpg"])
    _write_lines(split_dir / "query_test.txt", ["0 0 1"])

    _, _, problems = read_asen(tmp_path, "DARN")

    assert [(problem.check, problem.action, Path(problem.file).name) for problem in problems] == [
        ("asen_missing_file", "stop", "candidate_test.txt")
    ]


def test_crlf_and_stray_cr_in_protocol(tmp_path):
    split_dir = _make_asenpp(tmp_path)
    _write_split(split_dir, "test", ["a.jpg"], [], [])
    _write_lines(split_dir / "filenames_valid.txt", ["a.jpg", "b.jpg", "c.jpg"], newline="\r\n")
    (split_dir / "query_valid.txt").write_bytes(b"0 0 1\r\n1 0 2\r2 1 0\r\n")
    _write_lines(split_dir / "candidate_valid.txt", [])

    catalog, protocol, problems = read_asen(tmp_path, "DARN")

    assert problems == []
    assert list(protocol["line"]) == [1, 2, 3]
    assert list(protocol["image_id"]) == ["valid/0", "valid/1", "valid/2"]
    assert list(protocol["value_index"]) == [1, 2, 0]
    assert list(catalog.frame["path"])[:3] == ["a.jpg", "b.jpg", "c.jpg"]


def test_deepfashion_ranks_and_problems(tmp_path):
    split_dir = _make_asenpp(tmp_path, "DeepFashion", {"texture": 2, "shape": 2})
    _write_split(split_dir, "valid", ["a.jpg", "b.jpg", "c.jpg"], ["0 0 1", "1 1 1"], ["2 0 0"])
    _write_split(split_dir, "test", ["a.jpg"], [], [])
    label_path = _write_lines(
        split_dir / "label_valid.txt",
        [
            "0\t1\t70\t2\t5\t\t\t",  # texture 70 -> rank 1, shape 5 -> rank 0
            "1\t2\t9\t1\t40\t\t",  # shape 9 -> rank 1, texture 40 -> rank 0
            "2\t1\t70\t7\t3\t",  # texture 70 -> rank 1 (the protocol gives 0), type 7 is out of range
        ],
        newline="\r\n",
    )
    candidate_path = split_dir / "candidate_valid.txt"

    catalog, protocol, problems = read_asen(tmp_path, "DeepFashion")

    found = {(problem.check, problem.file, problem.row) for problem in problems}
    assert found == {
        ("asen_deepfashion_type", str(label_path), 3),
        ("asen_label_mismatch", str(candidate_path), 1),
    }
    values = catalog.frame.set_index("image_id")
    assert values.at["valid/0", "texture"] == ["1"]
    assert values.at["valid/0", "shape"] == ["0"]
    assert values.at["valid/1", "shape"] == ["1"]
    assert values.at["valid/1", "texture"] == ["0"]
    assert sorted(values.at["valid/2", "texture"]) == ["0", "1"]
    assert len(protocol) == 3


def test_deepfashion_incomplete_type_stops(tmp_path):
    split_dir = _make_asenpp(tmp_path, "DeepFashion", {"texture": 3, "shape": 1})
    _write_split(split_dir, "valid", ["a.jpg"], ["0 1 0"], [])
    _write_split(split_dir, "test", ["a.jpg"], [], [])
    label_path = _write_lines(split_dir / "label_valid.txt", ["0\t1\t4\t1\t8\t2\t3"])

    catalog, _, problems = read_asen(tmp_path, "DeepFashion")

    assert [(problem.check, problem.action, problem.column, problem.file) for problem in problems] == [
        ("asen_deepfashion_rank", "stop", "texture", str(label_path))
    ]
    values = catalog.frame.set_index("image_id")
    assert values.at["valid/0", "texture"] == []
    assert values.at["valid/0", "shape"] == ["0"]


def test_train_split_with_labels(tmp_path):
    split_dir = _make_asenpp(tmp_path, "FashionAI", {"skirt_length": 6, "neck_design": 5})
    _write_split(split_dir, "valid", ["v.jpg"], ["0 0 0"], [])
    _write_split(split_dir, "test", ["t.jpg"], [], ["0 1 4"])
    _write_lines(split_dir / "filenames_train.txt", ["r0.jpg", "r1.jpg"])
    label_path = _write_lines(split_dir / "label_train.txt", ["0 1 3", "1 0 5 1 2", "1 0 6", "2 0 1"], newline="\r\n")

    catalog, protocol, problems = read_asen(tmp_path, "FashionAI")

    assert [(problem.check, problem.file, problem.row) for problem in problems] == [
        ("asen_value_index", str(label_path), 3),
        ("asen_image_index", str(label_path), 4),
    ]
    values = catalog.frame.set_index("image_id")
    assert values.at["train/0", "neck_design"] == ["3"]
    assert values.at["train/1", "skirt_length"] == ["5"]
    assert values.at["train/1", "neck_design"] == ["2"]
    assert set(protocol["split"]) == {"valid", "test"}
    assert catalog.extra["skipped_splits"] == {}


def test_asen_layout_uses_value_names(tmp_path):
    folder = tmp_path / "asen"
    meta = {
        "ATTRIBUTES": ["skirt_length"],
        "ATTRIBUTES_NUM": {"skirt_length": 3},
        "ATTRIBUTES_VALUES": {"skirt_length": ["Invisible", "Short Length", "Knee Length"]},
    }
    (folder / "fashionAI").mkdir(parents=True)
    (folder / "fashionAI" / "meta.json").write_text(json.dumps(meta))
    _write_split(folder, "valid", ["valid/Images/skirt_length_labels/a.jpg"], ["0 0 2"], [])
    _write_split(folder, "test", ["test/Images/skirt_length_labels/b.jpg"], [], ["0 0 1"])

    catalog, protocol, problems = read_asen(tmp_path, "fashionai")

    assert problems == []
    assert catalog.extra["asen_layout"] == "asen"
    assert catalog.root == str(folder / "fashionAI")
    assert list(catalog.frame["skirt_length"]) == [["Knee Length"], ["Short Length"]]
    assert list(protocol["value_index"]) == [2, 1]


def test_image_root_hashes_present_images(tmp_path):
    split_dir = _make_asenpp(tmp_path / "splits")
    _write_split(split_dir, "valid", ["img/a.jpg", "img/b.jpg"], ["0 0 1"], ["1 0 1"])
    _write_split(split_dir, "test", ["img/c.jpg"], [], [])
    image_root = tmp_path / "images"
    (image_root / "img").mkdir(parents=True)
    Image.new("RGB", (60, 80), (10, 120, 40)).save(image_root / "img" / "a.jpg")

    catalog, _, problems = read_asen(tmp_path / "splits", "DARN", image_root=image_root)

    assert problems == []
    hashes = catalog.frame.set_index("image_id")["content_hash"]
    assert hashes["valid/0"] == hashlib.sha256((image_root / "img" / "a.jpg").read_bytes()).hexdigest()
    assert hashes["valid/1"] is None
    assert catalog.extra["missing_images"] == 2
    assert catalog.root == str(image_root)


def test_protocol_and_catalog_round_trip(tmp_path):
    split_dir = _make_asenpp(tmp_path / "splits")
    _write_split(split_dir, "valid", ["a.jpg", "b.jpg"], ["1 1 0", "0 0 2"], ["0 1 1"])
    _write_split(split_dir, "test", ["c.jpg"], [], ["0 0 0"])
    catalog, protocol, _ = read_asen(tmp_path / "splits", "DARN")

    protocol_path = write_protocol(protocol, tmp_path / "out" / "protocol.parquet")
    catalog_path = write_catalog(catalog, tmp_path / "out" / "catalog.parquet")

    pd.testing.assert_frame_equal(read_protocol(protocol_path), protocol)
    restored = read_catalog(catalog_path)
    assert list(restored.frame["asen_split"]) == ["valid", "valid", "test"]
    assert restored.extra["asen_dataset"] == "DARN"
    assert list(restored.frame["length"]) == [["1"], ["0"], []]


def test_unknown_dataset_raises(tmp_path):
    with pytest.raises(ValueError, match="Unknown ASEN dataset"):
        read_asen(tmp_path, "Zappos")


def test_missing_layout_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="No ASEN split files for DARN"):
        read_asen(tmp_path, "DARN")
