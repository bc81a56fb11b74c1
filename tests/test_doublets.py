"""Tests of doublet sampling: pair validity, value balance, determinism and per-attribute cost."""

from collections import Counter

import numpy as np
import pandas as pd
import pytest

from mclfir.data.doublets import DoubletSampler, build_pool, read_train_pool


def _pool(attribute: str, counts: dict[str, int], start: int = 0):
    rows, values = [], []
    for value, count in counts.items():
        rows += list(range(start + len(rows), start + len(rows) + count))
        values += [value] * count
    return build_pool(attribute, rows, values)


def test_pool_drops_values_with_one_image():
    pool = _pool("colour", {"red": 5, "blue": 1, "green": 2})

    assert pool.values == ["green", "red"]
    assert pool.images == 7


def test_pool_without_usable_value_raises():
    with pytest.raises(ValueError, match="'colour'"):
        _pool("colour", {"red": 1, "blue": 1})


def test_pairs_share_value_and_differ():
    pool = _pool("colour", {"red": 50, "blue": 2, "green": 7})
    value_of_row = {row: value for value, rows in zip(pool.values, pool.rows) for row in rows}
    sampler = DoubletSampler([pool], pairs_per_epoch=512, batch_size=64, seed=1)

    for batch in sampler.epoch(0):
        for anchor, positive, value_id in zip(batch.anchor_rows, batch.positive_rows, batch.value_ids):
            assert anchor != positive
            assert value_of_row[anchor] == value_of_row[positive] == pool.values[value_id]


def test_values_are_balanced():
    pool = _pool("colour", {"red": 1000, "blue": 2, "green": 10})
    sampler = DoubletSampler([pool], pairs_per_epoch=6000, batch_size=100, seed=2)

    counts = Counter(value for batch in sampler.epoch(0) for value in batch.value_ids.tolist())

    for value_id in range(3):
        assert 1700 < counts[value_id] < 2300


def test_epoch_deterministic_given_seed():
    pool = _pool("colour", {"red": 30, "blue": 20})
    first = DoubletSampler([pool], 256, 32, seed=7).epoch(3)
    second = DoubletSampler([pool], 256, 32, seed=7).epoch(3)
    other_seed = DoubletSampler([pool], 256, 32, seed=8).epoch(3)
    other_epoch = DoubletSampler([pool], 256, 32, seed=7).epoch(4)

    assert all(np.array_equal(a.anchor_rows, b.anchor_rows) for a, b in zip(first, second))
    assert all(np.array_equal(a.positive_rows, b.positive_rows) for a, b in zip(first, second))
    assert not all(np.array_equal(a.anchor_rows, b.anchor_rows) for a, b in zip(first, other_seed))
    assert not all(np.array_equal(a.anchor_rows, b.anchor_rows) for a, b in zip(first, other_epoch))


def test_cost_grows_with_attributes_only():
    pools = [_pool(name, {"a": 5, "b": 5}, start=100 * i) for i, name in enumerate(["x", "y", "z"])]

    one = DoubletSampler(pools[:1], pairs_per_epoch=100, batch_size=32, seed=0)
    three = DoubletSampler(pools, pairs_per_epoch=100, batch_size=32, seed=0)

    # 100 pairs round up to 4 batches of 32 per attribute.
    assert len(one) == 4
    assert len(three) == 12
    assert sum(len(batch) for batch in three.epoch(0)) == 3 * 128


def test_single_attribute_batches_by_default():
    pools = [_pool(name, {"a": 5, "b": 5}, start=100 * i) for i, name in enumerate(["x", "y"])]

    batches = DoubletSampler(pools, pairs_per_epoch=64, batch_size=16, seed=0).epoch(0)

    assert all(len(set(batch.attribute_ids.tolist())) == 1 for batch in batches)
    assert {batch.attribute_ids[0] for batch in batches} == {0, 1}


def test_mixed_batches_hold_several_attributes():
    pools = [_pool(name, {"a": 5, "b": 5}, start=100 * i) for i, name in enumerate(["x", "y"])]

    batches = DoubletSampler(pools, pairs_per_epoch=256, batch_size=64, seed=0, mixed_batches=True).epoch(0)

    assert any(len(set(batch.attribute_ids.tolist())) == 2 for batch in batches)


def test_read_train_pool_uses_train_role_only(tmp_path):
    frame = pd.DataFrame(
        {
            "image_id": ["a", "b", "c", "d", "e"],
            "value": ["red", "red", "red", "blue", "blue"],
            "role": ["train", "train", "query", "train", "candidate"],
        }
    )
    frame.to_parquet(tmp_path / "colour.parquet")
    rows = {"a": 0, "b": 1, "c": 2, "d": 3, "e": 4}

    pool = read_train_pool(tmp_path / "colour.parquet", lambda ids: np.array([rows[i] for i in ids]))

    assert pool.attribute == "colour"
    assert pool.values == ["red"]
    assert pool.rows[0].tolist() == [0, 1]
