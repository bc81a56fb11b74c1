"""Read the ASEN and ASEN++ split files into a catalog and the benchmark's query/candidate protocol.

ASEN ("Fine-Grained Fashion Similarity Learning by Attribute-Specific Embedding Network",
AAAI 2020) and ASEN++ ("Fine-Grained Fashion Similarity Prediction by Attribute-Specific
Embedding Learning") published the splits that attribute-specific fashion retrieval work
reports on. Only the split files are read here. The images are licensed by their owners, and
each user downloads them:

- FashionAI: sign up for the Alibaba Tianchi FashionAI Global Challenge 2018 (attribute
  recognition, https://tianchi.aliyun.com/competition/entrance/231671/introduction) and unpack
  ``fashionAI_attributes_train1.zip`` and ``fashionAI_attributes_train2.zip``.
- DARN: the images are fetched from the URLs that the DARN authors published. Follow the
  instructions in the ASEN++ repository (https://github.com/Maryeon/asenpp), which links the
  list of URLs that still worked for ASEN++ (214,619 images).
- DeepFashion: the Category and Attribute Prediction Benchmark of CUHK MMLab
  (http://mmlab.ie.cuhk.edu.hk/projects/DeepFashion.html).

The split files come from https://github.com/Maryeon/asen (FashionAI only, the ``asen`` layout)
and from the ``data.zip`` linked in the ASEN++ README (the ``asenpp`` layout). Two layouts are read:

- ``asenpp``: ``meta.json`` keyed by dataset (``ATTRIBUTES``, ``ATTRIBUTES_NUM``) and one folder
  per dataset holding ``filenames_{train,valid,test}.txt``, ``{query,candidate}_{valid,test}.txt``
  and ``label_*.txt``. ASEN++ unpacks each dataset's images into that same folder.
- ``asen``: ``filenames_{valid,test}.txt`` and ``{query,candidate}_{valid,test}.txt`` at the root,
  with ``fashionAI/meta.json`` (it adds ``ATTRIBUTES_VALUES``, the value names). The file names
  (``valid/Images/...``) are relative to ``fashionAI/``, which also holds
  ``{valid,test}/Annotations/label.csv``.

File formats:

- ``filenames_<split>.txt``: one image path per line. The 0-based line number is the image index.
- ``{query,candidate}_<split>.txt``: ``<image_index> <attribute_index> <value_index>``, all 0-based.
- ``label_train.txt``: ``<image_index>`` followed by ``<attribute_index> <value_index>`` pairs
  (read as the ASEN++ training sampler reads it).
- ``DeepFashion/label_{valid,test}.txt``: ``<image_index>`` followed by ``<type> <global id>``
  pairs, tab-separated with trailing tabs. The type runs from 1 to 5 and names the attribute, and
  the global id is the DeepFashion attribute id (0..999). The value index used in the query and
  candidate files is the rank of the global id among the sorted distinct ids of its type.

Text files are read with universal newlines, as the ASEN code's ``open(path)`` reads them, so
CRLF line ends and stray carriage returns end a line. The query and candidate lines are the
benchmark protocol. :func:`read_asen` keeps every valid line in file order, and any line it
cannot keep is a ``stop`` problem, because the benchmark would no longer be the published one.
"""

import json
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mclfir.data.catalog import BASE_COLUMNS, HASH_COLUMN, ID_COLUMN, PATH_COLUMN, ROW_COLUMN, Catalog
from mclfir.data.fashionai import check_relative_path, hash_images, read_lines
from mclfir.data.problems import Action, Problem

_logger = logging.getLogger(__name__)

SOURCE = "asen"
DATASETS = ("FashionAI", "DARN", "DeepFashion")
SPLITS = ("train", "valid", "test")
EVAL_SPLITS = ("valid", "test")
ROLES = ("query", "candidate")
SPLIT_COLUMN = "asen_split"
PROTOCOL_COLUMNS = ("split", "role", "image_id", "attribute", "value_index", "line")
PROTOCOL_FILENAME = "protocol.parquet"
META_FILENAME = "meta.json"
PROTOCOL_FIELD_COUNT = 3

