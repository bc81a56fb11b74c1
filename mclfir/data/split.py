"""Deterministic train/valid/test splits of a validated catalog, one table per attribute.

An image's split is a pure function of its content hash: ``u`` = the first 8 bytes of
``sha256(salt + content_hash)`` read as a fraction in [0, 1), compared with the cumulative
fractions of ``data.split`` in ``params.yaml``. Identical photos therefore always share a split,
and adding images or attributes never moves an image. Within valid and test a second salted hash
of the content hash decides between query and candidate, so identical photos also share a role.

Evaluation feasibility, per attribute and evaluation split: a query is relevant to the
candidates with the same ``value`` string. Each value therefore needs at least one query and one
candidate photo. A value with two or more distinct photos whose hashes all fell on one side gets
one photo moved to the other side, the one whose role hash is nearest that side. A value with a
single distinct photo cannot form a pair, so its rows get role ``excluded`` with the reason. So do
the rows whose ``eval_exclude`` names the attribute, because an identical photo carries another
label. Training rows always keep role ``train``. Because these two steps look at the
other photos of a value, adding images can change an evaluation row's role, but never its split.

``mclfir data split`` writes ``<attribute>.parquet`` for each attribute of an increment and a
``summary.json`` with the counts. Rows are sorted by ``image_id`` and nothing time-dependent is
written, so the same input gives byte-identical files.
"""

import argparse
import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mclfir.config import PARAMS_FILE, SplitConfig, load_data_config, load_params, to_dict
from mclfir.data.catalog import HASH_COLUMN, ID_COLUMN, METADATA_KEY, PATH_COLUMN, ROW_COLUMN, Catalog, read_catalog
from mclfir.data.increments import PlanError, load_plan
from mclfir.paths import resolve

_logger = logging.getLogger(__name__)

EVAL_EXCLUDE_COLUMN = "eval_exclude"
VALUE_COLUMN = "value"
SPLIT_COLUMN = "split"
ROLE_COLUMN = "role"
REASON_COLUMN = "exclude_reason"
SPLIT_COLUMNS = (ID_COLUMN, PATH_COLUMN, HASH_COLUMN, VALUE_COLUMN, SPLIT_COLUMN, ROLE_COLUMN, REASON_COLUMN)

SPLITS = ("train", "valid", "test")
EVAL_SPLITS = ("valid", "test")
ROLES_BY_SPLIT = {"train": ("train",), "valid": ("query", "candidate", "excluded"), "test": ("query", "candidate", "excluded")}
VALUE_SEPARATOR = "|"
SUMMARY_FILE = "summary.json"
# Appended to the salt so that the role hash is independent of the split hash.
_ROLE_SALT_SUFFIX = "/role"
_CONFLICT_REASON = "conflicting_duplicate"


class SplitError(ValueError):
    """A catalog or request that cannot be split."""


def hash_fraction(salt: str, content_hash: str) -> float:
    """Return the first 8 bytes of ``sha256(salt + content_hash)`` as a fraction in [0, 1).

    Only the top 53 bits are kept, because a float64 represents integers up to 2**53 exactly, so the result
    never rounds up to 1.0.
    """
    digest = hashlib.sha256((salt + content_hash).encode("utf-8")).digest()
    return (int.from_bytes(digest[:8], "big") >> 11) / float(1 << 53)


def assign_split(content_hash: str, config: SplitConfig) -> str:
    """Return ``train``, ``valid`` or ``test`` for a content hash."""
    fraction = hash_fraction(config.salt, content_hash)
    if fraction < config.train:
        return "train"
    if fraction < config.train + config.valid:
        return "valid"
    return "test"


def role_fraction(content_hash: str, config: SplitConfig) -> float:
    """Return the role hash of a content hash. A value below ``query_fraction`` makes the photo a query."""
    return hash_fraction(config.salt + _ROLE_SALT_SUFFIX, content_hash)


def value_label(values: list[str]) -> str:
    """Return the single value, or several values sorted and joined by ``|``."""
    return VALUE_SEPARATOR.join(sorted(set(values)))


