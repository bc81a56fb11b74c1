"""Read the FashionAI attribute recognition challenge layout into a catalog.

FashionAI is the attribute dataset of the Alibaba Tianchi FashionAI Global Challenge 2018
(attribute recognition track, https://tianchi.aliyun.com/competition/entrance/231671/introduction).
Its images are licensed by Alibaba and are not part of this project: sign up on Tianchi,
download ``fashionAI_attributes_train1.zip`` and ``fashionAI_attributes_train2.zip`` and unpack
them. Each unpacked folder is one dataset root::

    <root>/Annotations/label.csv
    <root>/Images/<attribute>_labels/<md5>.jpg

``label.csv`` has no header, so its first row is line 1. Each row is
``Images/<attribute>_labels/<md5>.jpg,<attribute>_labels,<code>``, where ``<code>`` has one
letter per value of the attribute: ``y`` marks the value, ``n`` a value the image does not
have, ``m`` a value the annotators judged possible. Only the ``y`` position
is read, so every accepted row gives exactly one value. ``m`` positions are ignored, as in the
ASEN split files, which take the ``y`` position as the value index.

Value names come from a ``meta.json`` with ``ATTRIBUTES_VALUES``, as published with the ASEN
split files (github.com/Maryeon/asen, the ``data/fashionAI/meta.json`` of its early history).
Cite ASEN ("Fine-Grained Fashion Similarity Learning by Attribute-Specific Embedding
Network", AAAI 2020, github.com/Maryeon/asen) when you use those names. Without such a file
the values are the 0-based positions written as strings ("0", "1", ...).

The challenge lists one row per (image, attribute) pair, so an image labelled for several
attributes has several rows. The catalog has one row per image path with one list column per
attribute, and the image id is that path (``Images/<attribute>_labels/<md5>.jpg``). Rows
that cannot be read become :class:`Problem` records naming the file, the 1-based line and the
value. Missing image files never stop parsing: their ``content_hash`` is null, the catalog's
``missing_images`` entry counts them, and validation reports them.

Text files are read with universal newlines, like Python's ``open(path)``, so CRLF line ends
and stray carriage returns end a line. The helpers :func:`read_lines`, :func:`check_relative_path`
and :func:`hash_images` are shared with the ASEN split-file reader.
"""

import json
import logging
import posixpath
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from mclfir.data.catalog import BASE_COLUMNS, HASH_COLUMN, ID_COLUMN, PATH_COLUMN, ROW_COLUMN, Catalog, hash_file
from mclfir.data.problems import Problem

_logger = logging.getLogger(__name__)

SOURCE = "fashionai"
LABEL_FILE = Path("Annotations") / "label.csv"
META_FILENAME = "meta.json"
LABEL_SUFFIX = "_labels"
CODE_VALUE = "y"
CODE_LETTERS = frozenset("ynm")
FIELD_COUNT = 3

# Attributes of the challenge and the number of values of each (the length of their codes).
FASHIONAI_VALUE_COUNTS: dict[str, int] = {
    "skirt_length": 6,
    "sleeve_length": 9,
    "coat_length": 8,
    "pant_length": 6,
    "collar_design": 5,
    "lapel_design": 5,
    "neckline_design": 10,
    "neck_design": 5,
}


@dataclass(frozen=True)
class FashionAIMeta:
    """Attribute names, value counts and (when known) value names of FashionAI."""

    attributes: list[str]
    value_counts: dict[str, int]
    value_names: dict[str, list[str]]
    path: str = ""

    def value_label(self, attribute: str, index: int) -> str:
        """Return the name of value ``index`` of ``attribute``, or the index as a string."""
        names = self.value_names.get(attribute)
        if names is not None and 0 <= index < len(names):
            return names[index]
        return str(index)


def read_lines(path: Path, problems: list[Problem], check: str) -> list[str] | None:
    """Return the lines of a UTF-8 text file without line ends, or None when it cannot be read.

    Universal newlines apply, so ``\\r\\n``, ``\\n`` and a lone ``\\r`` each end a line, and the
    1-based line number of ``lines[i]`` is ``i + 1``. A file that is not valid UTF-8 adds a
    ``stop`` problem under ``check`` and returns None.
    """
    try:
        with path.open(encoding="utf-8", newline=None) as handle:
            return [line.rstrip("\n") for line in handle]
    except UnicodeDecodeError as error:
        problems.append(
            Problem(
                check=check,
                action="stop",
                message=f"{path} is not valid UTF-8 text ({error.reason} at byte {error.start}); re-save it as UTF-8.",
                file=str(path),
            )
        )
        return None


def check_relative_path(path: str) -> str | None:
    """Return why ``path`` may not be used as a path inside the dataset root, or None when it is fine."""
    if not path:
        return "the path is empty"
    if "\\" in path:
        return "the path contains a backslash; use forward slashes"
    if path.startswith("/"):
        return "the path is absolute"

    normalized = posixpath.normpath(path)
    if normalized == ".." or normalized.startswith("../"):
        return "the path leads outside the dataset root"
    return None


