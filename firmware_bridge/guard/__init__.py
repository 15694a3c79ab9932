"""The reading guard: the one check every reading of every source passes before it is used.

A ``ReadingGuard`` holds the state of one meter and maps each ``Reading`` to a checked one
(``check(reading) -> Reading``, one out per one in, never held back). The agent runs one guard
per meter between the meter's source and the store, so DSMR, Modbus, ZigBee and virtual meters
share the same rules. A value the guard does not trust is withheld, never lost: it is set to None
in the reading, kept in ``extra["<field>_withheld"]``, the reading is flagged, and the guard's
``stats`` count it (the agent reports them in its health and quality messages).

Rules, in order (limits from :class:`MeterLimits`):

1. **Clock** -- a reading dated more than ``clock_max_ahead_s`` after, or ``clock_max_behind_s``
   before, the gateway clock gets ``CLOCK_SKEW`` (and ``CLOCK_FALLBACK``): ``ts_s`` becomes the
   receive time, the meter's time goes to ``extra["meter_ts_s"]``, and the agent keeps the
   reading out of the model windows (``MODEL_EXCLUDED``). A source that already replaced a bad
   meter clock by the receive time (DSMR's ``max_clock_skew_s``) is left alone. The meter's clock
   offset (meter time minus receive time) is kept in ``stats.clock_offset_s``.
2. **No value** -- NaN and infinities become None with ``INVALID_VALUE`` (the ZigBee source maps
   the ZCL invalid numbers to None itself, see ``zigbee.datatypes``).
3. **Plausibility** -- power beyond ``max_power`` (phases x nominal voltage x main fuse x margin,
   or ``max_power_w``; per phase one phase's share), negative power below ``-noise_w`` on a meter
   that cannot export, voltage, current and reactive power beyond what that connection can carry
   (also per phase), and counters below 0 or above ``max_counter_wh``: withheld with
   ``IMPLAUSIBLE``. An M-Bus channel whose value is withheld leaves ``Reading.mbus``.
4. **Counters** (``import_wh``, ``export_wh``, the reactive energy counters, every tariff
   register, the power-failure counts and every M-Bus channel, each on its own) -- the published
   counter never decreases, except on a flagged reset. A value *in line* with the last published
   one (at most ``counter_jump_wh`` below it, and at most ``counter_jump_wh`` plus what
   ``max_power`` could have counted since above it; M-Bus units by ``MBUS_COUNTER_RULES``) is
   published, or withheld while it is still below (a stall: the published value
   stays). A value out of line is a *jump*: withheld with ``COUNTER_GLITCH``. If a later value is
   in line with the last published one again, the jump was a glitch. If
   ``counter_confirm_readings`` consecutive values, measured at distinct times, agree with each
   other but not with the last published one, the meter was reset or swapped: that value is
   published with ``COUNTER_RESET`` and starts the new series. A value repeated with the same
   time (an M-Bus sub-meter's capture, which a P1 meter repeats in every telegram until the
   next capture: 5 min for DSMR 5 gas, an hour for DSMR 4) is one measurement, not a
   confirmation, so one bad gas capture stays a withheld glitch however many telegrams repeat it.

Look-ahead: only counter values that jumped are held, and only until the series decides; power and
every other value of a reading are never delayed. A reset is published with the
``counter_confirm_readings``-th reading of the new series (default 3: two readings later, 2 s on a
DSMR 5 meter, 20 s on DSMR 4, two poll periods on Modbus; for an M-Bus channel the third
capture, 10 min on DSMR 5 gas). Glitches of at most
``counter_jump_wh`` cannot be told from consumption: the published counter then stalls until the
meter passes the glitch value, so it still never decreases and books no phantom energy.
"""

from firmware_bridge.guard.check import GUARD_FLAGS, MODEL_EXCLUDED, GuardStats, ReadingGuard
from firmware_bridge.guard.limits import (
    KIND_LIMITS,
    MBUS_COUNTER_RULES,
    LimitsError,
    MeterLimits,
    limits_for,
)
from firmware_bridge.guard.values import COUNTER_KEYS, WITHHELD_SUFFIX

__all__ = ["COUNTER_KEYS", "GUARD_FLAGS", "KIND_LIMITS", "MBUS_COUNTER_RULES", "MODEL_EXCLUDED",
           "WITHHELD_SUFFIX", "GuardStats", "LimitsError", "MeterLimits", "ReadingGuard", "limits_for"]