@dataclass
class AttributeSplit:
    """One attribute's split table (columns ``SPLIT_COLUMNS``, sorted by image id) and its report."""

    attribute: str
    frame: pd.DataFrame
    unlabelled: int
    # split -> value -> {"images", "photos", "reason"} for values left out of evaluation
    excluded_values: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    # split -> number of photos whose role was moved so that every value has a query and a candidate
    rebalanced: dict[str, int] = field(default_factory=dict)
    # values with fewer than two distinct training photos, so no positive training pair
    train_values_without_pair: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """Return plain counts per split and role, and the values left out of evaluation."""
        counts = {}
        for split in SPLITS:
            roles = self.frame.loc[self.frame[SPLIT_COLUMN] == split, ROLE_COLUMN].value_counts()
            counts[split] = {role: int(roles.get(role, 0)) for role in ROLES_BY_SPLIT[split]}

        conflicts = self.frame[REASON_COLUMN] == _CONFLICT_REASON
        return {
            "images": len(self.frame),
            "unlabelled": self.unlabelled,
            "values": int(self.frame[VALUE_COLUMN].nunique()),
            "counts": counts,
            "conflicting_duplicates": {
                split: int((conflicts & (self.frame[SPLIT_COLUMN] == split)).sum()) for split in EVAL_SPLITS
            },
            "excluded_values": self.excluded_values,
            "rebalanced_photos": self.rebalanced,
            "train_values_without_pair": {
                "count": len(self.train_values_without_pair),
                "values": self.train_values_without_pair,
            },
        }


def split_attribute(catalog: Catalog, attribute: str, config: SplitConfig) -> AttributeSplit:
    """Split the images labelled for ``attribute`` and assign evaluation roles.

    Images with an empty value list are left out of this attribute and counted as unlabelled.
    """
    _validate_input(catalog, attribute)
    labelled = catalog.frame[catalog.frame[attribute].map(len) > 0]
    rows = _base_rows(labelled, attribute, config)

    excluded_values: dict[str, dict[str, dict[str, Any]]] = {}
    rebalanced: dict[str, int] = {}
    for split in EVAL_SPLITS:
        excluded_values[split], rebalanced[split] = _assign_eval_roles(rows, split)

    rows = rows.sort_values(ID_COLUMN, kind="stable").reset_index(drop=True)
    return AttributeSplit(
        attribute=attribute,
        frame=rows[list(SPLIT_COLUMNS)],
        unlabelled=len(catalog.frame) - len(labelled),
        excluded_values=excluded_values,
        rebalanced=rebalanced,
        train_values_without_pair=_values_without_pair(rows[rows[SPLIT_COLUMN] == "train"]),
    )


def _validate_input(catalog: Catalog, attribute: str) -> None:
    if attribute not in catalog.attributes:
        raise SplitError(
            f"Unknown attribute {attribute!r}. The catalog has: {', '.join(catalog.attributes)}. "
            "Fix the attribute names under 'increments' in params.yaml or in --attributes, "
            "or add the column to the dataset and rerun `mclfir data prepare` and `mclfir data validate`."
        )
    if EVAL_EXCLUDE_COLUMN not in catalog.frame.columns:
        raise SplitError(
            f"The catalog has no {EVAL_EXCLUDE_COLUMN!r} column, so it is not a validated catalog. "
            "Split the output of `mclfir data validate` (data/validated/catalog.parquet)."
        )

    frame = catalog.frame
    missing_hash = frame[frame[HASH_COLUMN].isna()]
    if len(missing_hash):
        first = missing_hash.iloc[0]
        raise SplitError(
            f"{len(missing_hash)} catalog rows have no content hash (first: image {first[ID_COLUMN]!r}, "
            f"source row {first[ROW_COLUMN]}). Validation sets missing images aside, so split the validated catalog."
        )

    duplicated = frame[frame[ID_COLUMN].duplicated(keep=False)]
    if len(duplicated):
        ids = sorted(duplicated[ID_COLUMN].astype(str).unique())
        raise SplitError(f"The catalog repeats image ids {ids[:5]} ({len(ids)} in all), but each image id must be unique. Fix the dataset adapter.")


