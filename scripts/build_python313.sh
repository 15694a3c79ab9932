#!/usr/bin/env bash
# Builds CPython 3.13 from Debian's source package (the upstream tarball, signature included) into
# ~/.pyenv/versions/<version>, where scripts/setup.sh looks for the interpreter Home Assistant needs.
#
# Why: current Home Assistant releases require Python >= 3.13.2; Debian bookworm ships 3.11, and the
# package index is the only place Python releases can come from on machines without python.org. The
# source is verified by apt (the Debian archive's signed Sources index checks the tarball's sha256).
# Takes about 6 minutes on 2 cores (no PGO). Build dependencies are installed from Debian if missing.
set -euo pipefail
VERSION="${1:-3.13.5}"
PREFIX="${PYENV_ROOT:-$HOME/.pyenv}/versions/$VERSION"
if [ -x "$PREFIX/bin/python3.13" ]; then
  echo "Python $VERSION already built in $PREFIX"; exit 0
fi
export DEBIAN_FRONTEND=noninteractive
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
DEPS="build-essential libssl-dev libsqlite3-dev libffi-dev zlib1g-dev libbz2-dev liblzma-dev uuid-dev"
# shellcheck disable=SC2086
if ! dpkg -s $DEPS >/dev/null 2>&1; then
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq $DEPS >/dev/null
fi
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/lists/partial"
# A private sources list: the system's apt configuration is left as it is.
echo "deb-src http://deb.debian.org/debian trixie main" > "$WORK/sources.list"
APT_OPTS=(-o "Dir::Etc::SourceList=$WORK/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
          -o "Dir::State::Lists=$WORK/lists" -o "APT::Sandbox::User=root")
apt-get "${APT_OPTS[@]}" update -qq
(cd "$WORK" && apt-get "${APT_OPTS[@]}" source --download-only -qq python3.13 >/dev/null)
TARBALL="$(ls "$WORK"/python3.13_"$VERSION".orig.tar.xz 2>/dev/null)" || { echo "Debian trixie no longer has Python $VERSION; pass the version it has: $(ls "$WORK"/*.orig.tar.xz)"; exit 1; }
tar -xJf "$TARBALL" -C "$WORK"
cd "$WORK/Python-$VERSION"
echo "building Python $VERSION into $PREFIX (a few minutes)"
./configure --prefix="$PREFIX" --with-ensurepip=install >"$WORK/configure.log" 2>&1 \
  || { tail -30 "$WORK/configure.log"; exit 1; }
make -j"$(nproc)" >"$WORK/make.log" 2>&1 || { tail -30 "$WORK/make.log"; exit 1; }
make install >"$WORK/install.log" 2>&1 || { tail -30 "$WORK/install.log"; exit 1; }
"$PREFIX/bin/python3.13" -c "import ssl, sqlite3, ctypes, lzma, bz2, zlib; print('Python', __import__('sys').version.split()[0], 'ok')"
