#!/usr/bin/env bash
# Builds .venv-homeassistant: a pinned Home Assistant under Python 3.13 (>= 3.13.2, which current
# releases require), with the requirements of the integrations scripts/ha_check.sh loads (mqtt,
# recorder, energy, onboarding...), installed up front so Home Assistant installs nothing at run
# time. Skips everything when the venv already holds this exact set (marker file).
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1
HA_VERSION=2026.2.3
# Requirements (manifest.json "requirements" at HA_VERSION) of the integrations ha_check.sh loads
# that the homeassistant package does not bring itself: mqtt, frontend (always loaded), isal.
HA_EXTRA=(
  "paho-mqtt==2.1.0"
  "home-assistant-frontend==20260128.6"
  "isal==1.8.0"
)
HA_VENV=.venv-homeassistant
MARKER="$HA_VENV/.unimeter-complete"
WANT="homeassistant==$HA_VERSION ${HA_EXTRA[*]}"

find_python313() {
  local candidates=()
  [ -n "${UNIMETER_PYTHON313:-}" ] && candidates+=("$UNIMETER_PYTHON313")
  for d in $(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.13.* 2>/dev/null | sort -V -r); do
    candidates+=("$d/bin/python3.13")
  done
  command -v python3.13 >/dev/null 2>&1 && candidates+=("$(command -v python3.13)")
  for py in "${candidates[@]}"; do
    if [ -x "$py" ] && "$py" -c 'import sys, ssl, sqlite3; sys.exit(not (3, 13, 2) <= sys.version_info[:3] < (3, 14))' 2>/dev/null; then
      echo "$py"; return 0
    fi
  done
  return 1
}

if [ -f "$MARKER" ] && [ "$(cat "$MARKER")" = "$WANT" ] && [ -x "$HA_VENV/bin/python" ]; then
  exit 0  # already complete
fi
PY313="$(find_python313)" || {
  echo "Home Assistant $HA_VERSION needs Python 3.13 (>= 3.13.2); none found (checked \$UNIMETER_PYTHON313, ~/.pyenv/versions/3.13.*, python3.13). Building it from Debian's source package:" >&2
  bash scripts/build_python313.sh
  PY313="$(find_python313)" || {
    echo "ERROR: no Python >= 3.13.2 after the build. Install one (e.g. 'pyenv install 3.13.5', or bash scripts/build_python313.sh) or point UNIMETER_PYTHON313 at it, then rerun scripts/setup.sh." >&2
    exit 1
  }
}
echo "Home Assistant $HA_VERSION into $HA_VENV with $PY313 (a few minutes, once)"
rm -rf "$HA_VENV"
"$PY313" -m venv "$HA_VENV"
"$HA_VENV/bin/python" -m pip install -q --upgrade pip
"$HA_VENV/bin/python" -m pip install -q "homeassistant==$HA_VERSION" "${HA_EXTRA[@]}"
echo "$WANT" > "$MARKER"