_PROTOCOL_SCHEMA = pa.schema(
    [
        pa.field("split", pa.string(), nullable=False),
        pa.field("role", pa.string(), nullable=False),
        pa.field("image_id", pa.string(), nullable=False),
        pa.field("attribute", pa.string(), nullable=False),
        pa.field("value_index", pa.int64(), nullable=False),
        pa.field("line", pa.int64(), nullable=False),
    ]
)


@dataclass(frozen=True)
class AsenLayout:
    """Locations of one dataset's split files, its meta file and its default image folder."""

    layout: str
    dataset: str
    split_dir: Path
    meta_path: Path
    default_image_root: Path


@dataclass(frozen=True)
class AsenMeta:
    """Attribute names in index order, their value counts and (when given) value names."""

    attributes: list[str]
    value_counts: dict[str, int]
    value_names: dict[str, list[str]] = field(default_factory=dict)

    def value_label(self, attribute: str, index: int) -> str:
        """Return the name of value ``index`` of ``attribute``, or the index as a string."""
        names = self.value_names.get(attribute)
        if names is not None and 0 <= index < len(names):
            return names[index]
        return str(index)


def canonical_dataset(dataset: str) -> str:
    """Return the dataset's name as the split files spell it; raise ValueError when it is unknown."""
    for name in DATASETS:
        if name.lower() == dataset.strip().lower():
            return name
    raise ValueError(f"Unknown ASEN dataset {dataset!r}; use one of: {', '.join(DATASETS)}.")


def locate_layout(root: Path, dataset: str) -> AsenLayout:
    """Find the split files of ``dataset`` at ``root``, which may be an ``asenpp`` or ``asen`` folder or their parent.

    The ``asenpp`` layout is tried first. Raises FileNotFoundError when neither layout is found.
    """
    root = Path(root)
    dataset = canonical_dataset(dataset)

    for folder in (root, root / "asenpp"):
        meta_path = folder / META_FILENAME
        if meta_path.is_file() and dataset in _read_json(meta_path):
            split_dir = folder / dataset
            return AsenLayout("asenpp", dataset, split_dir, meta_path, split_dir)

    if dataset == "FashionAI":
        for folder in (root, root / "asen"):
            meta_path = folder / "fashionAI" / META_FILENAME
            if meta_path.is_file() and (folder / "filenames_valid.txt").is_file():
                return AsenLayout("asen", dataset, folder, meta_path, folder / "fashionAI")

    raise FileNotFoundError(
        f"No ASEN split files for {dataset} found at {root}. Expected asenpp/meta.json with a {dataset!r} "
        f"entry and asenpp/{dataset}/, or (FashionAI only) asen/fashionAI/meta.json beside asen/filenames_valid.txt. "
        f"Unpack the ASEN++ data.zip or the github.com/Maryeon/asen data folder there."
    )


def load_asen_meta(layout: AsenLayout) -> AsenMeta:
    """Load the attribute names and value counts of ``layout.dataset`` from its ``meta.json``."""
    content = _read_json(layout.meta_path)
    if layout.dataset in content:
        content = content[layout.dataset]
    if "ATTRIBUTES" not in content or "ATTRIBUTES_NUM" not in content:
        raise ValueError(f"{layout.meta_path} has no ATTRIBUTES and ATTRIBUTES_NUM entries for {layout.dataset}.")

    attributes = [str(name) for name in content["ATTRIBUTES"]]
    value_counts = {str(name): int(count) for name, count in content["ATTRIBUTES_NUM"].items()}
    missing = [name for name in attributes if name not in value_counts]
    if missing:
        raise ValueError(f"{layout.meta_path}: ATTRIBUTES_NUM has no count for {missing}; add them.")

    value_names = {str(name): [str(value) for value in values] for name, values in content.get("ATTRIBUTES_VALUES", {}).items()}
    return AsenMeta(attributes, value_counts, value_names)


