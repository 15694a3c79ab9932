"""The export layer's error family (a ``UnimeterError``; see ``edge.errors`` for the whole tree)."""

from __future__ import annotations

from edge.errors import UnimeterError


class ExportError(UnimeterError):
    """An export step failed; the message names the step and the model."""
