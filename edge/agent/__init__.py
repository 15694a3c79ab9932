"""The gateway agent: meters -> durable store -> resampling -> quality/gap filling -> on-device
inference -> MQTT (Home Assistant first).

Public API::

    from edge.agent import AgentConfig, load_config, ConfigError, Agent, ReadingStore

Nothing here imports torch, ``trainer`` or ``export``; this is what the Raspberry Pi runs.
"""

from edge.agent.config import AgentConfig, ConfigError, load_config
from edge.agent.store import ReadingStore, StoreError

__all__ = ["AgentConfig", "ConfigError", "ReadingStore", "StoreError", "load_config"]