def read_asen(root: Path, dataset: str, image_root: Path | None = None) -> tuple[Catalog, pd.DataFrame, list[Problem]]:
    """Read one dataset's ASEN split files into a catalog, the query/candidate protocol and problems.

    The catalog has one row per (split, image index), with image id ``<split>/<index>``, the
    filenames line as path, the values from the query, candidate and label files in the attribute
    columns, and the split in ``asen_split``. Values are names when the meta file gives them and
    value indices as strings otherwise. ``image_root`` is the folder the paths are relative to.
    By default it is where ASEN(++) expects the images: the dataset's split folder for
    ``asenpp`` and ``fashionAI/`` for ``asen``. Missing images get a null ``content_hash``, are
    counted in the catalog's ``missing_images`` entry and never stop parsing.

    The protocol has the columns of :data:`PROTOCOL_COLUMNS`, one row per query or candidate
    line, in file order: valid then test, and within a split the query file then the candidate file.
    """
    layout = locate_layout(root, dataset)
    meta = load_asen_meta(layout)
    image_root = layout.default_image_root if image_root is None else Path(image_root)
    _logger.info("Reading %s split files (%s layout) from %s", layout.dataset, layout.layout, layout.split_dir)

    reader = _AsenReader(layout, meta)
    reader.read_all()

    frame = reader.catalog_frame()
    missing = hash_images(frame, image_root if image_root.is_dir() else None, description=f"hash {layout.dataset} images")
    if missing:
        _logger.warning(
            "%d of %d %s images are missing under %s; download the images and pass their folder as the image root",
            missing, len(frame), layout.dataset, image_root,
        )

    extra = {
        "asen_dataset": layout.dataset,
        "asen_layout": layout.layout,
        "split_files": str(layout.split_dir),
        "meta": str(layout.meta_path),
        "missing_images": missing,
        "skipped_splits": reader.skipped_splits,
    }
    catalog = Catalog(frame, list(meta.attributes), SOURCE, str(image_root), extra)
    protocol = reader.protocol_frame()
    _logger.info(
        "Read %d %s images and %d protocol lines with %d problems", len(frame), layout.dataset, len(protocol), len(reader.problems)
    )
    return catalog, protocol, reader.problems


def write_protocol(protocol: pd.DataFrame, out: Path) -> Path:
    """Write the query/candidate protocol table to ``out`` as Parquet, keeping its row order."""
    out = Path(out)
    missing = [name for name in PROTOCOL_COLUMNS if name not in protocol.columns]
    if missing:
        raise ValueError(f"Protocol table is missing columns {missing}; present: {list(protocol.columns)}")

    out.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(protocol[list(PROTOCOL_COLUMNS)], schema=_PROTOCOL_SCHEMA, preserve_index=False)
    pq.write_table(table, out)
    _logger.info("Wrote %d protocol lines to %s", len(protocol), out)
    return out


