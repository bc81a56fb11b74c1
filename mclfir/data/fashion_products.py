"""Adapter for Fashion Product Images: reads ``styles.csv`` and ``images/<id>.jpg`` into a catalog.

Users download the dataset from Kaggle, either the 60x80 px version
``paramaggarwal/fashion-product-images-small``
(https://www.kaggle.com/datasets/paramaggarwal/fashion-product-images-small) or the full-size
``paramaggarwal/fashion-product-images-dataset``
(https://www.kaggle.com/datasets/paramaggarwal/fashion-product-images-dataset). Both are
published under the MIT license according to their public mirrors. The photos come from the
Myntra catalogue.

Layout::

    <root>/styles.csv       id,gender,masterCategory,subCategory,articleType,baseColour,season,year,usage,productDisplayName
    <root>/images/<id>.jpg  one photo per product id; some rows have no photo

The retrieval attributes are ``gender``, ``masterCategory``, ``subCategory``, ``articleType``,
``baseColour``, ``season`` and ``usage``. ``year`` is left out of the catalog.
``productDisplayName`` is kept as a plain string column (not an attribute) so that retrieval
results can be shown with a readable name.

Values are kept as found, with empty strings and the literal ``NA`` included, because validation
reports them. This module only reads and hashes. Missing or undecodable image files are left to
validation, which sets them aside, so a missing file only gets a null ``content_hash`` here.

Kaggle's ``styles.csv`` has rows with unquoted commas inside ``productDisplayName``, so those rows
have more fields than the header. See :func:`read_styles` for when such a row is recovered.
Recovered rows are listed in the catalog metadata under ``recovered_rows`` (1-based line numbers).
"""

import csv
import io
import logging
import posixpath
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from mclfir.data.catalog import HASH_COLUMN, ID_COLUMN, PATH_COLUMN, ROW_COLUMN, Catalog, hash_file
from mclfir.data.csv_lines import LineCounter
from mclfir.data.problems import Problem

_logger = logging.getLogger(__name__)

SOURCE = "fashion-products"
STYLES_FILE = "styles.csv"
IMAGES_DIR = "images"
CSV_ID_COLUMN = "id"
YEAR_COLUMN = "year"
NAME_COLUMN = "productDisplayName"
ATTRIBUTES = ("gender", "masterCategory", "subCategory", "articleType", "baseColour", "season", "usage")
REQUIRED_COLUMNS = (CSV_ID_COLUMN, *ATTRIBUTES)
RECOVERED_ROWS_KEY = "recovered_rows"

_DIGITS = re.compile(r"[0-9]+")
_YEAR = re.compile(r"[0-9]{4}")
# Bytes that are not UTF-8 decode to these lone surrogates under errors="surrogateescape".
_NOT_UTF8 = re.compile("[\udc80-\udcff]")
_FIX_ROW_HINT = "Quote the fields that contain commas in styles.csv, or download a fresh copy of the dataset."


@dataclass(frozen=True)
class _Record:
    """One parsed CSV record: its first line number, its fields, its raw text and any parser error."""

    line: int
    fields: list[str]
    raw: str
    error: str = ""


def read_fashion_products(root: Path) -> tuple[Catalog | None, list[Problem]]:
    """Read the dataset at ``root`` into a catalog, and return it with every problem found.

    The catalog is None when ``styles.csv`` lacks a required column, and a ``stop`` problem then
    names the missing and the present columns. Raises FileNotFoundError when ``root``,
    ``styles.csv`` or ``images/`` does not exist.
    """
    root = Path(root)
    styles_path = _check_layout(root)

    rows, recovered_lines, problems = read_styles(styles_path)
    if rows is None:
        return None, problems

    frame = _build_frame(rows)
    outside_root = _find_paths_outside_root(frame)
    problems += [_outside_root_problem(frame.loc[index]) for index in frame.index[outside_root]]
    problems += _find_duplicate_ids(frame)

    frame[HASH_COLUMN] = _hash_images(root, frame[PATH_COLUMN], skip=outside_root)

    _logger.info(
        "Read %d rows from %s: %d with an image file, %d recovered, %d problems",
        len(frame), styles_path, frame[HASH_COLUMN].notna().sum(), len(recovered_lines), len(problems),
    )
    catalog = Catalog(frame, list(ATTRIBUTES), SOURCE, str(root), extra={RECOVERED_ROWS_KEY: recovered_lines})
    return catalog, problems


