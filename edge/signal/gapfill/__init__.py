"""Gap fillers behind one interface: ``fill(values, missing, ts_s) -> filled``.

Every filler leaves known samples exactly as given and writes only the missing ones. Bad input
raises :class:`edge.signal.errors.SignalInputError`; an all-missing series :class:`FillError`.

    filled = FILLERS["papoulis"](power_w, missing, ts_s)   # or fill("papoulis", ...)
    filled = auto_fill(power_w, missing, ts_s, counter_wh=import_wh)
    FILLERS["wiener"].config  # the dataclass of its settings

Names are loaded on first use (PEP 562), so ``edge.signal.gapfill.energy`` alone (what the gateway
agent needs) does not pull in every filler and scipy with them (about 69 MB RSS on the Pi).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_LAZY = {
    "FILLERS": "registry", "FillerSpec": "registry", "fill": "registry",
    "DEFAULT_POLICY": "auto", "auto_fill": "auto", "choose": "auto",
    "Gap": "base", "check_input": "base", "find_gaps": "base", "finish": "base",
    "apply_energy_constraint": "energy", "energy_exact_fill": "energy",
}

if TYPE_CHECKING:
    from edge.signal.gapfill.auto import DEFAULT_POLICY, auto_fill, choose
    from edge.signal.gapfill.base import Gap, check_input, find_gaps, finish
    from edge.signal.gapfill.energy import apply_energy_constraint, energy_exact_fill
    from edge.signal.gapfill.registry import FILLERS, FillerSpec, fill


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'edge.signal.gapfill' has no attribute {name!r}")
    return getattr(importlib.import_module(f"edge.signal.gapfill.{module}"), name)


__all__ = ["DEFAULT_POLICY", "FILLERS", "FillerSpec", "Gap", "apply_energy_constraint",
           "auto_fill", "check_input", "choose", "energy_exact_fill", "fill", "find_gaps", "finish"]
