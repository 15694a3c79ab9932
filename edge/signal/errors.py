"""Exceptions of the signal layer."""

from __future__ import annotations


class SignalError(Exception):
    """Base class of every error raised by edge.signal."""


class SignalInputError(SignalError, ValueError):
    """Bad input (shape, dtype, NaN in known samples, unsorted timestamps, ...). Nothing is changed."""


class FillError(SignalError):
    """A gap could not be filled (e.g. no known sample at all)."""


class NilmError(SignalError):
    """A NILM model was used wrongly (not fitted, state space too large, ...)."""
