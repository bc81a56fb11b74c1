"""Per-attribute retrieval indexes of the catalogue, tied to the model that built them.

An index folder contains one ``<attribute>.npz`` per attribute. Each file has the L2-normalised
embeddings of every catalogue image under that attribute (float32 ``[N, D]``), the image ids, and
each image's value of the attribute as codes into the distinct values. A ``manifest.json`` names
the model: the sha256 of its checkpoint, its registry version when known, and the attributes
indexed. Loading an index checks the model's sha256 against the manifest, so an index is never
searched with another model's query embeddings.

Search is an exact inner product over the whole index (torch matmul). On 2 CPU cores a query
against the full catalogue of about 44,000 images takes well under the time of embedding the
query image (``bench/bench_search.py`` measures both, and the search step at larger sizes).
"""

import json
import logging
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

_logger = logging.getLogger(__name__)

MANIFEST_FILE = "manifest.json"
# float32: float16 rounds scores by about 1e-4. On masterCategory, whose items of one value embed
# almost alike, 31 of 200 queries then ranked other photos above their own (bench/bench_search.py).
STORED_DTYPE = np.float32
MISSING_VALUE = "-"


class IndexMismatchError(ValueError):
    """The index was built by another model than the one that embeds the query."""


@dataclass(frozen=True)
class ModelIdentity:
    """The model behind an index or a query: its checkpoint's sha256 and a label for messages."""

    checkpoint_sha256: str
    label: str
    registry_version: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"checkpoint_sha256": self.checkpoint_sha256, "label": self.label, "registry_version": self.registry_version}


@dataclass
class AttributeIndex:
    """The catalogue embedded under one attribute: ``embeddings [N, D]`` float32, ids and values ``[N]``."""

    attribute: str
    embeddings: np.ndarray
    image_ids: np.ndarray
    values: np.ndarray

    def __len__(self) -> int:
        return int(self.embeddings.shape[0])

    def search(self, queries: np.ndarray, top_k: int) -> tuple[np.ndarray, np.ndarray]:
        """Return the rows and cosine scores of the ``top_k`` best matches of each query, best first.

        ``queries`` is ``[Q, D]`` (L2-normalised); both results are ``[Q, min(top_k, N)]``.
        """
        import torch

        if queries.ndim != 2 or queries.shape[1] != self.embeddings.shape[1]:
            raise ValueError(f"Expected queries of shape [Q, {self.embeddings.shape[1]}], got {list(queries.shape)}.")
        scores = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32)) @ torch.from_numpy(self.embeddings).T  # [Q, N]
        best = torch.topk(scores, k=min(top_k, len(self)), dim=1)
        return best.indices.numpy(), best.values.numpy()

    def save(self, path: Path) -> Path:
        """Write the index to ``path`` (``.npz``): the embeddings, the ids, and the values as codes into their distinct names."""
        path.parent.mkdir(parents=True, exist_ok=True)
        value_names, value_codes = np.unique(self.values.astype(str), return_inverse=True)
        np.savez(
            path,
            embeddings=self.embeddings.astype(STORED_DTYPE),
            image_ids=self.image_ids.astype(str),
            value_names=value_names,
            value_codes=value_codes.astype(np.int32),
        )
        return path


def attribute_file(folder: Path, attribute: str) -> Path:
    """Return the path of an attribute's index in ``folder``."""
    return Path(folder) / f"{attribute}.npz"


def display_values(cells: Sequence[Any]) -> np.ndarray:
    """Return one display string per catalogue cell: its values joined with ``|``, or ``-`` when it has none."""
    displayed = []
    for cell in cells:
        values = [str(value) for value in (cell if isinstance(cell, (list, tuple, np.ndarray)) else [cell]) if value is not None]
        displayed.append("|".join(values) if values else MISSING_VALUE)
    return np.asarray(displayed, dtype=str)


def build_indexes(
    model,
    images,
    image_ids: Sequence[str],
    values: dict[str, Sequence[Any]],
    identity: ModelIdentity,
    out: Path,
    batch_size: int = 256,
    device: str = "cpu",
) -> dict[str, Any]:
    """Embed ``image_ids`` under every attribute of ``values`` with ``model``, and write the index folder ``out``.

    ``values`` maps an attribute to each image's catalogue cell. The backbone runs once per image
    for all attributes. Returns the manifest, which also records the build time and the sizes.
    """
    from mclfir.evaluate import embed_attributes

    started = time.perf_counter()
    attributes = list(values)
    embeddings = embed_attributes(model, images, {attribute: image_ids for attribute in attributes}, batch_size, device)
    embed_s = time.perf_counter() - started

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ids = np.asarray(image_ids, dtype=str)
    files = {}
    for attribute in attributes:
        index = AttributeIndex(attribute, embeddings[attribute], ids, display_values(values[attribute]))
        path = index.save(attribute_file(out, attribute))
        files[attribute] = {"file": path.name, "images": len(index), "bytes": path.stat().st_size}

    manifest = {
        "model": identity.to_dict(),
        "attributes": attributes,
        "images": len(ids),
        "embed_dim": int(next(iter(embeddings.values())).shape[1]) if embeddings else 0,
        "dtype": np.dtype(STORED_DTYPE).name,
        "files": files,
        "build_s": round(time.perf_counter() - started, 2),
        "embed_s": round(embed_s, 2),
    }
    (out / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    _logger.info("Indexed %d images under %d attributes in %.1f s into %s", len(ids), len(attributes), manifest["build_s"], out)
    return manifest


def read_manifest(folder: Path) -> dict[str, Any]:
    """Return the manifest of the index folder ``folder``."""
    path = Path(folder) / MANIFEST_FILE
    if not path.is_file():
        raise FileNotFoundError(f"Index manifest not found: {path}. Build the index with `dvc repro index` or `mclfir index build`.")
    return json.loads(path.read_text(encoding="utf-8"))


def load_index(folder: Path, attribute: str, identity: ModelIdentity) -> AttributeIndex:
    """Load the index of ``attribute`` from ``folder`` after checking that ``identity``'s model built it."""
    manifest = read_manifest(folder)
    built_by = manifest["model"]
    if built_by["checkpoint_sha256"] != identity.checkpoint_sha256:
        raise IndexMismatchError(
            f"The index in {folder} was built by {built_by['label']} (checkpoint sha256 {built_by['checkpoint_sha256'][:12]}), "
            f"not by the query model {identity.label} (sha256 {identity.checkpoint_sha256[:12]}). Search with --model "
            f"{built_by['label']}, or build an index for this model in a folder of its own with "
            f"`mclfir index build --model {identity.label} --out index-other` and pass --index index-other."
        )
    if attribute not in manifest["attributes"]:
        raise KeyError(
            f"The index in {folder} has no attribute {attribute!r}; it indexes: {', '.join(manifest['attributes'])}. "
            "Rebuild it with `mclfir index build` and a model that serves the attribute."
        )

    path = attribute_file(folder, attribute)
    try:
        with np.load(path, allow_pickle=False) as arrays:
            return AttributeIndex(
                attribute,
                arrays["embeddings"].astype(np.float32),
                arrays["image_ids"],
                arrays["value_names"][arrays["value_codes"]],
            )
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
        raise ValueError(f"Cannot read the index file {path} ({error}); rebuild the index with `mclfir index build`.") from None
