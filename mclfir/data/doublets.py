"""Doublet sampling: (anchor, positive) image pairs that share an attribute's value.

Sampling is balanced over values: a pair first draws a value uniformly among the attribute's
values with at least two train images, then two distinct images of that value. Skewed value
counts (a few articleTypes have most photos) therefore do not set what the loss is trained on.

Each attribute contributes ``pairs_per_epoch`` pairs per epoch, so the cost of an increment
grows with the attributes it introduces, not with every attribute served so far. The plan of an
epoch is a pure function of ``(seed, epoch)``: resuming in the middle of an epoch rebuilds the
same plan and skips the batches already done, so no sampler state beyond the position is needed.
"""

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

_logger = logging.getLogger(__name__)

TRAIN_ROLE = "train"


@dataclass(frozen=True)
class AttributePool:
    """The train images of one attribute, grouped by value; only values with two or more images."""

    attribute: str
    values: list[str]
    rows: list[np.ndarray]

    @property
    def images(self) -> int:
        """Number of images in the pool."""
        return int(sum(len(rows) for rows in self.rows))


def build_pool(attribute: str, image_rows: Sequence[int], values: Sequence[str]) -> AttributePool:
    """Group image rows ``[N]`` by their values ``[N]``, keeping values with at least two images.

    NOTE: a multi-valued label (values joined by ``|``, as in the split files) counts as one value
    of its own, so an image labelled ``a|b`` is a negative for an image labelled ``a``.
    """
    frame = pd.DataFrame({"row": np.asarray(image_rows, dtype=np.int64), "value": list(values)})
    grouped = frame.groupby("value", sort=True)["row"]
    kept_values = []
    kept_rows = []
    dropped = 0
    for value, rows in grouped:
        if len(rows) < 2:
            dropped += 1
            continue
        kept_values.append(str(value))
        kept_rows.append(rows.to_numpy(dtype=np.int64))

    if not kept_values:
        raise ValueError(
            f"Attribute {attribute!r} has no value with two or more train images, so no doublet can be formed; "
            "check its split file or leave the attribute out of the increment plan."
        )
    if len(kept_values) == 1:
        _logger.warning("Attribute %r has only one value with two or more train images; its loss has no negatives", attribute)
    if dropped:
        _logger.info("Attribute %r: %d values with a single train image are not sampled", attribute, dropped)
    return AttributePool(attribute, kept_values, kept_rows)


def read_train_pool(split_file: Path, row_of: Callable[[list[str]], np.ndarray]) -> AttributePool:
    """Read the train rows of one attribute's split file and map image ids to cache rows with ``row_of``.

    ``row_of`` takes a list of image ids and returns their rows, for example ``ImageCache.rows``.
    """
    split_file = Path(split_file)
    if not split_file.is_file():
        raise FileNotFoundError(f"Split file not found: {split_file}. Create it with `mclfir data split`.")
    frame = pd.read_parquet(split_file, columns=["image_id", "value", "role"])
    train = frame[frame["role"] == TRAIN_ROLE]
    if train.empty:
        raise ValueError(f"Split file {split_file} has no rows with role 'train'; nothing to train on.")

    attribute = split_file.stem
    rows = row_of(train["image_id"].astype(str).tolist())
    return build_pool(attribute, rows, train["value"].astype(str).tolist())


@dataclass(frozen=True)
class DoubletBatch:
    """One batch of P pairs: cache rows of anchors and positives, attribute and value indices, all ``[P]``.

    ``attribute_ids`` index the sampler's ``attributes``; ``value_ids`` index that attribute's
    pool values, so two items share a value exactly when both ids are equal.
    """

    anchor_rows: np.ndarray
    positive_rows: np.ndarray
    attribute_ids: np.ndarray
    value_ids: np.ndarray

    def __len__(self) -> int:
        return len(self.anchor_rows)


class DoubletSampler:
    """Plans the batches of each epoch from attribute pools, deterministically from a seed.

    ``mixed_batches=False`` gives batches of one attribute each (more negatives per anchor);
    ``True`` shuffles the pairs of all attributes together, so a batch contains several. Each
    attribute's ``pairs_per_epoch`` is rounded up to whole batches.
    """

    def __init__(
        self,
        pools: Sequence[AttributePool],
        pairs_per_epoch: int,
        batch_size: int,
        seed: int,
        mixed_batches: bool = False,
    ) -> None:
        if not pools:
            raise ValueError("DoubletSampler needs at least one attribute pool.")
        if batch_size < 2:
            raise ValueError(f"Invalid batch_size {batch_size}: InfoNCE needs at least 2 pairs per batch.")
        if pairs_per_epoch < 1:
            raise ValueError(f"Invalid pairs_per_epoch {pairs_per_epoch}: use a positive number of pairs.")
        self.pools = list(pools)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.mixed_batches = bool(mixed_batches)
        self.batches_per_attribute = math.ceil(pairs_per_epoch / batch_size)
        self.pairs_per_attribute = self.batches_per_attribute * self.batch_size

    @property
    def attributes(self) -> list[str]:
        """Attribute names, in the order that ``attribute_ids`` index."""
        return [pool.attribute for pool in self.pools]

    def __len__(self) -> int:
        """Number of batches per epoch."""
        return self.batches_per_attribute * len(self.pools)

    def epoch(self, epoch: int) -> list[DoubletBatch]:
        """Return the batches of ``epoch``; the same ``(seed, epoch)`` always gives the same batches."""
        rng = np.random.default_rng([self.seed, int(epoch)])
        pairs = [self._sample_pairs(pool, attribute_id, rng) for attribute_id, pool in enumerate(self.pools)]

        if self.mixed_batches:
            merged = [np.concatenate(column) for column in zip(*pairs)]
            order = rng.permutation(len(merged[0]))
            merged = [column[order] for column in merged]
            return self._chunk(merged)

        batches = [batch for columns in pairs for batch in self._chunk(list(columns))]
        order = rng.permutation(len(batches))
        return [batches[i] for i in order]

    def _sample_pairs(self, pool: AttributePool, attribute_id: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        """Draw ``pairs_per_attribute`` pairs: a value uniformly, then two distinct images of it."""
        count = self.pairs_per_attribute
        sizes = np.array([len(rows) for rows in pool.rows], dtype=np.int64)
        offsets = np.concatenate(([0], np.cumsum(sizes)[:-1]))
        all_rows = np.concatenate(pool.rows)

        value_ids = rng.integers(0, len(pool.values), size=count)
        value_sizes = sizes[value_ids]
        first = np.floor(rng.random(count) * value_sizes).astype(np.int64)
        second = np.floor(rng.random(count) * (value_sizes - 1)).astype(np.int64)
        # Skip over the first pick so that the two images always differ.
        second += second >= first

        anchors = all_rows[offsets[value_ids] + first]
        positives = all_rows[offsets[value_ids] + second]
        attribute_ids = np.full(count, attribute_id, dtype=np.int64)
        return anchors, positives, attribute_ids, value_ids.astype(np.int64)

    def _chunk(self, columns: list[np.ndarray]) -> list[DoubletBatch]:
        batches = []
        for start in range(0, len(columns[0]), self.batch_size):
            window = slice(start, start + self.batch_size)
            batches.append(DoubletBatch(*(column[window] for column in columns)))
        return batches
