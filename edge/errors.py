"""The error root of unimeter as the rest of the project imports it, and the shared data error.

Every exception unimeter raises on purpose derives from ``UnimeterError`` (defined in
``firmware_bridge.errors``, the bottom layer, and re-exported here); the ``unimeter`` command
catches it and prints one line. The families under it::

    UnimeterError
    ├── ConfigError (ValueError)       bad options: bridge sources, agent TOML (``key`` names it)
    ├── BridgeError                    firmware_bridge: frames, links, missing radio libraries
    ├── SignalError                    edge.signal: bad series, fills, NILM models
    ├── SimulationError (ValueError)   edge.sim: simulator input; InjectionError
    ├── DataError (ValueError)         data that does not fit: loaders, shards, covariates, trainer sets
    ├── BundleError                    edge.bundle: refused bundles; edge.runtime's InferenceError
    ├── AgentError                     edge.agent: store, model host, meter sources
    ├── TrainerError                   trainer: training, checkpoints, tasks, distillation, evaluation
    └── ExportError                    export: a failed export step, no broker for the demo

Classes that were ``ValueError``/``RuntimeError`` before keep that base too, so ``except
ValueError`` around them still works.
"""

from __future__ import annotations

from firmware_bridge.errors import ConfigError, UnimeterError

__all__ = ["AgentError", "ConfigError", "DataError", "SimulationError", "UnimeterError"]


class DataError(UnimeterError, ValueError):
    """Input data that cannot be read or does not fit what is asked of it; nothing is changed."""

    exit_code = 2


class SimulationError(UnimeterError, ValueError):
    """Invalid simulator or injection input (resolution, start date, configuration, window)."""

    exit_code = 2


class AgentError(UnimeterError):
    """The gateway agent cannot do something it was asked to (store, model, meter sources)."""
