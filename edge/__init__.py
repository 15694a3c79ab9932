"""The torch-free core the gateway runs: simulator, signal layer, bundle loader, runtime, agent.

Nothing under ``edge/`` may import ``trainer``, ``export`` or ``torch``.
"""
