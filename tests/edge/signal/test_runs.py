"""Runs of True in a boolean series."""

import numpy as np
import pytest

from edge.signal.runs import runs


@pytest.mark.parametrize("mask, starts, stops", [
    ([0, 1, 1, 0, 1], [1, 4], [3, 5]),  # a run that reaches the end stops at len(mask)
    ([1, 1, 0, 0], [0], [2]),  # a run from the first sample starts at 0
    ([1, 1, 1], [0], [3]),
    ([0, 0], [], []),
    ([], [], []),
])
def test_runs_gives_starts_and_exclusive_stops(mask, starts, stops):
    got_starts, got_stops = runs(np.array(mask, bool))
    assert got_starts.tolist() == starts and got_stops.tolist() == stops


def test_runs_reads_any_truthy_series_and_refuses_two_dimensions():
    starts, stops = runs([0.0, 2.5, -1.0, 0.0])
    assert (stops - starts).tolist() == [2]
    with pytest.raises(ValueError, match="1-D"):
        runs(np.ones((2, 3), bool))
