"""Hot update through the watcher, on a real bundle and real onnxruntime: a new bundle behind the
watched symlink goes live, a corrupt one is refused once (the old model keeps serving) and not
retried until the path changes again."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from edge.agent.inference import ModelHost, open_model
from edge.agent.watch import BundleWatcher


def _host() -> ModelHost:
    return ModelHost(lambda path: open_model(path, backend="auto", precision="int8", threads=1))


async def _inline(fn, *args):
    return fn(*args)


def _point(link: Path, target: Path) -> None:
    tmp = link.with_name(link.name + ".new")
    tmp.symlink_to(target.name)
    tmp.replace(link)


async def test_watcher_swaps_refuses_and_keeps_serving(tmp_path, tiny_bundle):
    v1, v2, bad = tmp_path / "v1", tmp_path / "v2", tmp_path / "bad"
    for d in (v1, v2, bad):
        shutil.copytree(tiny_bundle, d)
    onnx = sorted(bad.glob("*.onnx"))[0]
    onnx.write_bytes(onnx.read_bytes()[:-16] + b"\0" * 16)  # tampered: the sha256 no longer matches
    link = tmp_path / "current"
    _point(link, v1)
    host, swaps = _host(), []

    async def on_swap() -> None:
        swaps.append(host.current.path)

    watcher = BundleWatcher(link, host, _inline, on_swap)
    assert await watcher.check(initial=True) and host.current.path == v1.resolve() and swaps == []
    assert not await watcher.check()  # nothing changed

    _point(link, bad)
    assert not await watcher.check()
    assert watcher.refused == 1 and host.current.path == v1.resolve() and "sha256" in host.last_error
    assert not await watcher.check() and watcher.refused == 1  # not retried while the path stays

    _point(link, v2)
    assert await watcher.check()
    assert host.current.path == v2.resolve() and swaps == [v2.resolve()] and host.previous.path == v1.resolve()


async def test_a_missing_bundle_keeps_the_current_model(tmp_path, tiny_bundle):
    link = tmp_path / "current"
    shutil.copytree(tiny_bundle, tmp_path / "v1")
    _point(link, tmp_path / "v1")
    host = _host()
    watcher = BundleWatcher(link, host, _inline, lambda: asyncio.sleep(0))
    assert await watcher.check(initial=True)
    link.unlink()
    assert not await watcher.check() and host.current is not None
    assert not (await watcher.check())
