"""Property tests of the simulator grid: painting segments onto it conserves energy exactly."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.sim.config import HouseholdConfig
from edge.sim.grid import ChunkContext, household_params, paint

segments = st.lists(
    st.tuples(st.floats(0, 3000), st.floats(0.5, 900), st.floats(1, 3000)), min_size=1, max_size=30)


@settings(max_examples=60, deadline=None)
@given(segments, st.sampled_from([1, 10, 60]))
def test_paint_conserves_energy_and_bounds(segs, step_s):
    cfg = HouseholdConfig()
    ctx = ChunkContext(cfg, 0, 0, step_s, 3600 // step_s, household_params(cfg, 0))
    start = np.array([s[0] for s in segs])
    end = start + np.array([s[1] for s in segs])
    power = np.array([s[2] for s in segs])
    (painted,) = paint(ctx, [power], start, end)
    inside = np.clip(end, 0, 3600) - np.clip(start, 0, 3600)
    np.testing.assert_allclose(painted.sum() * step_s, (power * inside).sum(), rtol=1e-9, atol=1e-6)
    assert painted.min() >= -1e-6 and painted.max() <= power.sum() + 1e-6
