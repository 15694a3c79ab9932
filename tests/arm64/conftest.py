"""The arm64 image, run under emulation: fixtures for the tests of scripts/check_arm64.sh.

These tests need the OCI archive scripts/build_arm64_image.sh writes, named by
$UNIMETER_ARM64_IMAGE, and root (chroot, mount namespaces, qemu-user >= 8 in binfmt_misc).
scripts/check_arm64.sh builds the archive and runs them (deploy/README.md). Without the variable
they are not collected (``collect_ignore_glob`` below): the README's test command leaves them out,
it does not skip them.

``image`` is the archive's index, manifest and config; ``arm_root`` the archive unpacked into a
scratch directory (what a container runtime would run) with ``run()``/``popen()`` that start a
command in it as the image would: its user, environment and working directory, under qemu-user
with ``QEMU_CPU=cortex-a72``. ``check_bundle`` is a bundle with every task, trained and exported
from this tree at session start (ONNX fp32/int8 and LiteRT), or the directory named by
$UNIMETER_ARM64_BUNDLE (scripts/check_arm64.sh builds it while the image is built).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.arm64.helpers import ArmRoot, build_check_bundle, oci_image

IMAGE_ENV = "UNIMETER_ARM64_IMAGE"
# pytest-timeout's ceiling for each test here (the suite's is 600 s). Emulated Python runs 5-10x
# slower than native, and the first test to use them also pays for the session fixtures: a bundle
# trained and exported (ONNX and LiteRT) on the host and the archive unpacked. A ceiling against
# hangs, not a speed target (bench/arm64.py measures speed).
EMULATED_TIMEOUT_S = 2400

# Not collected without an image: they need the archive, root and qemu-user, which the README's
# test command does not set up (CI runs that command only; deploy/README.md says why and how).
collect_ignore_glob = [] if os.environ.get(IMAGE_ENV) else ["test_*.py"]


@pytest.fixture(scope="session")
def image_archive() -> Path:
    path = Path(os.environ[IMAGE_ENV])
    if not path.is_file():
        pytest.fail(f"${IMAGE_ENV}={path} does not exist: run scripts/build_arm64_image.sh")
    return path


@pytest.fixture(scope="session")
def image(image_archive):
    return oci_image.read_image(image_archive, platform="linux/arm64")


@pytest.fixture(scope="session")
def arm_root(image_archive, tmp_path_factory):
    if os.geteuid() != 0:
        pytest.fail("the arm64 tests need root (chroot, mount namespaces)")
    path = tmp_path_factory.mktemp("arm64") / "rootfs"
    yield ArmRoot.unpack(image_archive, path)
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def check_bundle(tmp_path_factory) -> Path:
    reuse = os.environ.get("UNIMETER_ARM64_BUNDLE")
    if reuse:
        return Path(reuse)
    return build_check_bundle(tmp_path_factory.mktemp("arm64_bundle"))


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.path).parents and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(EMULATED_TIMEOUT_S))
