"""Extra attributes from label files: one CSV file per attribute, kept in ``data/labels``.

A user adds attributes that the dataset lacks (a pattern, a neckline) with
``mclfir data add-attributes LABELS.csv``, which checks the file (:func:`add_attributes`) and
writes one label file per attribute::

    data/labels/<attribute>.csv    header ``image_id,<attribute>``, one row per labelled image, UTF-8

An image without a row, or with an empty value, has no label for that attribute.
``mclfir data prepare --labels data/labels`` adds each file to the catalog as one more
attribute column (:func:`merge_label_files`).

An attribute name starts with an ASCII letter and contains only ASCII letters, digits, ``_``
and ``-``, so that it is a valid file name and column name everywhere. It is at most 64
characters long and is not a device name that Windows reserves (``CON``, ``NUL``, ``COM1`` and
the like). Names that differ only in letter case are rejected, because they would name the same
file on case-insensitive file systems (macOS, Windows). Surrounding whitespace is stripped from
ids and values.
"""

import csv
import io
import logging
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from mclfir import paths
from mclfir.data.catalog import BASE_COLUMNS, ID_COLUMN, ROW_COLUMN, Catalog, hash_file, read_catalog
from mclfir.data.csv_lines import LineCounter
from mclfir.data.problems import Problem

_logger = logging.getLogger(__name__)

DEFAULT_LABELS_DIR = "data/labels"
DEFAULT_CATALOG = "data/catalog/catalog.parquet"
# Accepted names of the first column of a user's labels file: the id column of Fashion
# Product Images' styles.csv, or the catalog's name for it.
LABELS_ID_COLUMNS = ("id", ID_COLUMN)
# Catalog metadata key listing the label files merged into the catalog.
LABEL_FILES_KEY = "label_files"

_ATTRIBUTE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
_NAME_RULE = "an attribute name starts with a letter and contains only letters, digits, _ and -"
_RESERVED_NAMES = frozenset(name.lower() for name in (*BASE_COLUMNS, *LABELS_ID_COLUMNS))
# A chosen bound, well below the 255-character file-name limit of common file systems, because an
# attribute name becomes part of file names (data/labels/<name>.csv, <name>.parquet) and MLflow keys.
MAX_ATTRIBUTE_NAME_LENGTH = 64
# Device names that Windows reserves as file names, also with an extension and in any letter case.
_WINDOWS_DEVICE_NAMES = frozenset(
    ["con", "prn", "aux", "nul", *(f"com{digit}" for digit in range(10)), *(f"lpt{digit}" for digit in range(10))]
)
_OTHER_SEPARATORS = {";": "semicolons", "\t": "tabs", "|": "vertical bars"}
_QUOTING_HINT = "A value that contains a comma, a double quote or a line break must be in double quotes, with inner quotes doubled."


@dataclass(frozen=True)
class _Record:
    """One CSV record: the line it starts on (the header is line 1), its stripped fields and its raw text."""

    line: int
    fields: list[str]
    raw: str


@dataclass
class LabelsTable:
    """A checked labels file: the attribute names, and one row per image with columns image_id, source_row (its line) and one per attribute."""

    path: Path
    attributes: list[str]
    frame: pd.DataFrame


def label_file_path(labels_dir: Path, attribute: str) -> Path:
    """Return the path of the label file of ``attribute`` in ``labels_dir``."""
    return Path(labels_dir) / f"{attribute}.csv"


def display_path(path: Path) -> str:
    """Return ``path`` relative to the project root when it lies inside it, else as given (POSIX)."""
    path = Path(path)
    try:
        return path.resolve().relative_to(paths.project_root()).as_posix()
    except ValueError:
        return path.as_posix()


# --- Reading a user's labels file -------------------------------------------------------------


