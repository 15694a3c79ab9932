"""Hot update of the model bundle: watch a path, verify, swap atomically, keep the old on failure.

Deploy a new model by writing it to a fresh directory and pointing the watched path at it in one
step (``ln -sfn bundle-v2 current`` or ``mv``); the watcher notices the change of the resolved
path or of its manifest and hands the bundle to ``ModelHost.try_load`` on the inference thread.
A bundle that fails verification is refused once and not retried until the path changes again.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from edge.agent.inference import ModelHost, bundle_fingerprint

log = logging.getLogger(__name__)


class BundleWatcher:
    def __init__(self, path: str | Path, host: ModelHost,
                 infer: Callable[..., Awaitable], on_swap: Callable[[], Awaitable[None]]):
        self.path = Path(path)
        self.host = host
        self.infer = infer
        self.on_swap = on_swap
        self.seen = ""
        self.refused = 0

    async def check(self, initial: bool = False) -> bool:
        """Load the bundle if it changed since the last look; True when a new model went live."""
        fingerprint = bundle_fingerprint(self.path)
        if not fingerprint:
            if initial or self.seen:
                log.warning("model bundle %s not found; %s", self.path,
                            "running without inference" if self.host.current is None else "keeping the current model")
            self.seen = ""
            self.host.last_error = self.host.last_error or f"bundle {self.path} not found"
            return False
        if fingerprint == self.seen:
            return False
        self.seen = fingerprint
        log.info("model bundle at %s %s; verifying", self.path, "found" if initial else "changed")
        if await self.infer(self.host.try_load, self.path):
            if not initial:
                await self.on_swap()
            return True
        self.refused += 1
        return False