def read_styles(path: Path) -> tuple[pd.DataFrame | None, list[int], list[Problem]]:
    """Parse ``styles.csv`` into a table of strings, and return it with recovered lines and problems.

    The table has a ``source_row`` column (the 1-based line where the record starts, header =
    line 1) and one string column per header column. It is None when a required column is
    missing or a column name repeats. Blank lines are skipped.

    A record with more fields than the header is recovered by joining its extra fields, with
    commas, back into ``productDisplayName`` when all of these hold:

    - ``productDisplayName`` is the header's last column, so it is the only free-text field that
      an unquoted comma can have split;
    - the id is digits only and the year is four digits or empty;
    - each attribute field contains a value that records with the right field count also have in
      that column.

    A comma inside any other field would shift the fields after it out of place, and one of these
    checks would fail. Records that fail, records with too few fields and records with bytes that
    are not UTF-8 are set aside as ``csv_row_unrecoverable``. Records with an empty id are set
    aside as ``id_missing``.
    """
    file_name = path.name
    header_line, records = _parse_records(_read_text(path))
    header = header_line.fields if header_line else []

    problems = _check_header(header, file_name)
    if problems:
        return None, [], problems

    vocabulary = _build_vocabulary(header, records)
    rows: list[list[str]] = []
    recovered_lines: list[int] = []
    for record in records:
        fields, problem = _fit_record(record, header, vocabulary, file_name)
        if problem is not None:
            problems.append(problem)
            continue
        if len(record.fields) != len(header):
            recovered_lines.append(record.line)
            _logger.info("Recovered %s:%d: joined %d extra fields into %s", file_name, record.line, len(record.fields) - len(header), NAME_COLUMN)
        rows.append([record.line, *fields])

    table = pd.DataFrame(rows, columns=[ROW_COLUMN, *header])
    table[ROW_COLUMN] = table[ROW_COLUMN].astype("int64")
    return table, recovered_lines, problems


def _check_layout(root: Path) -> Path:
    """Return the path of ``styles.csv``, or raise FileNotFoundError naming what is missing."""
    hint = (
        "Point --root (or MCLFIR_DATA_ROOT) at the Fashion Product Images folder that holds styles.csv "
        "and images/, or run `mclfir data import`."
    )
    if not root.is_dir():
        raise FileNotFoundError(f"Dataset root not found: {root}. {hint}")

    styles_path = root / STYLES_FILE
    if not styles_path.is_file():
        raise FileNotFoundError(f"{STYLES_FILE} not found in {root}. {hint}")

    if not (root / IMAGES_DIR).is_dir():
        raise FileNotFoundError(f"Image folder not found: {root / IMAGES_DIR}. {hint}")
    return styles_path


def _read_text(path: Path) -> str:
    """Return the file's text. Bytes that are not UTF-8 become lone surrogates, found per row later."""
    return path.read_bytes().decode("utf-8-sig", errors="surrogateescape")


def _parse_records(text: str) -> tuple[_Record | None, list[_Record]]:
    """Split CSV text into the header record and the data records, each with its first line number."""
    lines = LineCounter(io.StringIO(text, newline=""))
    reader = csv.reader(lines)

    records: list[_Record] = []
    while True:
        first_line = lines.count + 1
        lines.consumed.clear()
        error = ""
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as parse_error:
            fields, error = [], str(parse_error)

        raw = "".join(lines.consumed).rstrip("\r\n")
        if fields or error:
            records.append(_Record(first_line, fields, raw, error))

    if not records:
        return None, []
    return records[0], records[1:]


