"""The trainer's error family: every trainer exception derives from ``TrainerError``.

``TrainerError`` is a ``UnimeterError`` (see ``edge.errors`` for the whole tree). Data that does
not fit a task raises ``edge.errors.DataError``, shared with the edge's loaders and shards.
"""

from __future__ import annotations

from edge.errors import UnimeterError


class TrainerError(UnimeterError):
    """Training, checkpoints, tasks, distillation or the evaluation cannot go on as configured."""
