"""The project's one household splitter (edge.data.split)."""

from __future__ import annotations

import numpy as np
import pytest

from edge.data.split import households_by_split, split_counts, split_households
from edge.errors import DataError


def test_split_households_exact_disjoint_deterministic():
    ids = [f"m{i}" for i in range(103)]
    a = split_households(ids, {"train": 0.8, "val": 0.1, "test": 0.1}, seed=1)
    assert a == split_households(list(reversed(ids)), {"train": 0.8, "val": 0.1, "test": 0.1}, seed=1)
    assert a != split_households(ids, {"train": 0.8, "val": 0.1, "test": 0.1}, seed=2)
    counts = {s: sum(v == s for v in a.values()) for s in ("train", "val", "test")}
    assert sum(counts.values()) == 103 and counts["train"] in (82, 83) and counts["val"] in (10, 11)
    tiny = split_households(["a", "b", "c"], {"train": 0.9, "val": 0.05, "test": 0.05})
    assert sorted(tiny.values()) == ["test", "train", "val"]
    with pytest.raises(DataError):
        split_households(ids, {"train": -1.0})


@pytest.mark.parametrize("n", [3, 5, 10, 40, 200, 1001])
def test_counts_follow_the_fractions(n):
    counts = split_counts(n, {"train": 0.6, "val": 0.2, "test": 0.2})
    assert sum(counts.values()) == n and min(counts.values()) >= 1
    assert all(abs(c - f * n) < 1 for c, f in zip(counts.values(), (0.6, 0.2, 0.2), strict=True))


def test_a_household_is_in_one_split_and_every_split_is_cut_from_one_permutation():
    """Integer ids 0..n-1 in the order of numpy's permutation of the seed: train first, then
    val, then test (the assignment the evaluation and the trainer rely on)."""
    parts = households_by_split(range(200), {"train": 0.6, "val": 0.2, "test": 0.2}, seed=3)
    order = np.random.default_rng(3).permutation(200)
    assert parts["train"] == sorted(order[:120].tolist())
    assert parts["val"] == sorted(order[120:160].tolist()) and parts["test"] == sorted(order[160:].tolist())
