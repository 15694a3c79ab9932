"""Automatic filler choice by gap length and knowledge, with the energy-counter constraint.

The policy is a data table of rows ``(max_gap_samples, min_knowledge, method)``: the first row whose
gap bound covers the gap and whose knowledge bound (the smaller of the known samples before and
after) is met picks the method. The default table was chosen by ``bench/gapfill.py`` on the
validation half of a simulated fleet (a method replaces linear only where it beat linear by a
margin there) and is reported on the separate test half; seed 002 found linear best for 1-5
samples, and the table agrees.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from edge.signal.gapfill.base import Gap, check_input, find_gaps, finish

# (max_gap_samples, min_knowledge, method); rows are tried in order, the last must catch all.
# From `python bench/gapfill.py` (bench/results/gapfill.json, 1-min data, knowledge grid 2/6/15/48):
# a method other than linear only where it beat linear with confidence on the validation homes.
DEFAULT_POLICY: tuple[tuple[int, int, str], ...] = (
    (20, 0, "linear"),  # 1-20 samples: linear (seed 002: best for 1-5; here up to 20)
    (30, 48, "linear"),
    (30, 15, "wiener"),  # 21-30 samples with 15-47 known either side
    (30, 0, "linear"),
    (60, 15, "linear"),
    (60, 6, "ssa"),  # 31-60 samples with 6-14 known either side
    (10**9, 0, "linear"),
)


def choose(gap: Gap, policy=DEFAULT_POLICY) -> str:
    knowledge = min(gap.known_before, gap.known_after)
    for max_len, min_know, method in policy:
        if gap.length <= max_len and knowledge >= min_know:
            return method
    return "linear"


def auto_fill(values, missing, ts_s=None, counter_wh=None, policy=DEFAULT_POLICY) -> np.ndarray:
    """Fill every gap with the method the policy picks; then honour energy counters if given."""
    from edge.signal.gapfill.energy import apply_energy_constraint
    from edge.signal.gapfill.registry import FILLERS

    x, m, t = check_input(values, missing, ts_s)
    gaps = find_gaps(m)
    if not gaps:
        return x.copy()
    by_method: dict[str, list[Gap]] = defaultdict(list)
    for g in gaps:
        by_method[choose(g, policy)].append(g)
    est = x.copy()
    for method, sub in by_method.items():
        part = FILLERS[method].fill_gaps(x, m, t, sub, FILLERS[method].config())
        idx = np.concatenate([np.arange(g.start, g.stop) for g in sub])
        est[idx] = part[idx]
    out = finish(x, m, est)
    if counter_wh is not None:
        out = finish(x, m, apply_energy_constraint(out, m, t, counter_wh))
    return out
