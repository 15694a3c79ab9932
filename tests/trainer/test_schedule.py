"""Batch size, epochs, steps and patience from the number of training windows."""

from __future__ import annotations

import pytest

from edge.errors import DataError
from trainer.schedule import adapt_schedule


def test_small_data_gets_small_batches_and_enough_steps():
    small = adapt_schedule(54, target_steps=600)  # what failed as "54 training windows < one batch of 64"
    assert small.batch_size == 8 and small.max_steps == 600 and small.patience >= 3
    assert "54 windows -> batch 8, 6 steps/epoch" in small.describe("fine-tune forecast")
    big = adapt_schedule(50_000, target_steps=600)
    assert big.batch_size == 64 and big.epochs == 3 and big.max_steps == 3 * (50_000 // 64)


def test_fewer_windows_than_a_batch_is_a_clear_error():
    with pytest.raises(DataError, match="fewer than the smallest batch"):
        adapt_schedule(5, 100)