def read_labels_file(path: Path) -> LabelsTable:
    """Read and check a user's labels file: ``id`` or ``image_id`` first, then one column per new attribute.

    Raises FileNotFoundError when the file does not exist, and ValueError naming the file, the
    row and the value for any other defect.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Labels file not found: {path}")

    header, records = _read_records(path)
    if header is None:
        raise ValueError(f"{path}: the file is empty. Its first line must be the header, for example `id,pattern`.")
    attributes = _check_header(header, path)

    rows = [record for record in records if any(record.fields)]
    if not rows:
        raise ValueError(f"{path}: no label rows after the header. Add one row per image: its id, then its values.")
    for record in rows:
        _check_field_count(record, len(header.fields), path)
    _check_ids(rows, path)

    frame = pd.DataFrame(
        [[record.fields[0], record.line, *record.fields[1:]] for record in rows],
        columns=[ID_COLUMN, ROW_COLUMN, *attributes],
    )
    _check_every_attribute_has_values(frame, attributes, path)
    return LabelsTable(path, attributes, frame)


def _read_records(path: Path) -> tuple[_Record | None, list[_Record]]:
    """Return the header record and the data records of a UTF-8 CSV file, or raise ValueError when it cannot be parsed."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise ValueError(
            f"{path}:{line}: invalid UTF-8 bytes {data[error.start:error.end]!r}. "
            "Save the file as UTF-8 (\"CSV UTF-8\" in spreadsheet programs) and run again."
        ) from None

    lines = LineCounter(io.StringIO(text, newline=""))
    reader = csv.reader(lines, strict=True)
    records: list[_Record] = []
    while True:
        first_line = lines.count + 1
        lines.consumed.clear()
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as error:
            raw = "".join(lines.consumed).rstrip("\r\n")
            raise ValueError(f"{path}:{first_line}: invalid CSV ({error}) in {raw!r}. {_QUOTING_HINT}") from None
        records.append(_Record(first_line, [field.strip() for field in fields], "".join(lines.consumed).rstrip("\r\n")))

    if not records:
        return None, []
    return records[0], records[1:]


def _check_header(header: _Record, path: Path) -> list[str]:
    """Return the attribute names of a labels file's header, or raise ValueError naming the bad column."""
    _check_separator(header, path)
    names = header.fields
    if not names or names[0] not in LABELS_ID_COLUMNS:
        first = names[0] if names else ""
        raise ValueError(
            f"{path}:1: the first column is {first!r}, but it must be the image id column, named id or image_id "
            "(the id of Fashion Product Images). Put the id column first and name it id."
        )
    if len(names) < 2:
        raise ValueError(f"{path}:1: no attribute column after {names[0]!r}. Add one column per new attribute, for example `id,pattern`.")

    attributes = names[1:]
    for name in attributes:
        check_attribute_name(name, f"{path}:1")
    _check_unique_names(attributes, path)
    return attributes


def _check_separator(header: _Record, path: Path) -> None:
    """Raise ValueError when the header is a single column that contains a semicolon, a tab or a vertical bar.

    Spreadsheet programs in some locales export CSV with one of those separators instead of commas.
    """
    if len(header.fields) != 1:
        return

    for separator, plural in _OTHER_SEPARATORS.items():
        if separator in header.fields[0]:
            raise ValueError(
                f"{path}:1: the header {header.raw!r} has one column with {plural} in it. A labels file separates "
                "columns with commas. Export it again as comma-separated CSV (\"CSV UTF-8 (comma delimited)\" in "
                "spreadsheet programs)."
            )


def check_attribute_name(name: str, location: str) -> None:
    """Raise ValueError, with ``location`` before the message, when ``name`` is not a valid attribute name."""
    if not _ATTRIBUTE_NAME.fullmatch(name):
        raise ValueError(f"{location}: invalid attribute name {name!r}: {_NAME_RULE}. Rename the column.")
    if len(name) > MAX_ATTRIBUTE_NAME_LENGTH:
        raise ValueError(
            f"{location}: invalid attribute name {name[:20]!r}...: it is {len(name)} characters long, and the maximum "
            f"is {MAX_ATTRIBUTE_NAME_LENGTH} because the name becomes part of file names. Rename the column."
        )
    if name.lower() in _RESERVED_NAMES:
        raise ValueError(f"{location}: attribute name {name!r} is reserved for a catalog column. Rename the column.")
    if name.lower() in _WINDOWS_DEVICE_NAMES:
        raise ValueError(
            f"{location}: attribute name {name!r} is a device name that Windows does not allow as a file name. "
            f"Rename the column, for example to {name}_label."
        )


