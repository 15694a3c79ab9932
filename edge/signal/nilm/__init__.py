"""Classical NILM (seed 002 §4.3-4.4): events, Weiss matching, FHMM, Parson, norm filter."""

from edge.signal.nilm.events import EventConfig, Events, detect_events
from edge.signal.nilm.fhmm import FHMM, FHMMConfig
from edge.signal.nilm.normfilter import (
    NORM_SETTINGS,
    NormFilterConfig,
    NormStage,
    Session,
    filter_sessions,
    norm_filter,
    on_from_sessions,
    sessions_from_on,
)
from edge.signal.nilm.parson import (
    GENERAL_PRIORS,
    AppliancePrior,
    ParsonConfig,
    ParsonDisaggregator,
)
from edge.signal.nilm.weiss import Signature, WeissConfig, WeissMatcher, learn_signatures

__all__ = [
    "FHMM", "GENERAL_PRIORS", "NORM_SETTINGS", "AppliancePrior", "EventConfig", "Events",
    "FHMMConfig", "NormFilterConfig", "NormStage", "ParsonConfig", "ParsonDisaggregator",
    "Session", "Signature", "WeissConfig", "WeissMatcher", "detect_events", "filter_sessions",
    "learn_signatures", "norm_filter", "on_from_sessions", "sessions_from_on",
]
