#!/usr/bin/env bash
# Builds the arm64 gateway image on an x86-64 Debian/Ubuntu host without a container engine or
# registry, as an OCI archive (`docker load -i`, `podman load -i`, skopeo read it).
#
#   bash scripts/build_arm64_image.sh [--out FILE] [--rootfs-only DIR]
#
# 1. Host tools: qemu-user-static >= 8 (Debian bookworm's 7.2 crashes in onnxruntime and LiteRT;
#    bookworm-backports has 10.x), debootstrap; qemu-aarch64 registered in binfmt_misc with the F
#    flag (the interpreter is opened at registration, so it also runs inside a chroot).
# 2. Base root (cached): Debian bookworm arm64 minbase with python3 (3.11, as Raspberry Pi OS),
#    python3-venv, ca-certificates and netbase: what python:3.11-slim-bookworm gives Dockerfile.arm64.
# 3. Wheels (cached pool): every pin of deploy/requirements-edge.txt as a manylinux aarch64 wheel.
# 4. Dependencies (cached): the base root plus the venv /opt/unimeter holding those wheels, as
#    Dockerfile.arm64's build stage makes it; unpacked by the host's pip (no emulation).
# 5. This tree: a wheel of the package (pyproject.toml, README.md, edge/, firmware_bridge/: what the
#    Dockerfile copies) installed with --no-deps, then the RUN steps of the Dockerfile's runtime
#    stage (the unimeter user in the dialout group, the state directory), the example config.
# 6. scripts/oci_image.py writes the archive, its config (user, env, workdir, volume, health
#    check, entrypoint, command, stop signal) read from Dockerfile.arm64's runtime stage.
#
# Cache: $UNIMETER_ARM64_CACHE (default ~/.cache/unimeter-arm64), keyed by the recipe and the
# requirements' hash; entries unused for 30 days are removed. From scratch on 2 cores shared with
# other work (load 12-16): 42 min, of which debootstrap (emulated dpkg) 36.5, dependencies 3,
# package 1, archive 2; on idle cores debootstrap takes ~4 min. Cached: 11 min under that load
# (package index 3, package and `pip check` 3, archive 5; the index is no longer asked once the
# wheel pool is complete). Needs root and, from scratch, the Debian mirror and the package index. --rootfs-only DIR stops after step 5 and
# leaves the image's root filesystem in DIR (for benchmarks).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
OUT=$REPO/dist/unimeter-agent-arm64.oci.tar
ROOTFS_ONLY=""
while [[ $# -gt 0 ]]; do
  case $1 in
    --out) OUT=$(realpath -m "$2"); shift 2 ;;
    --rootfs-only) ROOTFS_ONLY=$(realpath -m "$2"); shift 2 ;;
    *) sed -n '2,5p' "$0" >&2; exit 2 ;;
  esac
done
[[ "$(id -u)" -eq 0 ]] || { echo "build_arm64_image.sh: needs root (debootstrap, chroot, binfmt_misc)" >&2; exit 2; }

CACHE=${UNIMETER_ARM64_CACHE:-$HOME/.cache/unimeter-arm64}
SUITE=bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
BASE_PACKAGES=python3,python3-venv,ca-certificates,netbase
REQ=deploy/requirements-edge.txt
CHROOT=(bash "$REPO/scripts/arm64_chroot.sh")
# The image's time (its mtime clamp and creation date): the commit's. With SOURCE_DATE_EPOCH set,
# pip compiles .pyc files that check their source by hash, not by mtime, so they stay valid
# whatever mtimes the archive gives the sources (a stale .pyc would be compiled again at every
# start, with PYTHONDONTWRITEBYTECODE, and every health check).
EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 1)}
export DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1
log() { printf '%(%H:%M:%S)T  %s\n' -1 "$*"; }
sha() { sha256sum | cut -c1-16; }

# --- 1. host tools ------------------------------------------------------------------------------
qemu_major() { qemu-aarch64-static --version 2>/dev/null | sed -n 's/.*version \([0-9]*\)\..*/\1/p' | head -1; }