def hash_images(frame: pd.DataFrame, image_root: Path | None, description: str) -> int:
    """Fill ``content_hash`` for every row whose file exists under ``image_root``; return the missing count.

    Rows whose file is missing (or all rows, when ``image_root`` is None) keep a null hash, so
    validation can report them. The frame is changed in place.
    """
    hashes: list[str | None] = []
    for relative in tqdm(frame[PATH_COLUMN].tolist(), desc=description, unit="image", disable=image_root is None):
        image_path = None if image_root is None else image_root / relative
        hashes.append(hash_file(image_path) if image_path is not None and image_path.is_file() else None)

    frame[HASH_COLUMN] = pd.Series(hashes, index=frame.index, dtype=object)
    return sum(value is None for value in hashes)


def find_meta(root: Path, meta_path: Path | None = None) -> Path | None:
    """Return the FashionAI ``meta.json`` to use: ``meta_path``, ``<root>/meta.json`` or ``<root>/../meta.json``."""
    if meta_path is not None:
        if not Path(meta_path).is_file():
            raise FileNotFoundError(f"FashionAI meta file not found: {meta_path}. Pass the path of a meta.json with ATTRIBUTES_VALUES.")
        return Path(meta_path)

    for candidate in (root / META_FILENAME, root.parent / META_FILENAME):
        if candidate.is_file():
            return candidate
    return None


def load_meta(meta_path: Path | None) -> FashionAIMeta:
    """Load FashionAI attribute names, value counts and value names from a ``meta.json``.

    Accepts the flat ASEN format (``ATTRIBUTES``, ``ATTRIBUTES_NUM``, ``ATTRIBUTES_VALUES``) and
    the ASEN++ format keyed by dataset (``{"FashionAI": {...}}``). Without a file, the challenge's
    eight attributes and value counts are used, with no value names.
    """
    if meta_path is None:
        return FashionAIMeta(list(FASHIONAI_VALUE_COUNTS), dict(FASHIONAI_VALUE_COUNTS), {})

    content = json.loads(Path(meta_path).read_text(encoding="utf-8"))
    if "ATTRIBUTES" not in content and "FashionAI" in content:
        content = content["FashionAI"]
    if "ATTRIBUTES" not in content or "ATTRIBUTES_NUM" not in content:
        raise ValueError(f"{meta_path} has no ATTRIBUTES and ATTRIBUTES_NUM entries; it is not a FashionAI meta.json.")

    attributes = [str(name) for name in content["ATTRIBUTES"]]
    value_counts = {str(name): int(count) for name, count in content["ATTRIBUTES_NUM"].items()}
    value_names = {str(name): [str(value) for value in values] for name, values in content.get("ATTRIBUTES_VALUES", {}).items()}

    for name, names in value_names.items():
        if name in value_counts and len(names) != value_counts[name]:
            raise ValueError(
                f"{meta_path}: attribute {name!r} has {len(names)} names in ATTRIBUTES_VALUES "
                f"but ATTRIBUTES_NUM gives {value_counts[name]}; fix the file so both agree."
            )
    return FashionAIMeta(attributes, value_counts, value_names, str(meta_path))


def decode_code(code: str) -> tuple[int | None, str]:
    """Return the position of the single ``y`` in a label code, or None and the reason it is invalid."""
    invalid = sorted(set(code) - CODE_LETTERS)
    if invalid:
        return None, f"the code contains {''.join(invalid)!r}; only 'y', 'n' and 'm' are allowed"

    positions = [index for index, letter in enumerate(code) if letter == CODE_VALUE]
    if not positions:
        return None, "the code has no 'y', so no value is marked"
    if len(positions) > 1:
        return None, f"the code has {len(positions)} 'y' letters (positions {positions}); exactly one value must be marked"
    return positions[0], ""


def read_fashionai(root: Path, meta_path: Path | None = None) -> tuple[Catalog, list[Problem]]:
    """Read ``<root>/Annotations/label.csv`` into a catalog with one row per image path.

    ``meta_path`` names a ``meta.json`` with value names. Without it, ``<root>/meta.json`` and
    then ``<root>/../meta.json`` are tried. Image files are hashed when present and left with a
    null hash when missing. Raises FileNotFoundError when ``label.csv`` is missing.
    """
    root = Path(root)
    label_path = root / LABEL_FILE
    if not label_path.is_file():
        raise FileNotFoundError(
            f"FashionAI label file not found: {label_path}. Point the root at an unpacked "
            f"fashionAI_attributes_train folder, the one holding Annotations/ and Images/."
        )

    found_meta = find_meta(root, meta_path)
    meta = load_meta(found_meta)
    _logger.info("Reading %s with value names from %s", label_path, found_meta or "nowhere (values are indices)")

    problems: list[Problem] = []
    lines = read_lines(label_path, problems, "fashionai_label_file")
    records = _parse_label_rows(lines or [], label_path, meta, problems)

    frame = _build_frame(records, meta.attributes)
    missing = hash_images(frame, root, description=f"hash {root.name} images")
    if missing:
        _logger.warning("%d of %d images listed in %s are missing under %s", missing, len(frame), label_path, root)

    extra = {"missing_images": missing, "meta": meta.path}
    catalog = Catalog(frame, list(meta.attributes), SOURCE, str(root), extra)
    _logger.info("Read %d images from %s with %d problems", len(frame), label_path, len(problems))
    return catalog, problems