def _check_unique_names(attributes: list[str], path: Path) -> None:
    seen: dict[str, int] = {}
    for position, name in enumerate(attributes, start=2):
        key = name.lower()
        if key in seen:
            raise ValueError(
                f"{path}:1: column {position} {name!r} repeats the name of column {seen[key]}. "
                "Names that differ only in letter case count as the same. Rename or merge the columns."
            )
        seen[key] = position


def _check_field_count(record: _Record, expected: int, path: Path) -> None:
    if len(record.fields) != expected:
        raise ValueError(
            f"{path}:{record.line}: the row has {len(record.fields)} values but the header has {expected} columns: {record.raw!r}. "
            f"Fix the row. {_QUOTING_HINT}"
        )


def _check_ids(rows: list[_Record], path: Path) -> None:
    """Raise ValueError on the first empty or repeated image id."""
    first_lines: dict[str, int] = {}
    for record in rows:
        image_id = record.fields[0]
        if not image_id:
            raise ValueError(f"{path}:{record.line}: empty image id in {record.raw!r}. Fill in the id or delete the row.")
        if image_id in first_lines:
            raise ValueError(
                f"{path}:{record.line}: image id {image_id!r} repeats row {first_lines[image_id]}. "
                "Keep one row per image, with all its values."
            )
        first_lines[image_id] = record.line


def _check_every_attribute_has_values(frame: pd.DataFrame, attributes: list[str], path: Path) -> None:
    for name in attributes:
        if frame[name].eq("").all():
            raise ValueError(f"{path}:1: column {name!r} has no values. Fill it in or remove the column.")


# --- Adding attributes to the label folder ------------------------------------------------------


def add_attributes(labels_csv: Path, labels_dir: Path, catalog_path: Path | None = None, replace: bool = False) -> list[str]:
    """Check a user's labels file, write one label file per attribute into ``labels_dir``, and return the attribute names.

    The names are checked against the label files already in ``labels_dir`` (overwritten only
    with ``replace``) and, when a catalog is given or ``data/catalog/catalog.parquet`` exists,
    against the catalog's attributes and columns and its image ids. An attribute that the
    catalog got from a label file may be replaced. Nothing is written when a check fails
    (ValueError). A relative ``labels_dir`` or ``catalog_path`` is taken from the project root.
    """
    table = read_labels_file(labels_csv)
    labels_dir = paths.resolve(labels_dir)
    catalog_path = paths.resolve(catalog_path) if catalog_path is not None else _default_catalog_path()
    catalog = read_catalog(catalog_path) if catalog_path is not None else None

    _check_against_label_files(table, labels_dir, replace)
    if catalog is not None:
        _check_against_catalog(table, catalog, catalog_path, replace)
        _check_ids_in_catalog(table, catalog, catalog_path)

    _write_label_files(table, labels_dir)
    return table.attributes


def _default_catalog_path() -> Path | None:
    path = paths.resolve(DEFAULT_CATALOG)
    if not path.is_file():
        _logger.info("No catalog at %s, so the image ids are not checked", path)
        return None
    return path


def _check_against_label_files(table: LabelsTable, labels_dir: Path, replace: bool) -> None:
    existing = {path.stem.lower(): path for path in labels_dir.glob("*.csv")} if labels_dir.is_dir() else {}
    for name in table.attributes:
        found = existing.get(name.lower())
        if found is None:
            continue
        if found.stem != name:
            raise ValueError(
                f"{table.path}:1: attribute {name!r} differs only in letter case from the label file {found}. "
                f"Use the name {found.stem!r}, or choose another name."
            )
        if not replace:
            raise ValueError(
                f"{table.path}:1: attribute {name!r} already has the label file {found}. "
                "Pass --replace to overwrite it, or rename the column."
            )