install_host_tools() {
  local need=()
  [[ "$(qemu_major)" -ge 8 ]] 2>/dev/null || need+=(qemu-user-static)
  command -v debootstrap >/dev/null || need+=(debootstrap)
  [[ ${#need[@]} -eq 0 ]] && return 1
  log "installing ${need[*]}"
  local target=()
  if [[ " ${need[*]} " == *" qemu-user-static "* ]] && grep -q 'VERSION_CODENAME=bookworm' /etc/os-release; then
    if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
      printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: %s\n' \
        "$MIRROR" /usr/share/keyrings/debian-archive-keyring.gpg > /etc/apt/sources.list.d/bookworm-backports.sources
    fi
    target=(-t bookworm-backports)
  fi
  apt-get update -qq
  apt-get install -y -qq "${target[@]}" "${need[@]}" >/dev/null
  [[ "$(qemu_major)" -ge 8 ]] || { echo "qemu-user-static >= 8 is needed, have $(qemu_major)" >&2; exit 1; }
  return 0
}

register_binfmt() {  # (re)register qemu-aarch64 from the package's binfmt.d entry, with the F flag
  local conf=/usr/lib/binfmt.d/qemu-aarch64.conf entry=/proc/sys/fs/binfmt_misc/qemu-aarch64
  [[ -f $conf ]] || { echo "$conf missing (qemu-user-static)" >&2; exit 1; }
  grep -q ':[A-Z]*F[A-Z]*$' "$conf" || { echo "$conf lacks the F flag" >&2; exit 1; }
  [[ -e /proc/sys/fs/binfmt_misc/register ]] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
  if [[ -e $entry ]]; then echo -1 > "$entry"; fi
  cat "$conf" > /proc/sys/fs/binfmt_misc/register
}

fresh_tools=0
install_host_tools && fresh_tools=1
if [[ $fresh_tools -eq 1 || ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]] \
   || ! grep -q '^flags: .*F' /proc/sys/fs/binfmt_misc/qemu-aarch64; then
  register_binfmt
fi

emulator_check() {  # the registered interpreter (not just the installed one) must be qemu >= 8
  local version
  version=$(QEMU_VERSION=1 chroot "$1" /bin/true 2>&1 | sed -n 's/.*version \([0-9]*\)\..*/\1/p' | head -1)
  if [[ -z "$version" || "$version" -lt 8 ]]; then
    log "binfmt_misc runs qemu ${version:-?} (a registration from before an upgrade): registering again"
    register_binfmt
    version=$(QEMU_VERSION=1 chroot "$1" /bin/true 2>&1 | sed -n 's/.*version \([0-9]*\)\..*/\1/p' | head -1)
    [[ -n "$version" && "$version" -ge 8 ]] || { echo "qemu-aarch64 >= 8 not active in binfmt_misc" >&2; exit 1; }
  fi
}

mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9  # one builder at a time per cache; the per-run steps below do not touch the cache
find "$CACHE" -mindepth 1 -maxdepth 1 -type d -mtime +30 -name '*-*' -exec rm -rf {} + 2>/dev/null || true

# --- 2. base root -------------------------------------------------------------------------------
BASE_KEY=base-$(printf '%s\n' "$SUITE" arm64 minbase "$BASE_PACKAGES" 1 | sha)
BASE=$CACHE/$BASE_KEY
if [[ ! -d $BASE/rootfs ]]; then
  log "debootstrap $SUITE arm64 ($BASE_PACKAGES) into $BASE (about 4 minutes under emulation)"
  rm -rf "$BASE.tmp"; mkdir -p "$BASE.tmp"
  debootstrap --arch=arm64 --variant=minbase --include="$BASE_PACKAGES" "$SUITE" "$BASE.tmp/rootfs" "$MIRROR" \
    > "$BASE.tmp/debootstrap.log" 2>&1 || { tail -20 "$BASE.tmp/debootstrap.log" >&2; exit 1; }
  rm -rf "$BASE.tmp/rootfs"/var/cache/apt/*.bin "$BASE.tmp/rootfs"/var/cache/apt/archives/*.deb \
         "$BASE.tmp/rootfs"/var/lib/apt/lists/* "$BASE.tmp/rootfs"/usr/share/doc/* \
         "$BASE.tmp/rootfs"/usr/share/man/* "$BASE.tmp/rootfs"/usr/share/info/* \
         "$BASE.tmp/rootfs"/var/log/*.log "$BASE.tmp/rootfs"/etc/resolv.conf "$BASE.tmp/rootfs"/etc/hostname
  mv "$BASE.tmp" "$BASE"
fi
emulator_check "$BASE/rootfs"
touch "$BASE"

# --- 3. wheels (one pool: pip download skips files it already holds) ------------------------------
REQ_SHA=$(sha < "$REQ")
WHEELS=$CACHE/wheels
platforms=(--platform manylinux2014_aarch64)
for minor in $(seq 17 36); do platforms+=(--platform "manylinux_2_${minor}_aarch64"); done
# (asks the package index about every pin, minutes on a loaded host: skipped once this
# requirements file's set is complete in the pool)
if [[ ! -e $WHEELS/.complete-$REQ_SHA ]]; then
  if ! python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.11 --implementation cp \
       "${platforms[@]}" -r "$REQ" -d "$WHEELS" > "$CACHE/pip-download.log" 2>&1; then
    grep -v "is ignored: it is neither a file nor a directory" "$CACHE/pip-download.log" >&2
    exit 1
  fi
  touch "$WHEELS/.complete-$REQ_SHA"
fi

# --- 4. dependencies ----------------------------------------------------------------------------
# The venv is made inside the root without ensurepip (its python and paths are the image's); the
# host's pip unpacks into it, for the aarch64 platform (--platform/--target: no build, no
# emulation), the pip and setuptools wheels the root's ensurepip would install and every pinned
# wheel, and compiles their .pyc files (CPython 3.11's bytecode is the same on both
# architectures; checked by hash with SOURCE_DATE_EPOCH). Emulated, ensurepip and pip took 2 and
# 10 minutes on a loaded host; this takes seconds. The image's own pip checks the set in step 5.
DEPS=$CACHE/deps-$(printf '%s %s %s\n' "$BASE_KEY" "$REQ_SHA" 3 | sha)
if [[ ! -d $DEPS/rootfs ]]; then
  log "installing $REQ into /opt/unimeter of a copy of the base root (aarch64 wheels unpacked on the host)"
  rm -rf "$DEPS.tmp"; mkdir -p "$DEPS.tmp"
  cp -a "$BASE/rootfs" "$DEPS.tmp/rootfs"
  "${CHROOT[@]}" "$DEPS.tmp/rootfs" -- python3 -m venv --without-pip /opt/unimeter
  site=$DEPS.tmp/rootfs/opt/unimeter/lib/python3.11/site-packages
  [[ -d $site ]] || { echo "no $site: the base root's python is not 3.11" >&2; exit 1; }
  bundled=("$DEPS.tmp/rootfs"/usr/share/python-wheels/{pip,setuptools}-*.whl)
  SOURCE_DATE_EPOCH=$EPOCH python3 -m pip install -q --no-deps --no-index --find-links "$WHEELS" \
    --only-binary=:all: --python-version 3.11 --implementation cp --abi cp311 "${platforms[@]}" \
    --target "$DEPS.tmp/target" "${bundled[@]}" -r "$REQ" > "$DEPS.tmp/pip-install.log" 2>&1 \
    || { cat "$DEPS.tmp/pip-install.log" >&2; exit 1; }
  for script in "$DEPS.tmp/target/bin"/*; do  # console scripts: the venv's interpreter, its bin
    sed -i '1s|^#!.*python[0-9.]*$|#!/opt/unimeter/bin/python3|' "$script"
    install -m 0755 "$script" "$DEPS.tmp/rootfs/opt/unimeter/bin/"
  done
  rm -rf "$DEPS.tmp/target/bin"
  cp -a "$DEPS.tmp/target/." "$site/"
  rm -rf "$DEPS.tmp/target" "$DEPS.tmp/rootfs/root/.cache"
  mv "$DEPS.tmp" "$DEPS"
fi
touch "$DEPS"

# --- 5. this tree -------------------------------------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/unimeter-arm64-image.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
ROOTFS=$WORK/rootfs
cp -a "$DEPS/rootfs" "$ROOTFS"
flock -u 9
mkdir -p "$WORK/src"
cp -r pyproject.toml README.md edge firmware_bridge "$WORK/src/"
find "$WORK/src" -name '__pycache__' -prune -exec rm -rf {} +
python3 -m pip wheel -q --no-deps --no-build-isolation -w "$WORK/wheel" "$WORK/src" >/dev/null
WHEEL=$(basename "$(ls "$WORK"/wheel/unimeter-*.whl)")
log "installing $WHEEL and the runtime stage of Dockerfile.arm64"
# pip check: every requirement of the package is in the image (a pin missing from $REQ fails here)
"${CHROOT[@]}" "$ROOTFS" --bind "$WORK/wheel:/tmp/wheel:ro" --env SOURCE_DATE_EPOCH="$EPOCH" -- /bin/sh -c \
  "/opt/unimeter/bin/pip install -q --no-deps --no-index /tmp/wheel/$WHEEL && /opt/unimeter/bin/pip check"
python3 scripts/oci_image.py runs --dockerfile Dockerfile.arm64 --stage runtime > "$WORK/runtime.sh"
"${CHROOT[@]}" "$ROOTFS" --bind "$WORK:/tmp/build:ro" -- /bin/sh -e /tmp/build/runtime.sh
install -m 0644 deploy/agent.example.toml "$ROOTFS/etc/unimeter/agent.example.toml"
rmdir "$ROOTFS/tmp/wheel" "$ROOTFS/tmp/build" 2>/dev/null || true

if [[ -n $ROOTFS_ONLY ]]; then
  rm -rf "$ROOTFS_ONLY"; mkdir -p "$(dirname "$ROOTFS_ONLY")"
  mv "$ROOTFS" "$ROOTFS_ONLY"
  log "root filesystem of the image: $ROOTFS_ONLY"
  exit 0
fi

# --- 6. the archive -----------------------------------------------------------------------------
mkdir -p "$(dirname "$OUT")"
log "writing $OUT"
python3 scripts/oci_image.py build --rootfs "$ROOTFS" --dockerfile Dockerfile.arm64 --stage runtime \
  --base-env LANG=C.UTF-8 --platform linux/arm64 --tag unimeter-agent:arm64 \
  --epoch "$EPOCH" \
  --history "Debian $SUITE arm64 ($BASE_PACKAGES) + unimeter[edge] from $REQ + $WHEEL, Dockerfile.arm64 runtime stage" \
  --out "$OUT"
log "done: $(du -h "$OUT" | cut -f1) $OUT"