def _parse_label_rows(lines: list[str], label_path: Path, meta: FashionAIMeta, problems: list[Problem]) -> dict[str, dict]:
    """Return one record per image path, keyed by path, and add a problem for each unusable row."""
    records: dict[str, dict] = {}
    label_lines: dict[tuple[str, str], int] = {}

    for line_number, line in enumerate(lines, start=1):
        if not line.strip():
            continue

        parsed = _parse_label_row(line, line_number, label_path, meta, problems)
        if parsed is None:
            continue
        path, attribute, code, value = parsed

        first_line = label_lines.get((path, attribute))
        if first_line is not None:
            problems.append(
                _row_problem(
                    "fashionai_duplicate_label", label_path, line_number, attribute, code,
                    f"{path} is labelled for {attribute} again (first on line {first_line}); "
                    f"only the first row is kept, so remove the repeated row",
                    image_id=path,
                )
            )
            continue
        label_lines[(path, attribute)] = line_number

        record = records.setdefault(path, {ID_COLUMN: path, PATH_COLUMN: path, ROW_COLUMN: line_number})
        record[attribute] = [value]

    return records


def _parse_label_row(
    line: str, line_number: int, label_path: Path, meta: FashionAIMeta, problems: list[Problem]
) -> tuple[str, str, str, str] | None:
    """Return ``(path, attribute, code, value)`` for one ``label.csv`` row, or None after adding its problem."""
    fields = [field.strip() for field in line.split(",")]
    if len(fields) != FIELD_COUNT:
        problems.append(
            _row_problem(
                "fashionai_field_count", label_path, line_number, "", line.strip(),
                f"the row has {len(fields)} comma-separated fields, expected {FIELD_COUNT} "
                f"(Images/<attribute>_labels/<md5>.jpg,<attribute>_labels,<code>)",
            )
        )
        return None
    path, attribute_field, code = fields

    path_error = check_relative_path(path)
    if path_error is not None:
        reason = f"{path_error}; use a path relative to the dataset root"
        problems.append(_row_problem("fashionai_path", label_path, line_number, "path", path, reason))
        return None
    path = posixpath.normpath(path)

    attribute = attribute_field.removesuffix(LABEL_SUFFIX)
    if attribute not in meta.value_counts or attribute not in meta.attributes:
        problems.append(
            _row_problem(
                "fashionai_unknown_attribute", label_path, line_number, "attribute", attribute_field,
                f"unknown attribute; known attributes are {', '.join(name + LABEL_SUFFIX for name in meta.attributes)}",
                image_id=path,
            )
        )
        return None

    expected_length = meta.value_counts[attribute]
    if len(code) != expected_length:
        problems.append(
            _row_problem(
                "fashionai_code_length", label_path, line_number, attribute, code,
                f"the code has {len(code)} letters but {attribute} has {expected_length} values",
                image_id=path,
            )
        )
        return None

    index, reason = decode_code(code)
    if index is None:
        problems.append(_row_problem("fashionai_code", label_path, line_number, attribute, code, reason, image_id=path))
        return None
    return path, attribute, code, meta.value_label(attribute, index)


def _row_problem(
    check: str, label_path: Path, line_number: int, column: str, value: str, reason: str, image_id: str = ""
) -> Problem:
    return Problem(
        check=check,
        action="set_aside",
        message=f"{label_path}:{line_number}: {reason}. The row is left out.",
        file=str(label_path),
        row=line_number,
        image_id=image_id,
        column=column,
        value=value,
    )


def _build_frame(records: dict[str, dict], attributes: list[str]) -> pd.DataFrame:
    rows = []
    for record in records.values():
        row = {name: record.get(name) for name in (ID_COLUMN, PATH_COLUMN, ROW_COLUMN)}
        row[HASH_COLUMN] = None
        for attribute in attributes:
            row[attribute] = list(record.get(attribute, []))
        rows.append(row)

    frame = pd.DataFrame.from_records(rows, columns=[*BASE_COLUMNS, *attributes])
    frame[ROW_COLUMN] = frame[ROW_COLUMN].astype("int64")
    return frame
