#!/usr/bin/env bash
# The gateway path proven on ARM64, under emulation on an x86-64 Debian/Ubuntu host:
#
#   bash scripts/check_arm64.sh [PYTEST ARGS]
#
# 1. scripts/build_arm64_image.sh: the arm64 image as an OCI archive (qemu-user-static from
#    bookworm-backports, debootstrap and the binfmt_misc registration are installed by it; the
#    Debian root, the aarch64 wheels and the installed dependencies are cached between runs).
# 2. tests/arm64 against that archive, unpacked and run under qemu-user (QEMU_CPU=cortex-a72):
#    the archive's config (user, entrypoint, health check, volume) and layout; its entrypoint's
#    `agent --help` and `agent check-config` on the example config; the import set (every pinned
#    package and edge module, no torch); every task of a bundle trained and exported from this tree
#    (on the host, while step 1 runs) on every model file (ONNX int8/fp32, LiteRT), equal to x86
#    within 1e-6; the agent for ~90 s with a P1 (pty), ZigBee (test radio), Modbus and plain
#    meter against a Mosquitto on the host; skopeo (installed here) reads and verifies the archive.
#
# Needs root and the host side of `scripts/setup.sh` (Mosquitto, unimeter[dev]). The archive is
# left at dist/unimeter-agent-arm64.oci.tar (or $UNIMETER_ARM64_IMAGE_OUT). Cache:
# $UNIMETER_ARM64_CACHE (default ~/.cache/unimeter-arm64).
set -euo pipefail
cd "$(dirname "$0")/.."
start_s=$SECONDS
log() { printf '%(%H:%M:%S)T  %s\n' -1 "$*"; }
ARCHIVE=${UNIMETER_ARM64_IMAGE_OUT:-$PWD/dist/unimeter-agent-arm64.oci.tar}
# The x86-64 side (the x86-64 edge venv, the bundle trained and exported on the host; both cached
# like the image's parts) is made beside the image build: that build is mostly one emulated
# process, so the second core is free.
PREP=$(mktemp -d "${TMPDIR:-/tmp}/unimeter-arm64-check.XXXXXX")
python3 -m tests.arm64.helpers > "$PREP/bundle.path" 2> "$PREP/host-side.log" &
prep_pid=$!
trap 'kill "$prep_pid" 2>/dev/null || true; rm -rf "$PREP"' EXIT
log "== arm64 check: building the image; the x86-64 side (bundle, x86-64 venv) in process $prep_pid"
bash scripts/build_arm64_image.sh --out "$ARCHIVE"
if ! command -v skopeo >/dev/null; then  # an independent reader of the archive, for the tests
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends skopeo >/dev/null
fi
log "== arm64 image built in $((SECONDS - start_s)) s; waiting for the x86-64 side"
if ! wait "$prep_pid"; then
  tail -40 "$PREP/host-side.log" >&2
  echo "check_arm64.sh: the x86-64 side (bundle, venv) failed" >&2
  exit 1
fi
bundle=$(tail -1 "$PREP/bundle.path")
log "== x86-64 side ready after $((SECONDS - start_s)) s (bundle $bundle); testing the image under emulation"
UNIMETER_ARM64_IMAGE=$ARCHIVE UNIMETER_ARM64_BUNDLE=$bundle \
  python3 -m pytest -q -p no:cacheprovider -rA --durations=0 tests/arm64 "$@"
log "== arm64 check passed in $((SECONDS - start_s)) s"
