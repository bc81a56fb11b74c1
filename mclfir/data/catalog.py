"""The image catalog: one row per image, written as Parquet.

Columns:

- ``image_id`` (string): unique id of the image within the dataset.
- ``path`` (string): POSIX path of the image file, relative to the dataset root.
- ``content_hash`` (string or null): SHA-256 of the image file's bytes; null when the file is missing.
- ``source_row`` (int): 1-based line number of the image's record in the source label file
  (the header is line 1), so that every problem can be traced back to its row.
- one column per attribute (list of strings): the image's values for that attribute. Most
  datasets give one value, DeepFashion gives several. An empty list means no label.

The attribute names, the dataset source and its root are stored in the Parquet schema's
metadata under ``mclfir``, so a reader knows which columns are attributes.
"""

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

_logger = logging.getLogger(__name__)

ID_COLUMN = "image_id"
PATH_COLUMN = "path"
HASH_COLUMN = "content_hash"
ROW_COLUMN = "source_row"
BASE_COLUMNS = (ID_COLUMN, PATH_COLUMN, HASH_COLUMN, ROW_COLUMN)
METADATA_KEY = b"mclfir"
_HASH_CHUNK_BYTES = 1 << 20


@dataclass
class Catalog:
    """A catalog table with its attribute names and provenance."""

    frame: pd.DataFrame
    attributes: list[str]
    source: str
    root: str
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        missing = [name for name in (*BASE_COLUMNS, *self.attributes) if name not in self.frame.columns]
        if missing:
            raise ValueError(f"Catalog is missing columns {missing}; present: {list(self.frame.columns)}")

    def values(self, attribute: str) -> pd.Series:
        """Return the attribute's value lists, indexed like the frame."""
        if attribute not in self.attributes:
            raise KeyError(f"Unknown attribute {attribute!r}; known attributes: {', '.join(self.attributes)}")
        return self.frame[attribute]


def hash_file(path: Path) -> str:
    """Return the SHA-256 hex digest of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(_HASH_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _arrow_schema(attributes: list[str], metadata: dict[str, Any]) -> pa.Schema:
    fields = [
        pa.field(ID_COLUMN, pa.string(), nullable=False),
        pa.field(PATH_COLUMN, pa.string(), nullable=False),
        pa.field(HASH_COLUMN, pa.string()),
        pa.field(ROW_COLUMN, pa.int64()),
    ]
    fields += [pa.field(name, pa.list_(pa.string())) for name in attributes]
    return pa.schema(fields, metadata={METADATA_KEY: json.dumps(metadata).encode()})


def write_catalog(catalog: Catalog, out: Path) -> Path:
    """Write ``catalog`` to ``out`` as Parquet; extra frame columns are kept after the schema's."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)

    metadata = {
        "attributes": catalog.attributes,
        "source": catalog.source,
        "root": catalog.root,
        **catalog.extra,
    }
    schema = _arrow_schema(catalog.attributes, metadata)
    extra_columns = [name for name in catalog.frame.columns if name not in schema.names]

    frame = catalog.frame[list(schema.names)].copy()
    for name in catalog.attributes:
        # An empty frame gives its list columns a float dtype, which Arrow cannot cast to a list type.
        frame[name] = frame[name].astype(object)
    table = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
    for name in extra_columns:
        table = table.append_column(name, pa.array(catalog.frame[name].tolist()))
    table = table.replace_schema_metadata({METADATA_KEY: json.dumps(metadata).encode()})

    pq.write_table(table, out)
    _logger.info("Wrote catalog of %d images and %d attributes to %s", len(catalog.frame), len(catalog.attributes), out)
    return out


def read_catalog(path: Path) -> Catalog:
    """Read a catalog written by :func:`write_catalog`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Catalog not found: {path}. Create it with `mclfir data prepare`.")

    table = pq.read_table(path)
    raw_metadata = (table.schema.metadata or {}).get(METADATA_KEY)
    if raw_metadata is None:
        raise ValueError(f"{path} is not an mclfir catalog: its Parquet metadata has no 'mclfir' entry.")
    metadata = json.loads(raw_metadata)

    frame = table.to_pandas()
    for name in metadata["attributes"]:
        frame[name] = frame[name].map(lambda values: [] if values is None else list(values))

    extra = {key: value for key, value in metadata.items() if key not in ("attributes", "source", "root")}
    return Catalog(frame, metadata["attributes"], metadata["source"], metadata["root"], extra)
