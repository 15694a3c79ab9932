"""Exceptions of the signal layer."""

from __future__ import annotations

from edge.errors import UnimeterError


class SignalError(UnimeterError):
    """Base class of every error raised by edge.signal (all about the input series: exit code 2)."""

    exit_code = 2


class SignalInputError(SignalError, ValueError):
    """Bad input (shape, dtype, NaN in known samples, unsorted timestamps, ...). Nothing is changed."""


class FillError(SignalError):
    """A gap could not be filled (e.g. no known sample at all)."""


class NilmError(SignalError):
    """A NILM model was used wrongly (not fitted, state space too large, ...)."""