def read_protocol(path: Path) -> pd.DataFrame:
    """Read a protocol table written by :func:`write_protocol`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Protocol table not found: {path}. Create it with `mclfir data prepare --source asen`.")
    return pq.read_table(path).to_pandas()


class _AsenReader:
    """Parser of one dataset's split files that collects catalog rows, protocol rows and problems."""

    def __init__(self, layout: AsenLayout, meta: AsenMeta) -> None:
        self.layout = layout
        self.meta = meta
        self.problems: list[Problem] = []
        self.rows: dict[str, dict] = {}
        self.protocol: list[dict] = []
        self.skipped_splits: dict[str, str] = {}
        # Number of lines of each split's filenames file, that is, its count of image indices.
        self.split_sizes: dict[str, int] = {}
        # (image_id, attribute) -> (value_index, file name, line) of its first protocol line.
        self.protocol_values: dict[tuple[str, str], tuple[int, str, int]] = {}
        # (image_id, label file, line, [(type, global id), ...]) per DeepFashion label line.
        self.deepfashion_labels: list[tuple[str, Path, int, list[tuple[int, int]]]] = []

    def read_all(self) -> None:
        """Read every split's files, then the DeepFashion label files, whose ranks need all splits."""
        for split in SPLITS:
            self.read_split(split)
        if self.deepfashion_labels:
            self.apply_deepfashion_labels()

    def read_split(self, split: str) -> None:
        filenames_path = self.layout.split_dir / f"filenames_{split}.txt"
        label_path = self.layout.split_dir / f"label_{split}.txt"

        if not filenames_path.is_file():
            self.handle_missing_filenames(split, filenames_path, label_path)
            return

        self.read_filenames(split, filenames_path)
        if split in EVAL_SPLITS:
            for role in ROLES:
                self.read_protocol_file(split, role)
        if label_path.is_file():
            self.read_label_file(split, label_path)

    def handle_missing_filenames(self, split: str, filenames_path: Path, label_path: Path) -> None:
        """Report a missing valid or test filenames file, or leave the train split out with a warning.

        Without ``filenames_train.txt``, ``label_train.txt`` is still checked for malformed lines
        and out-of-range indices, but its labels cannot be attached to images.
        """
        if split in EVAL_SPLITS:
            reason = f"file not found, so the {split} split cannot be read; restore it from the split archive"
            self.add_problem("asen_missing_file", "stop", filenames_path, None, "", "", reason)
            return

        reason = f"{filenames_path.name} not found"
        if label_path.is_file():
            reason += f", so the labels in {label_path.name} have no images"
            self.read_label_file(split, label_path)
        self.skipped_splits[split] = reason
        _logger.warning("The %s split of %s is left out: %s", split, self.layout.dataset, reason)

    def read_filenames(self, split: str, path: Path) -> None:
        lines = read_lines(path, self.problems, "asen_file_encoding") or []
        self.split_sizes[split] = len(lines)

        for index, line in enumerate(lines):
            image_path = line.strip()
            reason = check_relative_path(image_path)
            if reason is not None:
                reason = f"image index {index} has no usable path: {reason}"
                self.add_problem("asen_filename", "set_aside", path, index + 1, "path", image_path, reason)
                continue

            image_id = f"{split}/{index}"
            row = {ID_COLUMN: image_id, PATH_COLUMN: image_path, HASH_COLUMN: None, ROW_COLUMN: index + 1, SPLIT_COLUMN: split}
            row.update({attribute: [] for attribute in self.meta.attributes})
            self.rows[image_id] = row

    def read_protocol_file(self, split: str, role: str) -> None:
        path = self.layout.split_dir / f"{role}_{split}.txt"
        if not path.is_file():
            reason = f"file not found, so the {split} {role} list is incomplete; restore it from the split archive"
            self.add_problem("asen_missing_file", "stop", path, None, "", "", reason)
            return

        lines = read_lines(path, self.problems, "asen_file_encoding") or []
        for line_number, line in enumerate(lines, start=1):
            fields = self.parse_integer_fields(path, line_number, line, "stop", expected_count=PROTOCOL_FIELD_COUNT)
            if fields is None:
                continue

            image_index, attribute_index, value_index = fields
            checked = self.check_label(split, path, line_number, image_index, attribute_index, value_index, "stop")
            if checked is None:
                continue

            image_id, attribute = checked
            entry = {"split": split, "role": role, "image_id": image_id, "attribute": attribute}
            entry.update({"value_index": value_index, "line": line_number})
            self.protocol.append(entry)
            self.record_protocol_value(image_id, attribute, value_index, path, line_number)

    def read_label_file(self, split: str, path: Path) -> None:
        deepfashion_format = self.layout.dataset == "DeepFashion" and split in EVAL_SPLITS

        lines = read_lines(path, self.problems, "asen_file_encoding") or []
        for line_number, line in enumerate(lines, start=1):
            fields = self.parse_integer_fields(path, line_number, line, "set_aside", expected_count=None)
            if fields is None:
                continue

            image_index, pairs = fields[0], list(zip(fields[1::2], fields[2::2]))
            if deepfashion_format:
                self.collect_deepfashion_line(split, path, line_number, image_index, pairs)
                continue

            for attribute_index, value_index in pairs:
                checked = self.check_label(split, path, line_number, image_index, attribute_index, value_index, "set_aside")
                if checked is not None:
                    image_id, attribute = checked
                    self.add_value(image_id, attribute, self.meta.value_label(attribute, value_index))

    def parse_integer_fields(
        self, path: Path, line_number: int, line: str, action: Action, expected_count: int | None
    ) -> list[int] | None:
        """Return the line's whitespace-separated integers, or None after adding a problem.

        With ``expected_count`` None the line must be an index followed by pairs, so its field
        count must be odd. A blank line is reported as ``set_aside`` whatever ``action`` is,
        because it carries no entry.
        """
        text = line.strip()
        if not text:
            self.add_problem("asen_blank_line", "set_aside", path, line_number, "", "", "the line is blank and is skipped; remove it")
            return None

        tokens = text.split()
        if expected_count is not None and len(tokens) != expected_count:
            reason = f"the line has {len(tokens)} fields, expected {expected_count} (<image_index> <attribute_index> <value_index>)"
            self.add_problem("asen_malformed_line", action, path, line_number, "", text, reason)
            return None
        if expected_count is None and len(tokens) % 2 == 0:
            reason = f"the line has {len(tokens)} fields, expected an image index followed by pairs"
            self.add_problem("asen_malformed_line", action, path, line_number, "", text, reason)
            return None

        if not all(token.isascii() and token.isdigit() for token in tokens):
            self.add_problem("asen_malformed_line", action, path, line_number, "", text, "every field must be a non-negative integer")
            return None
        return [int(token) for token in tokens]

    def check_label(
        self, split: str, path: Path, line_number: int, image_index: int, attribute_index: int, value_index: int, action: Action
    ) -> tuple[str, str] | None:
        """Return ``(image_id, attribute)`` when the indices are in range, or None after adding a problem.

        When the split has no filenames file, the image index cannot be checked and None is
        returned after the attribute and value checks, because there is no image to label.
        """
        size = self.split_sizes.get(split)
        image_id = f"{split}/{image_index}"
        if size is not None and image_index >= size:
            reason = f"image index {image_index} is beyond filenames_{split}.txt, which lists {size} images (0..{size - 1})"
            self.add_problem("asen_image_index", action, path, line_number, "image_index", str(image_index), reason)
            return None
        if size is not None and image_id not in self.rows:
            reason = f"image index {image_index} has no usable path in filenames_{split}.txt (line {image_index + 1})"
            self.add_problem("asen_image_index", action, path, line_number, "image_index", str(image_index), reason, image_id)
            return None

        attribute_count = len(self.meta.attributes)
        if attribute_index >= attribute_count:
            reason = (
                f"attribute index {attribute_index} is out of range: "
                f"{self.layout.dataset} has {attribute_count} attributes (0..{attribute_count - 1})"
            )
            self.add_problem("asen_attribute_index", action, path, line_number, "attribute_index", str(attribute_index), reason, image_id)
            return None

        attribute = self.meta.attributes[attribute_index]
        value_count = self.meta.value_counts[attribute]
        if value_index >= value_count:
            reason = f"value index {value_index} is out of range: {attribute} has {value_count} values (0..{value_count - 1}) in meta.json"
            self.add_problem("asen_value_index", action, path, line_number, attribute, str(value_index), reason, image_id)
            return None

        if size is None:
            return None
        return image_id, attribute

    def record_protocol_value(self, image_id: str, attribute: str, value_index: int, path: Path, line_number: int) -> None:
        """Add a protocol value to the catalog, and report an image that the protocol gives two values for one attribute."""
        earlier = self.protocol_values.get((image_id, attribute))
        if earlier is None:
            self.protocol_values[(image_id, attribute)] = (value_index, path.name, line_number)
        elif earlier[0] != value_index:
            earlier_value, earlier_file, earlier_line = earlier
            reason = (
                f"{image_id} has value {value_index} for {attribute} here "
                f"but {earlier_value} on {earlier_file}:{earlier_line}; both are kept"
            )
            self.add_problem("asen_conflicting_value", "guard", path, line_number, attribute, str(value_index), reason, image_id)
        self.add_value(image_id, attribute, self.meta.value_label(attribute, value_index))

    def collect_deepfashion_line(
        self, split: str, path: Path, line_number: int, image_index: int, pairs: list[tuple[int, int]]
    ) -> None:
        size = self.split_sizes[split]
        image_id = f"{split}/{image_index}"
        if image_index >= size or image_id not in self.rows:
            reason = f"image index {image_index} has no image in filenames_{split}.txt, which lists {size} lines"
            self.add_problem("asen_image_index", "set_aside", path, line_number, "image_index", str(image_index), reason)
            return

        valid_pairs = []
        type_count = len(self.meta.attributes)
        for type_number, global_id in pairs:
            if not 1 <= type_number <= type_count:
                reason = f"attribute type {type_number} is out of range 1..{type_count}; the pair ({type_number}, {global_id}) is left out"
                self.add_problem("asen_deepfashion_type", "set_aside", path, line_number, "type", str(type_number), reason, image_id)
                continue
            valid_pairs.append((type_number, global_id))
        self.deepfashion_labels.append((image_id, path, line_number, valid_pairs))

    def apply_deepfashion_labels(self) -> None:
        """Map DeepFashion global ids to value indices (ranks within their type) and add them to the catalog."""
        ids_by_type: dict[int, set[int]] = defaultdict(set)
        for _, _, _, pairs in self.deepfashion_labels:
            for type_number, global_id in pairs:
                ids_by_type[type_number].add(global_id)

        ranks = self.deepfashion_ranks(ids_by_type)
        label_values: dict[tuple[str, str], set[int]] = defaultdict(set)
        for image_id, _, _, pairs in self.deepfashion_labels:
            for type_number, global_id in pairs:
                attribute = self.meta.attributes[type_number - 1]
                if attribute not in ranks:
                    continue
                rank = ranks[attribute][global_id]
                label_values[(image_id, attribute)].add(rank)
                self.add_value(image_id, attribute, self.meta.value_label(attribute, rank))

        self.check_protocol_against_labels(label_values, ranks)

    def deepfashion_ranks(self, ids_by_type: dict[int, set[int]]) -> dict[str, dict[int, int]]:
        """Return, per attribute, the rank of each global id among its type's sorted ids.

        A rank is only the published value index when every id of the type occurs in the label
        files, so a type whose distinct id count differs from ``ATTRIBUTES_NUM`` is reported and
        left out.
        """
        label_paths = sorted({path for _, path, _, _ in self.deepfashion_labels})
        file_names = ", ".join(path.name for path in label_paths)

        ranks = {}
        for type_number, attribute in enumerate(self.meta.attributes, start=1):
            ids = sorted(ids_by_type.get(type_number, ()))
            expected = self.meta.value_counts[attribute]
            if len(ids) != expected:
                reason = (
                    f"type {type_number} ({attribute}) has {len(ids)} distinct global ids in {file_names} "
                    f"but meta.json gives {expected} values, so global ids cannot be mapped to value indices "
                    f"and the labels of this type are left out"
                )
                self.add_problem("asen_deepfashion_rank", "stop", label_paths[0], None, attribute, str(len(ids)), reason)
                continue
            ranks[attribute] = {global_id: rank for rank, global_id in enumerate(ids)}
        return ranks

    def check_protocol_against_labels(
        self, label_values: dict[tuple[str, str], set[int]], ranks: dict[str, dict[int, int]]
    ) -> None:
        """Report protocol lines whose value index is not among the ranks the label file gives that image."""
        labelled_images = {image_id for image_id, _, _, _ in self.deepfashion_labels}
        for entry in self.protocol:
            image_id, attribute, value_index = entry["image_id"], entry["attribute"], entry["value_index"]
            if image_id not in labelled_images or attribute not in ranks:
                continue

            values = label_values.get((image_id, attribute), set())
            if value_index in values:
                continue
            path = self.layout.split_dir / f"{entry['role']}_{entry['split']}.txt"
            reason = (
                f"{image_id} has value index {value_index} for {attribute} here, but its label_{entry['split']}.txt "
                f"line gives {sorted(values) or 'no value'} for that type; the protocol value is kept"
            )
            self.add_problem("asen_label_mismatch", "guard", path, entry["line"], attribute, str(value_index), reason, image_id)

    def add_value(self, image_id: str, attribute: str, value: str) -> None:
        values = self.rows[image_id][attribute]
        if value not in values:
            values.append(value)

    def add_problem(
        self,
        check: str,
        action: Action,
        path: Path,
        line_number: int | None,
        column: str,
        value: str,
        reason: str,
        image_id: str = "",
    ) -> None:
        location = f"{path}:{line_number}" if line_number is not None else str(path)
        problem = Problem(check, action, f"{location}: {reason}.", str(path), line_number, image_id, column, value)
        self.problems.append(problem)

    def catalog_frame(self) -> pd.DataFrame:
        columns = [*BASE_COLUMNS, *self.meta.attributes, SPLIT_COLUMN]
        frame = pd.DataFrame.from_records(list(self.rows.values()), columns=columns)
        frame[ROW_COLUMN] = frame[ROW_COLUMN].astype("int64")
        return frame

    def protocol_frame(self) -> pd.DataFrame:
        frame = pd.DataFrame.from_records(self.protocol, columns=list(PROTOCOL_COLUMNS))
        frame["value_index"] = frame["value_index"].astype("int64")
        frame["line"] = frame["line"].astype("int64")
        return frame


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}. Restore it from the split archive.") from error
