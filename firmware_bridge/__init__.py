"""Meter protocols -> one stream of :class:`Reading`.

This package imports nothing else of unimeter (it is the bottom layer): a simulated meter takes a
plain power-source callable, and the wiring to the household simulator lives in ``edge/``.
"""

from firmware_bridge.reading import Reading, ReadingFlag

__all__ = ["Reading", "ReadingFlag"]