def _base_rows(labelled: pd.DataFrame, attribute: str, config: SplitConfig) -> pd.DataFrame:
    """Return one row per labelled image with its value, split, hash-drawn role and conflict exclusion."""
    for row, values in zip(labelled[ROW_COLUMN], labelled[attribute]):
        bad = [value for value in values if VALUE_SEPARATOR in value]
        if bad:
            raise SplitError(
                f"Source row {row}: {attribute} value {bad[0]!r} contains {VALUE_SEPARATOR!r}, which joins "
                "the values of multi-valued images. Replace the character in the dataset adapter."
            )

    hashes = labelled[HASH_COLUMN].astype(str)
    rows = pd.DataFrame(
        {
            ID_COLUMN: labelled[ID_COLUMN].astype(str).to_numpy(),
            PATH_COLUMN: labelled[PATH_COLUMN].astype(str).to_numpy(),
            HASH_COLUMN: hashes.to_numpy(),
            VALUE_COLUMN: labelled[attribute].map(value_label).to_numpy(),
            SPLIT_COLUMN: hashes.map(lambda content_hash: assign_split(content_hash, config)).to_numpy(),
            "role_fraction": hashes.map(lambda content_hash: role_fraction(content_hash, config)).to_numpy(),
            REASON_COLUMN: "",
        }
    )
    is_query = rows["role_fraction"] < config.query_fraction
    rows[ROLE_COLUMN] = is_query.map({True: "query", False: "candidate"})
    rows.loc[rows[SPLIT_COLUMN] == "train", ROLE_COLUMN] = "train"

    conflicting = _conflicting_rows(labelled, attribute, rows)
    in_eval = rows[SPLIT_COLUMN] != "train"
    rows.loc[conflicting & in_eval, ROLE_COLUMN] = "excluded"
    rows.loc[conflicting & in_eval, REASON_COLUMN] = _CONFLICT_REASON
    return rows


def _conflicting_rows(labelled: pd.DataFrame, attribute: str, rows: pd.DataFrame) -> pd.Series:
    """Return a mask of rows whose identical photos carry another value for the attribute.

    Validation records these in ``eval_exclude``. Groups with differing values that it did not
    record are caught here as well and logged, so a query never meets its own photo under another label.
    """
    flagged = labelled[EVAL_EXCLUDE_COLUMN].map(lambda names: names is not None and attribute in list(names))
    flagged = pd.Series(flagged.to_numpy(dtype=bool), index=rows.index)

    values_per_photo = rows.groupby(HASH_COLUMN)[VALUE_COLUMN].transform("nunique")
    unflagged = (values_per_photo > 1) & ~flagged
    if unflagged.any():
        _logger.warning(
            "%s: %d images share a photo with another %s value but are not in %s. Excluding them from evaluation too.",
            attribute,
            int(unflagged.sum()),
            attribute,
            EVAL_EXCLUDE_COLUMN,
        )
    return flagged | (values_per_photo > 1)


def _assign_eval_roles(rows: pd.DataFrame, split: str) -> tuple[dict[str, dict[str, Any]], int]:
    """Give each value of ``split`` a query and a candidate photo, or exclude it, editing ``rows`` in place.

    Returns the excluded values with their counts and reasons, and the number of photos whose role moved.
    """
    eligible = rows[(rows[SPLIT_COLUMN] == split) & (rows[ROLE_COLUMN] != "excluded")]
    excluded: dict[str, dict[str, Any]] = {}
    moved = 0

    for value, members in eligible.groupby(VALUE_COLUMN, sort=True):
        photos = members.groupby(HASH_COLUMN)["role_fraction"].first()
        if len(photos) < 2:
            reason = _rare_reason(len(members), split)
            rows.loc[members.index, ROLE_COLUMN] = "excluded"
            rows.loc[members.index, REASON_COLUMN] = reason
            excluded[value] = {"images": len(members), "photos": len(photos), "reason": reason}
            continue

        roles = members.groupby(HASH_COLUMN)[ROLE_COLUMN].first()
        if not (roles == "query").any():
            # The photo with the lowest role hash is the one closest to being a query.
            rows.loc[members.index[members[HASH_COLUMN] == photos.idxmin()], ROLE_COLUMN] = "query"
            moved += 1
        elif not (roles == "candidate").any():
            rows.loc[members.index[members[HASH_COLUMN] == photos.idxmax()], ROLE_COLUMN] = "candidate"
            moved += 1

    return excluded, moved


def _rare_reason(images: int, split: str) -> str:
    if images == 1:
        return f"rare_value: 1 image in {split}"
    return f"rare_value: {images} images in {split}, all of one photo"


def _values_without_pair(train_rows: pd.DataFrame) -> list[str]:
    photos = train_rows.groupby(VALUE_COLUMN)[HASH_COLUMN].nunique()
    return sorted(photos[photos < 2].index)


def _split_schema(attribute: str, catalog: Catalog) -> pa.Schema:
    metadata = {"attribute": attribute, "root": catalog.root, "source": catalog.source}
    fields = [pa.field(name, pa.string(), nullable=False) for name in SPLIT_COLUMNS]
    return pa.schema(fields, metadata={METADATA_KEY: json.dumps(metadata, sort_keys=True).encode("utf-8")})