def _check_against_catalog(table: LabelsTable, catalog: Catalog, catalog_path: Path, replace: bool) -> None:
    from_labels = {name.lower() for name in merged_attributes(catalog)}
    columns = {str(column).lower(): str(column) for column in catalog.frame.columns}
    for name in table.attributes:
        key = name.lower()
        if key not in columns:
            continue
        if key in from_labels:
            if replace:
                continue
            raise ValueError(
                f"{table.path}:1: attribute {name!r} is already in the catalog {catalog_path}, from a label file. "
                "Pass --replace to overwrite its labels, or rename the column."
            )
        raise ValueError(
            f"{table.path}:1: attribute {name!r} is already the column {columns[key]!r} of the catalog {catalog_path}. "
            "Choose another name for the new attribute."
        )


def _check_ids_in_catalog(table: LabelsTable, catalog: Catalog, catalog_path: Path) -> None:
    known = set(catalog.frame[ID_COLUMN].astype(str))
    unknown = table.frame[~table.frame[ID_COLUMN].isin(known)]
    if unknown.empty:
        return

    first = unknown.iloc[0]
    subsample = catalog.extra.get("max_images")
    subsample_hint = (
        f" The catalog is a subsample (--max-images {subsample}), so pass --catalog with a catalog of every image."
        if subsample else ""
    )
    raise ValueError(
        f"{table.path}:{first[ROW_COLUMN]}: image id {first[ID_COLUMN]!r} is not in the catalog {catalog_path}. "
        f"{len(unknown)} of {len(table.frame)} ids are unknown. Check that the first column contains the image id "
        f"(the id column of styles.csv).{subsample_hint}"
    )


def _write_label_files(table: LabelsTable, labels_dir: Path) -> list[Path]:
    """Write every attribute's label file, each to a temporary file first, then swap them all in."""
    labels_dir.mkdir(parents=True, exist_ok=True)
    staged: list[tuple[Path, Path]] = []
    try:
        for name in table.attributes:
            staged.append((_write_temporary(table, name, labels_dir), label_file_path(labels_dir, name)))
    except BaseException:
        for temporary, _ in staged:
            temporary.unlink(missing_ok=True)
        raise

    for temporary, target in staged:
        os.replace(temporary, target)
        _logger.info("Wrote %s", target)
    return [target for _, target in staged]


def _write_temporary(table: LabelsTable, attribute: str, labels_dir: Path) -> Path:
    labelled = table.frame.loc[table.frame[attribute] != "", [ID_COLUMN, attribute]]
    rows = sorted(labelled.itertuples(index=False, name=None), key=lambda row: _id_sort_key(row[0]))

    # The temporary name does not end in .csv, so a leftover is never merged as a label file.
    handle = tempfile.NamedTemporaryFile("w", encoding="utf-8", newline="", dir=labels_dir, prefix=f".{attribute}.", suffix=".tmp", delete=False)
    with handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow([ID_COLUMN, attribute])
        writer.writerows(rows)
    return Path(handle.name)


def _id_sort_key(image_id: str) -> tuple[int, int, str]:
    """Sort numeric ids by number, before other ids, which sort as text."""
    if image_id.isascii() and image_id.isdigit():
        return (0, int(image_id), "")
    return (1, 0, image_id)


# --- Merging label files into a catalog ---------------------------------------------------------


def merged_attributes(catalog: Catalog) -> list[str]:
    """Return the attributes that the catalog got from label files."""
    return [entry["attribute"] for entry in catalog.extra.get(LABEL_FILES_KEY, [])]