def _check_header(header: list[str], file_name: str) -> list[Problem]:
    """Return ``stop`` problems for missing required columns and repeated column names."""
    problems = []
    missing = [name for name in REQUIRED_COLUMNS if name not in header]
    if missing:
        problems.append(Problem(
            check="csv_columns_missing",
            action="stop",
            message=(
                f"{file_name} lacks the required columns {missing}. Its header has {header}. "
                f"Use the Kaggle styles.csv, whose header starts with {', '.join(REQUIRED_COLUMNS[:3])}."
            ),
            file=file_name,
            row=1,
            column=", ".join(missing),
            value=",".join(header),
        ))

    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        problems.append(Problem(
            check="csv_columns_repeated",
            action="stop",
            message=f"{file_name} repeats the column names {repeated} in its header. Each column name must be unique.",
            file=file_name,
            row=1,
            column=", ".join(repeated),
            value=",".join(header),
        ))
    return problems


def _build_vocabulary(header: list[str], records: list[_Record]) -> dict[str, set[str]]:
    """Return, per attribute, the values found in records that have the header's field count."""
    positions = {name: header.index(name) for name in ATTRIBUTES}
    vocabulary: dict[str, set[str]] = {name: set() for name in ATTRIBUTES}
    for record in records:
        if len(record.fields) != len(header):
            continue
        for name, position in positions.items():
            vocabulary[name].add(record.fields[position])
    return vocabulary


def _fit_record(
    record: _Record, header: list[str], vocabulary: dict[str, set[str]], file_name: str
) -> tuple[list[str] | None, Problem | None]:
    """Return the record's fields fitted to the header, or a problem when the record is set aside."""
    id_position = header.index(CSV_ID_COLUMN)
    reason = _find_unrecoverable_reason(record, header, vocabulary)
    if reason is not None:
        return None, Problem(
            check="csv_row_unrecoverable",
            action="set_aside",
            message=f"{reason} {_FIX_ROW_HINT}",
            file=file_name,
            row=record.line,
            image_id=_printable(record.fields[id_position]) if id_position < len(record.fields) else "",
            value=_printable(record.raw),
        )

    fields = list(record.fields)
    if len(fields) > len(header):
        fields = [*fields[: len(header) - 1], ",".join(fields[len(header) - 1 :])]

    image_id = fields[id_position]
    if not image_id.strip():
        return None, Problem(
            check="id_missing",
            action="set_aside",
            message="Row has an empty id, so it has no image path. Fill in the product id in styles.csv.",
            file=file_name,
            row=record.line,
            column=CSV_ID_COLUMN,
            value=image_id,
        )
    return fields, None


def _find_unrecoverable_reason(record: _Record, header: list[str], vocabulary: dict[str, set[str]]) -> str | None:
    """Return why the record cannot be fitted to the header, as a sentence, or None when it can."""
    if record.error:
        return f"The CSV parser rejected the row: {record.error}."
    if _NOT_UTF8.search(record.raw):
        return "The row contains bytes that are not valid UTF-8."

    fields = record.fields
    counts = f"The row has {len(fields)} fields but the header has {len(header)}"
    if len(fields) < len(header):
        return f"{counts}, so its values cannot be matched to their columns."
    if len(fields) == len(header):
        return None

    if header[-1] != NAME_COLUMN:
        return f"{counts}, and the last column is {header[-1]!r}, not the free-text {NAME_COLUMN!r} that could take the extra fields."

    image_id = fields[header.index(CSV_ID_COLUMN)]
    if not _DIGITS.fullmatch(image_id):
        return f"{counts}, and its id {image_id!r} is not a number, so a field before {NAME_COLUMN} may contain a comma."

    if YEAR_COLUMN in header:
        year = fields[header.index(YEAR_COLUMN)]
        if year and not _YEAR.fullmatch(year):
            return f"{counts}, and its year {year!r} is not a four-digit year, so a field before {NAME_COLUMN} may contain a comma."

    for name in ATTRIBUTES:
        value = fields[header.index(name)]
        if value not in vocabulary[name]:
            return (
                f"{counts}, and its {name} {value!r} occurs in no row with the right field count, "
                f"so a field before {NAME_COLUMN} may contain a comma."
            )
    return None