def write_split(result: AttributeSplit, catalog: Catalog, path: Path) -> Path:
    """Write one attribute's split table to ``path`` as Parquet, with attribute, root and source in its metadata."""
    schema = _split_schema(result.attribute, catalog)
    columns = {name: result.frame[name].astype(str).tolist() for name in SPLIT_COLUMNS}
    table = pa.Table.from_pydict(columns, schema=schema)

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


@dataclass
class SplitTable:
    """A split table read back from Parquet, with the provenance stored in its metadata."""

    frame: pd.DataFrame
    attribute: str
    root: str
    source: str


def read_split(path: str | Path) -> SplitTable:
    """Read a table written by :func:`write_split`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Split table not found: {path}. Create it with `mclfir data split`.")

    table = pq.read_table(path)
    raw_metadata = (table.schema.metadata or {}).get(METADATA_KEY)
    if raw_metadata is None:
        raise ValueError(f"{path} is not an mclfir split table: its Parquet metadata has no 'mclfir' entry.")
    metadata = json.loads(raw_metadata)
    return SplitTable(table.to_pandas(), metadata["attribute"], metadata["root"], metadata["source"])


def split_increment(catalog: Catalog, attributes: list[str], config: SplitConfig, out_dir: Path, increment: str) -> dict[str, Any]:
    """Write one split table per attribute and ``summary.json`` into ``out_dir``, and return the summary."""
    for attribute in attributes:
        _validate_input(catalog, attribute)

    summary: dict[str, Any] = {"increment": increment, "split_params": to_dict(config), "attributes": {}}
    for attribute in attributes:
        result = split_attribute(catalog, attribute, config)
        path = write_split(result, catalog, out_dir / f"{attribute}.parquet")
        summary["attributes"][attribute] = result.summary()
        _logger.info("Wrote %d rows of %s to %s", len(result.frame), attribute, path)

    _warn_about_stale_tables(out_dir, attributes)
    summary_path = out_dir / SUMMARY_FILE
    summary_path.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return summary


def _warn_about_stale_tables(out_dir: Path, attributes: list[str]) -> None:
    expected = {f"{attribute}.parquet" for attribute in attributes}
    stale = sorted(path.name for path in out_dir.glob("*.parquet") if path.name not in expected)
    if stale:
        _logger.warning("%s contains tables of attributes outside this increment: %s. Delete them if they are stale.", out_dir, ", ".join(stale))


def format_summary(summary: dict[str, Any]) -> list[str]:
    """Return one line per attribute: values and counts per split and role."""
    lines = []
    for attribute, report in summary["attributes"].items():
        counts = report["counts"]
        parts = [f"train {counts['train']['train']}"]
        for split in EVAL_SPLITS:
            roles = counts[split]
            parts.append(f"{split} {roles['query']} query / {roles['candidate']} candidate / {roles['excluded']} excluded")
        excluded_values = sum(len(values) for values in report["excluded_values"].values())
        lines.append(
            f"{attribute}: {report['values']} values, {report['images']} images ({report['unlabelled']} unlabelled); "
            f"{'; '.join(parts)}; {excluded_values} value(s) left out of evaluation, "
            f"{report['train_values_without_pair']['count']} without a training pair"
        )
    return lines


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``mclfir data split``."""
    parser.add_argument(
        "--catalog",
        default="data/validated/catalog.parquet",
        help="validated catalog (Parquet) to split (default: %(default)s)",
    )
    parser.add_argument("--increment", required=True, help="increment whose attributes to split, as named in params.yaml")
    parser.add_argument("--out", help="output folder (default: data/splits/<increment>)")
    parser.add_argument(
        "--attributes",
        nargs="+",
        metavar="ATTRIBUTE",
        help="attributes to split instead of those the increment lists in params.yaml",
    )
    parser.add_argument(
        "--params",
        default=PARAMS_FILE,
        help="parameters file with the 'data.split' and 'increments' sections (default: %(default)s in the project root)",
    )


def run(args: argparse.Namespace) -> int:
    """Split the catalog for one increment, write the tables and print a summary."""
    try:
        params = load_params(args.params)
        config = load_data_config(params).split
        attributes = args.attributes or list(load_plan(params).get(args.increment).attributes)
        catalog = read_catalog(resolve(args.catalog))
        out_dir = resolve(args.out or f"data/splits/{args.increment}")
        summary = split_increment(catalog, attributes, config, out_dir, args.increment)
    except (SplitError, PlanError, FileNotFoundError) as error:
        _logger.error("%s", error)
        return 1

    for line in format_summary(summary):
        print(line)
    print(f"Wrote {len(attributes)} split tables and {SUMMARY_FILE} to {out_dir}")
    return 0