def merge_label_files(catalog: Catalog, labels_dir: Path) -> tuple[Catalog, list[Problem]]:
    """Add one attribute column per ``*.csv`` file in ``labels_dir`` (in name order), and return the problems found.

    An image gets a list of one value from the file, or an empty list when the file has no
    value for it. Problems: a file whose name, header or rows cannot be used, an attribute that
    is already a catalog column, and a repeated image id stop the pipeline, and that file is
    not merged. A row whose image id is not in the catalog is set aside. When ``labels_dir`` is
    missing or contains no ``*.csv`` file, the same catalog object is returned, without new metadata.
    """
    labels_dir = Path(labels_dir)
    files = sorted(labels_dir.glob("*.csv"), key=lambda path: path.name) if labels_dir.is_dir() else []
    if not files:
        _logger.info("No label files in %s, so the catalog keeps its %d attributes", labels_dir, len(catalog.attributes))
        return catalog, []

    frame = catalog.frame.copy()
    attributes = list(catalog.attributes)
    merged: list[dict[str, Any]] = []
    problems: list[Problem] = []
    for path in files:
        values, file_problems = _read_label_file(path, frame)
        problems += file_problems
        if values is None:
            continue
        frame[path.stem] = values
        attributes.append(path.stem)
        merged.append({"attribute": path.stem, "file": display_path(path), "sha256": hash_file(path), "labelled_images": int(values.map(len).sum())})
        _logger.info("Merged %s: %d of %d images labelled", path, merged[-1]["labelled_images"], len(frame))

    extra = dict(catalog.extra)
    if merged:
        extra[LABEL_FILES_KEY] = merged
    return Catalog(frame, attributes, catalog.source, catalog.root, extra), problems


def _read_label_file(path: Path, frame: pd.DataFrame) -> tuple[pd.Series | None, list[Problem]]:
    """Return the value lists of one label file, aligned with ``frame``, or None when a stop problem prevents the merge."""
    displayed_path = display_path(path)
    attribute = path.stem
    try:
        check_attribute_name(attribute, displayed_path)
        _check_new_column(attribute, frame, displayed_path)
        header, records = _read_records(path)
    except ValueError as error:
        return None, [Problem("label_file_invalid", "stop", str(error), file=displayed_path, value=attribute)]

    expected = [ID_COLUMN, attribute]
    if header is None or header.fields != expected:
        found = header.raw if header is not None else ""
        message = f"{displayed_path}:1: the header is {found!r}, expected {','.join(expected)!r}. Rewrite the file with `mclfir data add-attributes`."
        return None, [Problem("label_file_header", "stop", message, file=displayed_path, row=1, value=found)]

    labels, problems = _collect_labels(records, attribute, frame, displayed_path)
    if any(problem.action == "stop" for problem in problems):
        return None, problems

    values = frame[ID_COLUMN].astype(str).map(lambda image_id: [labels[image_id]] if labels.get(image_id) else [])
    return values, problems


def _check_new_column(attribute: str, frame: pd.DataFrame, displayed_path: str) -> None:
    for column in frame.columns:
        if str(column).lower() == attribute.lower():
            raise ValueError(
                f"{displayed_path}: attribute {attribute!r} is already the catalog column {column!r}. "
                "Rename the label file and its header, or remove it."
            )


def _collect_labels(records: list[_Record], attribute: str, frame: pd.DataFrame, displayed_path: str) -> tuple[dict[str, str], list[Problem]]:
    """Return image id -> value for the usable rows of a label file, and a problem for every other row."""
    known = set(frame[ID_COLUMN].astype(str))
    labels: dict[str, str] = {}
    first_lines: dict[str, int] = {}
    problems: list[Problem] = []
    for record in records:
        if not any(record.fields):
            continue
        if len(record.fields) != 2:
            message = f"{displayed_path}:{record.line}: the row has {len(record.fields)} values, expected 2 (image id and {attribute}). {_QUOTING_HINT}"
            problems.append(Problem("label_row_invalid", "stop", message, file=displayed_path, row=record.line, column=attribute, value=record.raw))
            continue

        image_id, value = record.fields
        if image_id in first_lines:
            message = f"Image id {image_id!r} repeats row {first_lines[image_id]} of {displayed_path}. Keep one row per image."
            problems.append(Problem("label_image_repeated", "stop", message, file=displayed_path, row=record.line, image_id=image_id, column=attribute, value=value))
            continue
        first_lines[image_id] = record.line

        if image_id not in known:
            message = f"Image id {image_id!r} is not in the catalog, so its {attribute} label is left out. Check the id column of {displayed_path}."
            problems.append(Problem("label_image_unknown", "set_aside", message, file=displayed_path, row=record.line, image_id=image_id, column=attribute, value=value))
            continue
        labels[image_id] = value
    return labels, problems