def _printable(raw: str) -> str:
    """Return raw text with bytes that are not UTF-8 written as ``\\xNN`` escapes."""
    return raw.encode("utf-8", errors="surrogateescape").decode("utf-8", errors="backslashreplace")


def _build_frame(rows: pd.DataFrame) -> pd.DataFrame:
    """Return the catalog frame (without hashes) from the string table of styles.csv."""
    image_ids = rows[CSV_ID_COLUMN].astype(str)
    frame = pd.DataFrame({
        ID_COLUMN: image_ids,
        PATH_COLUMN: [f"{IMAGES_DIR}/{image_id}.jpg" for image_id in image_ids],
        HASH_COLUMN: pd.Series([None] * len(rows), dtype="object"),
        ROW_COLUMN: rows[ROW_COLUMN].astype("int64"),
    })

    for name in ATTRIBUTES:
        frame[name] = [[value] for value in rows[name]]

    if NAME_COLUMN in rows.columns:
        frame[NAME_COLUMN] = rows[NAME_COLUMN].astype(str)
    return frame


def _find_paths_outside_root(frame: pd.DataFrame) -> pd.Series:
    """Return a mask of the rows whose path leaves the dataset root, by its text (symlinks are not followed)."""
    def is_outside(path: str) -> bool:
        normalized = posixpath.normpath(path)
        return posixpath.isabs(normalized) or normalized == ".." or normalized.startswith("../")

    return frame[PATH_COLUMN].map(is_outside).astype(bool)


def _outside_root_problem(row: pd.Series) -> Problem:
    return Problem(
        check="path_outside_root",
        action="stop",
        message=(
            f"Id {row[ID_COLUMN]!r} makes the image path {row[PATH_COLUMN]!r} point outside the dataset root. "
            "Fix the id in styles.csv."
        ),
        file=STYLES_FILE,
        row=int(row[ROW_COLUMN]),
        image_id=row[ID_COLUMN],
        column=PATH_COLUMN,
        value=row[PATH_COLUMN],
    )


def _find_duplicate_ids(frame: pd.DataFrame) -> list[Problem]:
    """Return one ``stop`` problem per row whose id another row also uses."""
    duplicated = frame[frame[ID_COLUMN].duplicated(keep=False)]
    problems = []
    for image_id, group in duplicated.groupby(ID_COLUMN, sort=False):
        lines = group[ROW_COLUMN].tolist()
        for line in lines:
            problems.append(Problem(
                check="duplicate_id",
                action="stop",
                message=(
                    f"Id {image_id!r} is used by {len(lines)} rows (lines {', '.join(map(str, lines))}). "
                    "Each id must be unique. Remove or renumber the duplicate rows in styles.csv."
                ),
                file=STYLES_FILE,
                row=int(line),
                image_id=str(image_id),
                column=CSV_ID_COLUMN,
                value=str(image_id),
            ))
    return problems


def _hash_images(root: Path, paths: pd.Series, skip: pd.Series) -> list[str | None]:
    """Return the SHA-256 of each image file, or None where it is missing, unreadable or skipped."""
    hashes: list[str | None] = []
    unreadable = 0
    for path, skipped in tqdm(zip(paths, skip), total=len(paths), desc="Hashing images", unit="image"):
        if skipped:
            hashes.append(None)
            continue
        try:
            hashes.append(hash_file(root / path))
        except FileNotFoundError:
            hashes.append(None)
        except (IsADirectoryError, PermissionError, ValueError) as error:
            unreadable += 1
            _logger.warning("Cannot read image %s: %s. It is treated as missing", root / path, error)
            hashes.append(None)

    if unreadable:
        _logger.warning("%d image files could not be read, so validation will set them aside as missing", unreadable)
    return hashes
