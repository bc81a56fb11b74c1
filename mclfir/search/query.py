"""Search the catalogue for one query: the items most similar to an image under one attribute.

The query is an image file or the id of a catalogue item. It is embedded by the search model
under the attribute and compared with the attribute's index, which must have been built by the
same model.
"""

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from mclfir.search.index import AttributeIndex, load_index
from mclfir.search.models import SearchModel, versions_serving

_logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SearchHit:
    """One result: its rank (from 1), item id, cosine score and value of the attribute."""

    rank: int
    image_id: str
    score: float
    value: str


@dataclass
class SearchResult:
    """The hits of one query, with the query's image ``[H, W, 3]`` uint8 and, for a catalogue item, its id and value."""

    attribute: str
    model_label: str
    query: str
    query_pixels: np.ndarray
    hits: list[SearchHit] = field(default_factory=list)
    query_id: str | None = None
    query_value: str | None = None


def check_attribute(search_model: SearchModel, attribute: str, params: Mapping[str, Any]) -> None:
    """Raise when the model does not serve ``attribute``, naming a registry version that does, if any."""
    if attribute in search_model.attributes:
        return
    label = search_model.identity.label
    versions = versions_serving(attribute, params)
    if versions:
        raise ValueError(
            f"Model {label} does not serve attribute {attribute!r}, but registry version {versions[0]} does: pass "
            f"--model models:/{_model_name(params)}/{versions[0]}, with an index that version built "
            f"(`mclfir index build --model models:/{_model_name(params)}/{versions[0]} --out index-v{versions[0]}`, then --index index-v{versions[0]})."
        )
    raise ValueError(f"Unknown attribute {attribute!r}: model {label} serves {', '.join(search_model.attributes)}.")


def _model_name(params: Mapping[str, Any]) -> str:
    from mclfir.registry import RegistryConfig

    return RegistryConfig.from_params(params).model_name


def read_query(image: str, index: AttributeIndex, cache_dir: Path | None) -> tuple[np.ndarray, str | None]:
    """Return the query's pixels ``[H, W, 3]`` uint8 and its catalogue id (None for an outside image).

    An existing file is decoded. Otherwise ``image`` must be a catalogue id, read from the image
    cache, which is what the index was built from.
    """
    from mclfir.registry import decode_image

    path = Path(image).expanduser()
    if path.is_file():
        return decode_image(str(path), 0), None

    known = np.flatnonzero(index.image_ids == image)
    if known.size == 0:
        raise FileNotFoundError(
            f"Query image not found: {path}. It is neither a file nor the id of a catalogue item; "
            "pass an image file or a catalogue item id."
        )
    if cache_dir is None or not Path(cache_dir).is_dir():
        raise FileNotFoundError(f"Image cache not found: {cache_dir}; build it with `dvc repro cache` to query by item id.")

    from mclfir.data.image_cache import ImageCache

    return ImageCache(cache_dir).read([image])[0].numpy(), image


def embed_query(search_model: SearchModel, pixels: np.ndarray, attribute: str) -> np.ndarray:
    """Embed one RGB image ``[H, W, 3]`` uint8 under ``attribute``: ``-> [1, D]`` float32, L2-normalised."""
    import torch

    images = torch.from_numpy(np.array(pixels)).permute(2, 0, 1)[None]  # [1, 3, H, W], from a writable copy
    with torch.inference_mode():
        return search_model.model(images, [attribute]).float().numpy()


def search(
    search_model: SearchModel,
    image: str,
    attribute: str,
    index_dir: Path,
    params: Mapping[str, Any],
    top_k: int = 10,
    cache_dir: Path | None = None,
) -> SearchResult:
    """Return the ``top_k`` catalogue items closest to ``image`` under ``attribute``."""
    if top_k < 1:
        raise ValueError(f"Invalid --top-k {top_k}; use a positive number of results.")
    check_attribute(search_model, attribute, params)
    index = load_index(index_dir, attribute, search_model.identity)
    pixels, query_id = read_query(image, index, cache_dir)

    rows, scores = index.search(embed_query(search_model, pixels, attribute), top_k)
    hits = [
        SearchHit(rank, str(index.image_ids[row]), float(score), str(index.values[row]))
        for rank, (row, score) in enumerate(zip(rows[0], scores[0]), start=1)
    ]
    query_value = None
    if query_id is not None:
        query_value = str(index.values[np.flatnonzero(index.image_ids == query_id)[0]])
    return SearchResult(attribute, search_model.identity.label, image, pixels, hits, query_id, query_value)


def format_result(result: SearchResult) -> list[str]:
    """Return the printed lines: a header, then one line per hit (rank, item id, score, value)."""
    about = f" (item {result.query_id}, {result.attribute} = {result.query_value})" if result.query_id else ""
    lines = [f"Query {result.query}{about}; attribute {result.attribute}; model {result.model_label}", "rank  item id     score  value"]
    lines += [f"{hit.rank:>4}  {hit.image_id:<10}  {hit.score:.4f}  {hit.value}" for hit in result.hits]
    return lines
