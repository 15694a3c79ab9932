#!/usr/bin/env bash
# Installs everything unimeter's workstation side, demo and tests need on Debian/Ubuntu with Python 3.11.
# torch is installed first and pinned: an unpinned torch would pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1
if ! command -v mosquitto >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq mosquitto >/dev/null
fi
python3 -m pip install -q "torch==2.13.0"
# [dev] holds pypots (SAITS baseline), whose torch>=1.10 the pinned torch above meets; the check below
# fails the set-up if anything replaced it.
python3 -m pip install -q -e ".[dev]"
python3 -c "import importlib.metadata as m, sys; v = m.version('torch'); sys.exit(0 if v.split('+')[0] == '2.13.0' else f'torch {v} replaced torch==2.13.0')"
# The TFLite fallback interpreter (tflite-runtime 2.14 needs numpy<2, so it cannot share this
# environment with ai-edge-litert): a small side venv the runtime's fallback test runs in.
TFLITE_VENV=.venv-tflite-runtime
if [ ! -x "$TFLITE_VENV/bin/python" ] || ! "$TFLITE_VENV/bin/python" -c "import tflite_runtime" 2>/dev/null; then
  rm -rf "$TFLITE_VENV"
  if ! python3 -m venv "$TFLITE_VENV" 2>/dev/null; then  # Debian's python3 ships venv separately
    rm -rf "$TFLITE_VENV"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq "python3.$(python3 -c 'import sys; print(sys.version_info.minor)')-venv" >/dev/null
    python3 -m venv "$TFLITE_VENV"
  fi
  "$TFLITE_VENV/bin/python" -m pip install -q "numpy<2" "tflite-runtime==2.14.0"
fi
# Home Assistant in its own venv (it needs Python >= 3.13.2, this project runs on 3.11): the test
# that validates every discovery payload against Home Assistant's own schemas and
# scripts/ha_check.sh run it. A missing interpreter is built (scripts/build_python313.sh).
bash scripts/setup_homeassistant.sh
